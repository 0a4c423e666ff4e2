//! A mount of a shared volume (see [`magicfs_store::SharedMeta`]).
//!
//! Every mutation is a turn: take the volume's write lock and fetch the
//! changes other mounts committed since this mount last caught up (one
//! round trip), apply them to the inode table, run the operation against
//! the now current table (its checks and absolute values — link counts,
//! reference counts, the next inode number — are therefore right), and
//! write its batch with a change-log entry (one round trip). The
//! operations in `namespace.rs`, `setattr.rs`, `xattr.rs` and `data.rs` are
//! written once, as closures over the table and a batch, and run the same
//! way on a private store.
//!
//! Between mutations, a background thread applies other mounts' changes
//! as they are announced and tells the kernel what to forget; `open`
//! catches up first (close-to-open). It also sends heartbeats (with the
//! inodes this mount keeps open after another mount unlinked them) and,
//! on one mount at a time, frees orphans nobody keeps open.

use crate::fs::Fs;
use crate::node::Meta;
use crate::rows::Inval;
use magicfs_store::keys::{be_u64, ino_key};
use magicfs_store::{Batch, Change, SharedMeta, StoreError, Table};
use magicfs_types::{FsError, FsResult, Ino, Timespec};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Timing of a mount of a shared volume.
#[derive(Clone, Copy, Debug)]
pub struct ClusterConfig {
    /// How often the mount says it is alive.
    pub heartbeat: Duration,
    /// Silence after which a mount's session is removed (and what it kept
    /// open is freed).
    pub session_timeout: Duration,
    /// How often the change log is polled when no notification arrives.
    pub poll: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            heartbeat: Duration::from_secs(2),
            session_timeout: Duration::from_secs(30),
            poll: Duration::from_millis(500),
        }
    }
}

/// Called with what the kernel must forget after changes from other mounts.
pub type InvalListener = Arc<dyn Fn(&[Inval]) + Send + Sync>;

/// Mutations whose commit failed with an uncertain outcome are tried again
/// this many times (each attempt first learns whether the last one landed).
const ATTEMPTS: usize = 3;

/// After a one-step commit found another mount's change, this many
/// mutations take the two-step turn (other mounts are busy) before one-step
/// commits are tried again.
const TWO_STEP_AFTER_MISS: u32 = 8;

#[derive(Default)]
struct Holds {
    /// Inodes the volume knows this mount keeps open.
    held: HashSet<Ino>,
    /// To announce with the next heartbeat.
    hold: HashSet<Ino>,
    /// To withdraw with the next heartbeat.
    release: HashSet<Ino>,
}

/// The state of a mount of a shared volume.
pub(crate) struct Cluster {
    cfg: ClusterConfig,
    /// The last change applied; held for a whole turn or catch-up.
    applied: Mutex<u64>,
    /// A copy readable without waiting (heartbeats, status).
    applied_now: AtomicU64,
    tokens: AtomicU64,
    /// Rows written by batches whose commit failed: read again at the next turn.
    stale: Mutex<Vec<(Table, Vec<u8>)>>,
    holds: Mutex<Holds>,
    /// Each file's `remote_gen` when this mount last opened it.
    opened: Mutex<HashMap<Ino, u64>>,
    listener: RwLock<Option<InvalListener>>,
    /// Orphans nobody keeps open, with the change-log head when first seen so.
    candidates: Mutex<HashMap<Ino, u64>>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    last_error: Mutex<Option<String>>,
    /// Mutations left to run as two-step turns before trying a one-step
    /// commit again (set when one found the volume had moved on).
    two_step: AtomicU32,
    /// Access times to record: reads never wait for the database; the
    /// background thread commits these in one turn.
    atimes: Mutex<HashMap<Ino, Timespec>>,
}

impl Cluster {
    pub(crate) fn new(cfg: ClusterConfig, applied: u64) -> Cluster {
        Cluster {
            cfg,
            applied: Mutex::new(applied),
            applied_now: AtomicU64::new(applied),
            tokens: AtomicU64::new(1),
            stale: Mutex::default(),
            holds: Mutex::default(),
            opened: Mutex::default(),
            listener: RwLock::new(None),
            candidates: Mutex::default(),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            last_error: Mutex::new(None),
            two_step: AtomicU32::new(0),
            atimes: Mutex::default(),
        }
    }

