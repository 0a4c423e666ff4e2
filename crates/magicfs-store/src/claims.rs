//! Claims: which mount of a shared volume does a piece of work.
//!
//! Several daemons mount a shared volume, and each would otherwise answer
//! the same chat turn or generate the same file. Before such work a daemon
//! claims a key (`kind`, `key`) for a lease; exactly one session holds a
//! key at a time. The holder does the work, makes its result part of the
//! volume (committed like any change), and finishes the claim. Whoever
//! claims the key next first looks at the volume, finds the result there,
//! and does nothing: the result, not the claim, says the work is done, so
//! a key can be reused (a session truncated and started again).
//!
//! A claim whose holder stopped renewing it (a mount that died) lapses
//! when its lease runs out, or as soon as the holder's session is gone,
//! and another mount takes it over. A store of one daemon always grants.

use crate::engine::MetaEngine;
use crate::error::StoreResult;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Claims of a volume several sessions share.
pub trait Claims: Send + Sync {
    /// Claims `key` of `kind` for this session for `lease`. True when
    /// granted: the key was free, its lease had run out, its holder's
    /// session is gone, or this session already held it (the lease then
    /// starts again, so a long job renews by claiming again). False while
    /// another live session holds it.
    fn claim(&self, kind: &str, key: &str, lease: Duration) -> StoreResult<bool>;

    /// Ends this session's claim on `key` (its work is done or given up):
    /// the key can be claimed again at once. A no-op when not held.
    fn finish(&self, kind: &str, key: &str) -> StoreResult<()>;
}

/// Claims `key` of `kind` on `engine`: shared engines ask the volume; a
/// store of one daemon always grants.
pub fn claim(engine: &dyn MetaEngine, kind: &str, key: &str, lease: Duration) -> StoreResult<bool> {
    match engine.shared() {
        Some(s) => s.claim(kind, key, lease),
        None => Ok(true),
    }
}

/// Finishes a claim made with [`claim`].
pub fn finish(engine: &dyn MetaEngine, kind: &str, key: &str) -> StoreResult<()> {
    match engine.shared() {
        Some(s) => s.finish(kind, key),
        None => Ok(()),
    }
}

struct Held {
    session: u64,
    until: Instant,
}

/// The claims of a memory volume shared in one process.
#[derive(Default)]
pub(crate) struct MemClaims {
    held: Mutex<HashMap<(String, String), Held>>,
}

impl MemClaims {
    /// [`Claims::claim`] for `session`; `alive` says whether a holder's session still exists.
    pub(crate) fn claim(
        &self,
        session: u64,
        kind: &str,
        key: &str,
        lease: Duration,
        alive: impl Fn(u64) -> bool,
    ) -> bool {
        let mut held = self.held.lock();
        let now = Instant::now();
        let k = (kind.to_string(), key.to_string());
        if let Some(h) = held.get(&k) {
            if h.session != session && h.until > now && alive(h.session) {
                return false;
            }
        }
        held.insert(k, Held { session, until: now + lease });
        true
    }

    /// [`Claims::finish`] for `session`.
    pub(crate) fn finish(&self, session: u64, kind: &str, key: &str) {
        let mut held = self.held.lock();
        let k = (kind.to_string(), key.to_string());
        if held.get(&k).is_some_and(|h| h.session == session) {
            held.remove(&k);
        }
    }
}
