//! The range fetcher: range requests with a cap on concurrent streams per
//! origin, retries with exponential backoff, and cache statistics read from
//! the origin's answers (`X-Cache`, `CF-Cache-Status`, `Age`).

use crate::error::{RemoteError, RemoteResult};
use magicfs_net::HttpUrl;
use magicfs_net::{Client, Response};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Default cap on concurrent streams to one origin.
pub const DEFAULT_STREAMS: usize = 4;
/// Attempts per range request (the first and three retries).
pub const ATTEMPTS: u32 = 4;
/// Backoff before the first retry; doubled for each next one.
pub const BACKOFF: Duration = Duration::from_millis(100);

/// How remote reads are made. Its `Debug` form never shows the token.
#[derive(Clone)]
pub struct FetchConfig {
    /// The client (and its allowlist).
    pub client: Client,
    /// Most concurrent streams to one origin, across all jobs of this process.
    pub streams: usize,
    /// `Authorization: Bearer` token sent to the source, if any.
    pub token: Option<String>,
}

impl std::fmt::Debug for FetchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchConfig")
            .field("client", &self.client)
            .field("streams", &self.streams)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl FetchConfig {
    /// Settings with `client`, [`DEFAULT_STREAMS`] and no token.
    pub fn new(client: Client) -> FetchConfig {
        FetchConfig { client, streams: DEFAULT_STREAMS, token: None }
    }
}

/// What fetching cost and what the origin said about its cache.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FetchStats {
    /// Range requests answered (retries included).
    pub requests: u64,
    /// Requests that were retried after a transient failure.
    pub retries: u64,
    /// Body bytes fetched.
    pub bytes: u64,
    /// Answers the origin marked as cache hits.
    pub cache_hits: u64,
    /// Answers the origin marked as cache misses.
    pub cache_misses: u64,
}

impl FetchStats {
    /// Hits over answers that said either way, when any did.
    pub fn cache_hit_ratio(&self) -> Option<f64> {
        let known = self.cache_hits + self.cache_misses;
        (known > 0).then(|| self.cache_hits as f64 / known as f64)
    }
}

/// Counters shared by the threads of one job.
#[derive(Debug, Default)]
pub(crate) struct SharedStats {
    requests: AtomicU64,
    retries: AtomicU64,
    bytes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl SharedStats {
    pub(crate) fn snapshot(&self) -> FetchStats {
        FetchStats {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            cache_hits: self.hits.load(Ordering::Relaxed),
            cache_misses: self.misses.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn note_cache(&self, r: &Response) {
        match cache_status(r) {
            Some(true) => self.hits.fetch_add(1, Ordering::Relaxed),
            Some(false) => self.misses.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
    }
}

/// Whether an answer came from a cache: `X-Cache` or `CF-Cache-Status`
/// saying HIT or MISS, else an `Age` header (a positive age is a hit).
pub fn cache_status(r: &Response) -> Option<bool> {
    for name in ["x-cache", "cf-cache-status", "x-cache-status"] {
        if let Some(v) = r.header(name) {
            let v = v.to_ascii_uppercase();
            if v.contains("HIT") {
                return Some(true);
            }
            if v.contains("MISS") || v.contains("EXPIRED") || v.contains("BYPASS") {
                return Some(false);
            }
        }
    }
    r.header("age").and_then(|a| a.trim().parse::<u64>().ok()).map(|age| age > 0)
}

/// A counting semaphore.
#[derive(Debug)]
struct Streams {
    max: Mutex<(usize, usize)>, // (cap, in use)
    cv: Condvar,
}

/// A held stream slot; released on drop.
pub(crate) struct Slot(Arc<Streams>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.0.max.lock().unwrap_or_else(PoisonError::into_inner);
        g.1 -= 1;
        self.0.cv.notify_one();
    }
}

/// Waits for one of the `cap` stream slots of `origin` (process-wide).
pub(crate) fn acquire(origin: &str, cap: usize) -> Slot {
    static ORIGINS: OnceLock<Mutex<HashMap<String, Arc<Streams>>>> = OnceLock::new();
    let streams = {
        let mut map = ORIGINS.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(origin.to_string())
            .or_insert_with(|| Arc::new(Streams { max: Mutex::new((cap, 0)), cv: Condvar::new() }))
            .clone()
    };
    let mut g = streams.max.lock().unwrap_or_else(PoisonError::into_inner);
    g.0 = cap.max(1);
    while g.1 >= g.0 {
        g = streams.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
    }
    g.1 += 1;
    drop(g);
    Slot(streams)
}

/// Fetches bytes `start..start + buf.len()` of `url` into `buf` with a range
/// request, holding one of the origin's stream slots, retrying transient
/// failures with backoff. `etag`, when known, must match the answer's
/// (a changed object is an error, not a mix of two versions).
pub(crate) fn fetch_range(
    cfg: &FetchConfig,
    url: &HttpUrl,
    start: u64,
    buf: &mut [u8],
    etag: Option<&str>,
    stats: &SharedStats,
) -> RemoteResult<()> {
    let mut attempt = 0;
    loop {
        let result = {
            let _slot = acquire(&url.origin(), cfg.streams);
            fetch_once(cfg, url, start, buf, etag, stats)
        };
        match result {
            Err(e) if e.is_transient() && attempt + 1 < ATTEMPTS => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(BACKOFF * 2u32.pow(attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn fetch_once(
    cfg: &FetchConfig,
    url: &HttpUrl,
    start: u64,
    buf: &mut [u8],
    etag: Option<&str>,
    stats: &SharedStats,
) -> RemoteResult<()> {
    let last = start + buf.len() as u64 - 1;
    let range = format!("bytes={start}-{last}");
    let auth = cfg.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Range", range.as_str())];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let r = cfg.client.request("GET", url, &headers, b"")?;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if r.status == 200 {
        return Err(RemoteError::NoRanges(format!(
            "{url} ignored the Range request and sent the whole object; compute reads only sources that serve byte ranges"
        )));
    }
    let r = r.success(&format!("range {start}-{last}"))?;
    if r.status != 206 {
        return Err(RemoteError::Protocol(format!("{url}: answered {} to a range request", r.status)));
    }
    let expected = format!("bytes {start}-{last}/");
    if !r.header("content-range").is_some_and(|v| v.starts_with(&expected)) {
        return Err(RemoteError::Protocol(format!(
            "{url}: answered Content-Range {:?} to {range}",
            r.header("content-range").unwrap_or("")
        )));
    }
    if let (Some(want), Some(got)) = (etag, r.header("etag")) {
        if want != got {
            return Err(RemoteError::Origin {
                status: 412,
                message: format!("{url} changed during the job (ETag {want} became {got}); run it again"),
            });
        }
    }
    stats.note_cache(&r);
    r.read_exact_into(buf)?;
    stats.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_is_never_shown() {
        let c = super::FetchConfig {
            client: magicfs_net::Client::new(magicfs_net::Allowlist::loopback()),
            streams: 1,
            token: Some("very-secret".into()),
        };
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn streams_are_capped_per_origin() {
        let peak = AtomicUsize::new(0);
        let now = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    let _slot = acquire("http://test-origin:1", 3);
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }
}