    /// Queues an access time for the background thread to record.
    pub(crate) fn note_access(&self, ino: Ino, at: Timespec) {
        self.atimes.lock().insert(ino, at);
    }

    /// The last change this mount applied.
    pub(crate) fn applied(&self) -> u64 {
        self.applied_now.load(Ordering::Acquire)
    }

    /// The last failure talking to the volume, if the latest attempt failed.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// Keeps an unlinked inode that is open here from being freed.
    pub(crate) fn hold(&self, ino: Ino) {
        let mut h = self.holds.lock();
        h.release.remove(&ino);
        if !h.held.contains(&ino) {
            h.hold.insert(ino);
        }
    }

    /// The last handle of an unlinked inode here was closed.
    pub(crate) fn unhold(&self, ino: Ino) {
        let mut h = self.holds.lock();
        h.hold.remove(&ino);
        if h.held.contains(&ino) {
            h.release.insert(ino);
        }
    }

    fn failed(&self, what: &str, e: &StoreError) -> FsError {
        log::error!("{what}: {e}");
        *self.last_error.lock() = Some(e.to_string());
        FsError::Io
    }
}

impl Fs {
    fn shared(&self) -> &dyn SharedMeta {
        match self.store.shared() {
            Some(s) => s,
            None => unreachable!("a cluster mount's store is shared"),
        }
    }

    /// Runs a mutation: `op` changes the table and records the rows it
    /// changed in the batch; the batch is committed before this returns.
    /// `op` must leave the table untouched when it fails, and may run more
    /// than once on a shared volume (after a commit failed).
    pub(crate) fn mutate<T>(&self, mut op: impl FnMut(&mut Meta, &mut Batch) -> FsResult<T>) -> FsResult<T> {
        let Some(c) = &self.cluster else {
            let mut meta = self.meta.write();
            let mut b = Batch::new();
            let r = op(&mut meta, &mut b)?;
            self.commit(b)?;
            return Ok(r);
        };
        let shared = self.shared();
        let mut applied = c.applied.lock();
        let token = c.tokens.fetch_add(1, Ordering::Relaxed);
        let mut landed: Option<T> = None;
        let mut reloaded = false;
        // Believing itself current (no other mount committed since it
        // caught up), a mount runs the operation first and commits in one
        // round trip; the engine refuses if the volume moved on meanwhile.
        let one_step = c.two_step.load(Ordering::Relaxed) == 0 && c.stale.lock().is_empty();
        if !one_step {
            let _ = c.two_step.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        } else {
            let mut b = Batch::new();
            // A refusal computed from a table that may be behind is checked
            // again in a full turn.
            let r = op(&mut self.meta.write(), &mut b);
            let r = match r {
                Ok(r) if b.is_empty() => return Ok(r),
                Ok(r) => Some(r),
                Err(_) => None,
            };
            match r.map(|r| (r, shared.commit_if_current(*applied, &b, token))) {
                None => {}
                Some((r, Ok(Some(seq)))) => {
                    *applied = seq;
                    c.applied_now.store(seq, Ordering::Release);
                    self.store.count_commit();
                    *c.last_error.lock() = None;
                    return Ok(r);
                }
                Some((_, Ok(None))) => {
                    // Undo with the rows as committed, then take a full turn.
                    c.two_step.store(TWO_STEP_AFTER_MISS, Ordering::Relaxed);
                    c.stale.lock().extend(b.ops.into_iter().map(|op| (op.table, op.key)));
                }
                Some((r, Err(e))) => {
                    log::warn!("committing a metadata change failed, trying again: {e}");
                    *c.last_error.lock() = Some(e.to_string());
                    c.stale.lock().extend(b.ops.into_iter().map(|op| (op.table, op.key)));
                    landed = Some(r);
                }
            }
        }
        for _ in 0..ATTEMPTS {
            let (mut turn, changes) = match shared.begin(*applied) {
                Ok(t) => t,
                Err(StoreError::Stale { .. }) if !reloaded => {
                    reloaded = true;
                    self.reload(c, &mut applied).map_err(|e| c.failed("loading the volume again", &e))?;
                    continue;
                }
                Err(e) => return Err(c.failed("starting a metadata transaction", &e)),
            };
            let stale = std::mem::take(&mut *c.stale.lock());
            let mut fresh = Vec::with_capacity(stale.len());
            for (t, k) in &stale {
                match turn.get(*t, k) {
                    Ok(v) => fresh.push(v),
                    Err(e) => {
                        c.stale.lock().extend(stale);
                        return Err(c.failed("reading rows back after a failed commit", &e));
                    }
                }
            }
            let mine = changes.iter().any(|ch| ch.session == shared.session() && ch.token == token);
            let mut meta = self.meta.write();
            for ((t, k), v) in stale.iter().zip(&fresh) {
                if let Err(e) = meta.apply_row(*t, k, v.as_deref(), None) {
                    log::error!("reading a row back: {e}");
                }
            }
            let mut invals = self.apply_changes(c, &mut meta, &changes, &mut applied);
            if !stale.is_empty() {
                invals.extend(stale.iter().filter_map(|(t, k)| match t {
                    Table::Inodes => be_u64(k).map(Inval::Inode),
                    _ => None,
                }));
            }
            if let (true, Some(r)) = (mine, landed.take()) {
                // The last attempt committed after all.
                drop(meta);
                drop(turn);
                self.deliver(invals);
                *c.last_error.lock() = None;
                return Ok(r);
            }
            let mut b = Batch::new();
            let r = op(&mut meta, &mut b);
            drop(meta);
            self.deliver(invals);
            let r = r?;
            if b.is_empty() {
                return Ok(r);
            }
            match turn.commit(&b, token) {
                Ok(seq) => {
                    *applied = seq;
                    c.applied_now.store(seq, Ordering::Release);
                    self.store.count_commit();
                    *c.last_error.lock() = None;
                    return Ok(r);
                }
                Err(e) => {
                    log::warn!("committing a metadata change failed, trying again: {e}");
                    *c.last_error.lock() = Some(e.to_string());
                    c.stale.lock().extend(b.ops.into_iter().map(|op| (op.table, op.key)));
                    landed = Some(r);
                }
            }
        }
        log::error!("a metadata change failed {ATTEMPTS} times; answering EIO");
        Err(FsError::Io)
    }

