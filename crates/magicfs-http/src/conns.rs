//! The open connections and the cap on them.
//!
//! Each connection holds a [`Slot`]. A connection is busy while a request
//! on it is being answered (until its answer's body has been sent) and idle
//! otherwise: waiting for its first request head, or kept alive between
//! requests. At the cap, admitting a connection closes the one idle
//! longest, so clients that open connections and send nothing (or send
//! their heads a byte at a time) cannot lock others out; if every
//! connection is busy, the new one is refused.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// The registry of open connections.
pub(crate) struct Conns {
    max: usize,
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    live: HashMap<u64, Entry>,
    evicted: u64,
    refused: u64,
}

struct Entry {
    busy: usize,
    idle_since: Instant,
    evict: Arc<Notify>,
}

/// Counts for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ConnCounts {
    pub(crate) open: u64,
    pub(crate) evicted: u64,
    pub(crate) refused: u64,
}

impl Conns {
    /// A registry admitting at most `max` connections at once.
    pub(crate) fn new(max: usize) -> Arc<Conns> {
        Arc::new(Conns { max: max.max(1), inner: Mutex::new(Registry::default()) })
    }

    /// A slot for a new connection, closing the longest-idle one at the cap;
    /// `None` when every open connection is busy.
    pub(crate) fn admit(self: &Arc<Conns>) -> Option<Slot> {
        let mut r = self.inner.lock();
        if r.live.len() >= self.max {
            let victim =
                r.live.iter().filter(|(_, e)| e.busy == 0).min_by_key(|(_, e)| e.idle_since).map(|(id, _)| *id);
            match victim.and_then(|id| r.live.remove(&id)) {
                Some(e) => {
                    e.evict.notify_one();
                    r.evicted += 1;
                }
                None => {
                    r.refused += 1;
                    return None;
                }
            }
        }
        let id = r.next;
        r.next += 1;
        let evict = Arc::new(Notify::new());
        r.live.insert(id, Entry { busy: 0, idle_since: Instant::now(), evict: evict.clone() });
        Some(Slot { id, conns: self.clone(), evict })
    }

    /// Open, evicted and refused connections.
    pub(crate) fn counts(&self) -> ConnCounts {
        let r = self.inner.lock();
        ConnCounts { open: r.live.len() as u64, evicted: r.evicted, refused: r.refused }
    }
}

/// A connection's place in the registry; dropping it frees the place.
pub(crate) struct Slot {
    id: u64,
    conns: Arc<Conns>,
    evict: Arc<Notify>,
}

impl Slot {
    /// Completes when the registry closes this connection to admit another.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Marks the connection busy until the guard is dropped.
    pub(crate) fn busy(&self) -> Busy {
        if let Some(e) = self.conns.inner.lock().live.get_mut(&self.id) {
            e.busy += 1;
        }
        Busy { id: self.id, conns: self.conns.clone() }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.inner.lock().live.remove(&self.id);
    }
}

/// A request being answered on a connection.
pub(crate) struct Busy {
    id: u64,
    conns: Arc<Conns>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(e) = self.conns.inner.lock().live.get_mut(&self.id) {
            e.busy = e.busy.saturating_sub(1);
            e.idle_since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_connection_makes_room() {
        let conns = Conns::new(2);
        let a = conns.admit().unwrap();
        let b = conns.admit().unwrap();
        let busy_a = a.busy();
        // At the cap: b is idle, so it is closed for c.
        let c = conns.admit().unwrap();
        assert_eq!(conns.counts().evicted, 1);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(1), b.evicted()).await.unwrap() });
        // a and c busy: a fourth connection is refused.
        let _busy_c = c.busy();
        assert!(conns.admit().is_none());
        assert_eq!(conns.counts().refused, 1);
        // a done: it is idle again and makes room.
        drop(busy_a);
        let d = conns.admit().unwrap();
        assert_eq!(conns.counts().evicted, 2);
        drop((a, b));
        assert_eq!(conns.counts().open, 2, "c and d");
        drop(d);
        assert_eq!(conns.counts().open, 1);
    }
}
