//! Counters exposed on `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Request counts by route and status, and compute totals.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    compute_requests: AtomicU64,
    compute_bytes: AtomicU64,
    compute_nanos: AtomicU64,
    files_bytes: AtomicU64,
    fetched_bytes: AtomicU64,
    transfer_chunks: AtomicU64,
    transfer_bytes: AtomicU64,
}

impl Metrics {
    /// Counts one answered request.
    pub(crate) fn request(&self, route: &'static str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry((route, status)).or_default() += 1;
    }

    /// Counts one program run: `bytes` read in `elapsed`.
    pub(crate) fn compute(&self, bytes: u64, elapsed: Duration) {
        self.compute_requests.fetch_add(1, Ordering::Relaxed);
        self.compute_bytes.fetch_add(bytes, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.compute_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Counts body bytes sent by `GET /files`.
    pub(crate) fn files_sent(&self, bytes: u64) {
        self.files_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts bytes fetched from remote sources.
    pub(crate) fn fetched(&self, bytes: u64) {
        self.fetched_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts chunks received by transfers and their compressed bytes.
    pub(crate) fn transfer_received(&self, chunks: u64, bytes: u64) {
        self.transfer_chunks.fetch_add(chunks, Ordering::Relaxed);
        self.transfer_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The counters in the Prometheus text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP magicfs_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE magicfs_http_requests_total counter\n");
        let map = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        for ((route, status), n) in map.iter() {
            let _ = writeln!(out, "magicfs_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        drop(map);
        let counters = [
            (
                "magicfs_compute_requests_total",
                "Compute programs run.",
                self.compute_requests.load(Ordering::Relaxed) as f64,
            ),
            (
                "magicfs_compute_bytes_total",
                "Bytes read by compute programs.",
                self.compute_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "magicfs_compute_seconds_total",
                "Seconds spent mapping files and running compute programs.",
                self.compute_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            ),
            (
                "magicfs_files_bytes_total",
                "Body bytes sent by GET /files.",
                self.files_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "magicfs_fetched_bytes_total",
                "Bytes fetched from remote http sources by compute requests.",
                self.fetched_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "magicfs_transfer_chunks_total",
                "Chunks received by recipe transfers.",
                self.transfer_chunks.load(Ordering::Relaxed) as f64,
            ),
            (
                "magicfs_transfer_bytes_total",
                "Request bytes received by recipe transfer chunk uploads.",
                self.transfer_bytes.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        out
    }
}

/// The route label of a request path: one of a fixed few, so the number of
/// series stays bounded.
pub(crate) fn route_label(path: &str) -> &'static str {
    match path {
        "/health" => "/health",
        "/compute" => "/compute",
        "/metrics" => "/metrics",
        p if p.starts_with("/files/") => "/files",
        "/probe" => "/probe",
        p if p.starts_with("/transfer/") => "/transfer",
        p if p == "/console" || p.starts_with("/console/") => "/console",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.request("/compute", 200);
        m.request("/compute", 200);
        m.request("/files", 404);
        m.compute(1000, Duration::from_millis(1500));
        let text = m.render();
        assert!(text.contains("magicfs_http_requests_total{route=\"/compute\",status=\"200\"} 2\n"), "{text}");
        assert!(text.contains("magicfs_http_requests_total{route=\"/files\",status=\"404\"} 1\n"), "{text}");
        assert!(text.contains("magicfs_compute_bytes_total 1000\n"), "{text}");
        assert!(text.contains("magicfs_compute_seconds_total 1.5\n"), "{text}");
        assert!(text.contains("magicfs_compute_requests_total 1\n"), "{text}");
        assert_eq!(route_label("/files/a/b"), "/files");
        assert_eq!(route_label("/nope"), "other");
    }
}