    /// Applies changes of other mounts (and skips those already applied).
    fn apply_changes(&self, c: &Cluster, meta: &mut Meta, changes: &[Change], applied: &mut u64) -> Vec<Inval> {
        let mut invals = Vec::new();
        for ch in changes {
            if ch.seq <= *applied {
                continue;
            }
            for op in &ch.batch.ops {
                if let (Table::Orphans, Some(_), Some(ino)) = (op.table, &op.value, be_u64(&op.key)) {
                    if meta.nodes.get(&ino).is_some_and(|n| n.open.load(Ordering::Acquire) > 0) {
                        c.hold(ino);
                    }
                }
                if let Err(e) = meta.apply_row(op.table, &op.key, op.value.as_deref(), Some(&mut invals)) {
                    log::error!("applying change {} from session {}: {e}", ch.seq, ch.session);
                }
            }
            *applied = ch.seq;
        }
        c.applied_now.store(*applied, Ordering::Release);
        invals
    }

    /// Hands what the kernel must forget to the listener.
    fn deliver(&self, mut invals: Vec<Inval>) {
        if invals.is_empty() {
            return;
        }
        let Some(c) = &self.cluster else { return };
        let Some(l) = c.listener.read().clone() else { return };
        invals.sort_unstable();
        invals.dedup();
        l(&invals);
    }

    /// Applies every change other mounts committed so far (one round trip).
    /// A no-op on a private store.
    pub fn catch_up(&self) -> FsResult<()> {
        let Some(c) = &self.cluster else { return Ok(()) };
        // Read without holding the turn lock: a turn may run meanwhile (it
        // applies what it finds itself; what is left is skipped below).
        let changes = match self.shared().changes(c.applied()) {
            Ok(ch) => ch,
            Err(StoreError::Stale { .. }) => {
                let mut applied = c.applied.lock();
                return self.reload(c, &mut applied).map_err(|e| c.failed("loading the volume again", &e));
            }
            Err(e) => return Err(c.failed("reading the change log", &e)),
        };
        let mut applied = c.applied.lock();
        if changes.last().is_none_or(|ch| ch.seq <= *applied) {
            return Ok(());
        }
        let invals = {
            let mut meta = self.meta.write();
            self.apply_changes(c, &mut meta, &changes, &mut applied)
        };
        drop(applied);
        self.deliver(invals);
        Ok(())
    }

