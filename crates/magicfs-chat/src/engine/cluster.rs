//! Chat sessions on a volume several daemons mount.
//!
//! Every daemon runs the engine, and a turn must be answered by exactly
//! one of them. The sentinels (`sessions/.generating.<id>`) are the work
//! queue every mount sees (they are files of the shared volume), and the
//! volume's claims (`magicfs_store::claims`, a table in PostgreSQL) say
//! who works on an entry:
//!
//! - A worker claims the session (`chat`, id) before it reads the
//!   transcript; refused, it leaves the session to the holder and tries
//!   again later. Granted, it catches up with the volume's change log, so
//!   it reads the transcript as committed, and answers only if the last
//!   turn is still a User turn: a turn someone else already answered is
//!   left alone. The claim ends once the reply is committed and the
//!   sentinel removed, so the next holder sees the reply.
//! - While the reply streams, it is committed every
//!   [`COMMIT_EVERY`], so every mount sees it grow, and the claim is
//!   renewed every [`RENEW`].
//! - Every [`SCAN_EVERY`], each mount queues the sessions whose sentinel
//!   it sees and the sessions it was refused: a turn written on any mount
//!   is answered even if that mount does not answer sessions, and a mount
//!   that dies mid-reply (its claim lapses after [`LEASE`], or at once when
//!   its session is removed) is taken over.

use super::{Sessions, SENTINEL_PREFIX};
use magicfs_core::Ctx;
use std::time::{Duration, Instant};

/// The claims' kind.
const KIND: &str = "chat";
/// How long a claim lasts without renewal.
const LEASE: Duration = Duration::from_secs(30);
/// How often a streaming reply renews its claim.
const RENEW: Duration = Duration::from_secs(10);
/// How often a streaming reply is committed for the other mounts.
const COMMIT_EVERY: Duration = Duration::from_millis(250);
/// How often sentinels and refused sessions are looked at.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// A reply streaming on a shared volume: commits and renewals.
pub(super) struct Streaming {
    shared: bool,
    committed: Instant,
    renewed: Instant,
}

impl Streaming {
    /// For a reply on a shared volume when `shared` (else [`Streaming::tick`] does nothing).
    pub(super) fn new(shared: bool) -> Streaming {
        Streaming { shared, committed: Instant::now(), renewed: Instant::now() }
    }

    /// Called before each piece of the reply: commits what was written
    /// when [`COMMIT_EVERY`] has passed, renews the claim when [`RENEW`]
    /// has. False when another mount has taken the session over.
    pub(super) fn tick(&mut self, s: &Sessions, id: &str, ino: u64) -> bool {
        if !self.shared {
            return true;
        }
        let now = Instant::now();
        if now.duration_since(self.committed) >= COMMIT_EVERY {
            self.committed = now;
            if let Err(e) = s.fs.flush(ino) {
                log::warn!("session {id}: committing the reply so far: {e}");
            }
        }
        if now.duration_since(self.renewed) >= RENEW {
            self.renewed = now;
            if let Ok(false) = s.fs.claim(KIND, id, LEASE) {
                log::warn!("session {id}: another mount took the session over; this reply stops");
                return false;
            }
        }
        true
    }
}

/// The daemon's own user and group (for sentinels made on its own behalf).
pub(super) fn daemon_ctx() -> Ctx {
    // SAFETY: getuid/getgid cannot fail.
    unsafe { Ctx { uid: libc::getuid(), gid: libc::getgid() } }
}

impl Sessions {
    /// Claims queued session `id` for this mount (always granted on a
    /// private store). On a shared volume, once granted, the mount is
    /// brought up to date with the change log and the sentinel is made
    /// sure of if a reply is due; refused (or failing), the session is
    /// taken off the queue and tried again by the next scan.
    pub(super) fn claim(&self, id: &str) -> bool {
        if !self.fs.is_cluster() {
            return true;
        }
        let granted = matches!(self.fs.claim(KIND, id, LEASE), Ok(true));
        if granted {
            if self.fs.catch_up().is_ok() {
                let found = self.inner.lock().sessions.get(id).map(|s| (s.ino, s.owner));
                if let Some((ino, owner)) = found {
                    if self.wants_reply(ino) {
                        self.make_sentinel(id, owner.unwrap_or_else(daemon_ctx));
                    }
                }
                return true;
            }
            self.fs.finish_claim(KIND, id);
        }
        let mut inner = self.inner.lock();
        if let Some(s) = inner.sessions.get_mut(id) {
            s.queued = false;
        }
        inner.waiting.insert(id.to_string());
        false
    }

    /// Ends this mount's claim on session `id` (shared volumes).
    pub(super) fn unclaim(&self, id: &str) {
        if self.fs.is_cluster() {
            self.fs.finish_claim(KIND, id);
        }
    }

    /// The scan thread of a shared volume's mount (see the module's notes).
    pub(super) fn scan_cluster(&self) {
        loop {
            let next = Instant::now() + SCAN_EVERY;
            while Instant::now() < next {
                if self.inner.lock().shutdown {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            self.scan_once();
        }
    }

    /// Queues the sessions whose sentinel shows and those another mount held.
    fn scan_once(&self) {
        let Some(dir) = self.dir() else { return };
        let mut ids: Vec<String> = std::mem::take(&mut self.inner.lock().waiting).into_iter().collect();
        if let Ok(entries) = self.fs.read_dir_path("sessions") {
            for e in entries {
                if let Some(id) = std::str::from_utf8(&e.name).ok().and_then(|n| n.strip_prefix(SENTINEL_PREFIX)) {
                    ids.push(id.to_string());
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let mut queued = false;
        for id in ids {
            let Ok(a) = self.fs.lookup(dir, id.as_bytes()) else { continue };
            let mut inner = self.inner.lock();
            if inner.shutdown {
                return;
            }
            inner.by_ino.insert(a.ino, id.clone());
            let s = inner.sessions.entry(id.clone()).or_default();
            s.ino = a.ino;
            if s.queued || s.streaming || s.pending {
                continue;
            }
            s.queued = true;
            inner.queue.push_back(id);
            queued = true;
        }
        if queued {
            self.wake.notify_all();
        }
    }
}
