//! Counters of the console's own traffic, for the status page's charts.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes and requests through the console since start.
#[derive(Default)]
pub struct Stats {
    requests: AtomicU64,
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    computed: AtomicU64,
}

impl Stats {
    /// Counts one API request.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts bytes written by uploads.
    pub fn uploaded(&self, n: u64) {
        self.uploaded.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts bytes sent by downloads.
    pub fn downloaded(&self, n: u64) {
        self.downloaded.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts bytes processed by compute.
    pub fn computed(&self, n: u64) {
        self.computed.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters as JSON.
    pub fn json(&self) -> Value {
        json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "uploaded_bytes": self.uploaded.load(Ordering::Relaxed),
            "downloaded_bytes": self.downloaded.load(Ordering::Relaxed),
            "computed_bytes": self.computed.load(Ordering::Relaxed),
        })
    }
}