    /// Loads the whole table again (this mount fell behind the trimmed
    /// change log, or its session had expired), keeping what is local:
    /// open counts, uncommitted pages, inodes open here that are gone.
    fn reload(&self, c: &Cluster, applied: &mut u64) -> Result<(), StoreError> {
        log::warn!("this mount fell behind the volume's change log; loading the volume again");
        let mut fresh = Meta::empty();
        let mut bad = None;
        let seq = self.store.snapshot(|t, k, v| {
            if let Err(e) = fresh.apply_row(t, k, Some(v), None) {
                bad.get_or_insert(e);
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        let mut invals = Vec::new();
        {
            let mut meta = self.meta.write();
            for (ino, mut old) in std::mem::take(&mut meta.nodes) {
                let open = old.open.load(Ordering::Acquire);
                match fresh.nodes.get_mut(&ino) {
                    Some(n) => {
                        if n.attr != old.attr {
                            invals.push(Inval::Inode(ino));
                        }
                        if let (Some(a), Some(b)) = (old.entries(), n.entries()) {
                            for (name, child) in a {
                                if b.get(name) != Some(child) {
                                    invals.push(Inval::Entry { parent: ino, name: name.clone() });
                                }
                            }
                            for name in b.keys().filter(|k| !a.contains_key(*k)) {
                                invals.push(Inval::Entry { parent: ino, name: name.clone() });
                            }
                        }
                        n.open = AtomicU32::new(open);
                        n.remote_gen = old.remote_gen + 1;
                        if let (Some(of), Some(nf)) = (old.file_mut(), n.file_mut()) {
                            nf.pages = std::mem::take(&mut of.pages);
                            nf.dirty_bytes = of.dirty_bytes;
                            nf.commit_lock = of.commit_lock.clone();
                            nf.content_gen = of.content_gen + 1;
                        }
                        // Writes not flushed yet keep the size and time they
                        // gave the file, as when another mount's change is applied.
                        let stored = n.attr;
                        n.attr = old.attr;
                        n.take_stored_attr(stored);
                    }
                    None if open > 0 => {
                        fresh.nodes.insert(ino, old);
                    }
                    None => invals.push(Inval::Inode(ino)),
                }
            }
            *meta = fresh;
        }
        *applied = seq;
        c.applied_now.store(seq, Ordering::Release);
        c.stale.lock().clear();
        {
            let mut h = c.holds.lock();
            let held = std::mem::take(&mut h.held);
            h.hold.extend(held);
        }
        self.deliver(invals);
        Ok(())
    }

    /// Whether the kernel may keep the cached pages of `ino` at this open:
    /// true unless another mount changed the file since this mount last
    /// opened it (always true on a private store).
    pub(crate) fn keep_cache(&self, ino: Ino) -> bool {
        let Some(c) = &self.cluster else { return true };
        let gen = self.meta.read().nodes.get(&ino).map_or(0, |n| n.remote_gen);
        c.opened.lock().insert(ino, gen) == Some(gen)
    }

    /// Tells `listener` what the kernel must forget whenever changes from
    /// other mounts are applied.
    pub fn on_remote_change(&self, listener: InvalListener) {
        if let Some(c) = &self.cluster {
            *c.listener.write() = Some(listener);
        }
    }

    /// True when this filesystem is a mount of a shared volume.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Starts the mount's background work on a shared volume: applying
    /// announced changes, heartbeats, cleaning. A no-op on a private store.
    pub fn start_background(self: &Arc<Fs>) {
        let Some(c) = &self.cluster else { return };
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new().name("magicfs-cluster".into()).spawn(move || background(weak));
        match spawned {
            Ok(h) => *c.thread.lock() = Some(h),
            Err(e) => log::error!("cannot start the cluster thread: {e}"),
        }
    }

    /// Stops the background work and ends the session (nothing is kept
    /// open by this mount any more).
    pub(crate) fn leave_cluster(&self) {
        let Some(c) = &self.cluster else { return };
        if c.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(h) = c.thread.lock().take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        self.record_atimes(c);
        if let Err(e) = self.shared().end_session() {
            log::warn!("ending the session: {e}");
        }
    }

    fn heartbeat(&self, c: &Cluster) {
        let applied = c.applied();
        let (hold, release): (Vec<Ino>, Vec<Ino>) = {
            let mut h = c.holds.lock();
            (h.hold.drain().collect(), h.release.drain().collect())
        };
        match self.shared().heartbeat(applied, &hold, &release) {
            Ok(()) => {
                let mut h = c.holds.lock();
                for i in hold {
                    // Closed again meanwhile: withdrawn with the next beat.
                    if !h.hold.contains(&i) {
                        h.held.insert(i);
                    }
                }
                for i in release {
                    h.held.remove(&i);
                }
            }
            Err(StoreError::SessionExpired(_)) => {
                {
                    let mut h = c.holds.lock();
                    h.hold.extend(hold);
                    h.release.extend(release);
                }
                let mut applied = c.applied.lock();
                if let Err(e) = self.reload(c, &mut applied) {
                    c.failed("joining the volume again", &e);
                }
            }
            Err(e) => {
                let mut h = c.holds.lock();
                h.hold.extend(hold);
                h.release.extend(release);
                drop(h);
                c.failed("heartbeat", &e);
            }
        }
    }

    /// Frees orphans that no live mount keeps open, once every live mount
    /// has applied the change log past the point they were first seen so.
    fn clean(&self, c: &Cluster) {
        let h = match self.shared().housekeeping(c.cfg.session_timeout) {
            Ok(Some(h)) => h,
            Ok(None) => {
                c.candidates.lock().clear();
                return;
            }
            Err(e) => {
                c.failed("housekeeping", &e);
                return;
            }
        };
        if !h.expired.is_empty() {
            log::warn!("removed {} mount sessions that stopped heartbeating: {:?}", h.expired.len(), h.expired);
        }
        let free: Vec<Ino> = {
            let mut cands = c.candidates.lock();
            let now: HashSet<Ino> = h.unsustained.iter().copied().collect();
            cands.retain(|i, _| now.contains(i));
            let mut free = Vec::new();
            for ino in &h.unsustained {
                match cands.get(ino) {
                    None => {
                        cands.insert(*ino, h.head);
                    }
                    Some(seen) if h.min_applied >= *seen => free.push(*ino),
                    Some(_) => {}
                }
            }
            free
        };
        if free.is_empty() {
            return;
        }
        let r = self.mutate(|meta, b| {
            for ino in &free {
                match meta.nodes.get(ino) {
                    Some(n) if n.attr.nlink == 0 && n.open.load(Ordering::Acquire) == 0 => {
                        meta.free_node(b, *ino);
                    }
                    Some(_) => {}
                    None => b.del(Table::Orphans, ino_key(*ino)),
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => {
                let mut cands = c.candidates.lock();
                for ino in &free {
                    cands.remove(ino);
                }
                log::debug!("freed {} orphans", free.len());
            }
            Err(e) => log::warn!("freeing orphans: {e}"),
        }
    }
}

impl Fs {
    /// Commits the access times reads queued, in one turn (a time never
    /// moves back: another mount may have recorded a later one).
    fn record_atimes(&self, c: &Cluster) {
        let due = std::mem::take(&mut *c.atimes.lock());
        if due.is_empty() {
            return;
        }
        let r = self.mutate(|meta, b| {
            for (&ino, &at) in &due {
                let Some(n) = meta.nodes.get_mut(&ino) else { continue };
                if n.attr.atime < at {
                    n.attr.atime = at;
                    meta.log_node(b, ino);
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            log::warn!("recording access times of {} inodes: {e}", due.len());
        }
    }
}

/// The background thread of a mount of a shared volume.
fn background(weak: Weak<Fs>) {
    let mut last_beat = Instant::now();
    let mut last_clean = Instant::now();
    loop {
        let Some(fs) = weak.upgrade() else { return };
        let Some(c) = &fs.cluster else { return };
        if c.stop.load(Ordering::Acquire) {
            return;
        }
        fs.shared().wait_for_change(c.applied(), c.cfg.poll);
        if c.stop.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = fs.catch_up() {
            log::debug!("catching up: {e}");
        }
        fs.record_atimes(c);
        if last_beat.elapsed() >= c.cfg.heartbeat {
            last_beat = Instant::now();
            fs.heartbeat(c);
        }
        if last_clean.elapsed() >= c.cfg.heartbeat {
            last_clean = Instant::now();
            fs.clean(c);
        }
    }
}
