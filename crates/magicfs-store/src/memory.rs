//! The memory engine: tables in ordered maps, nothing on disk.
//!
//! [`MemEngine::new`] serves one filesystem (`--memory` mounts).
//! [`MemVolume`] is a volume that several filesystems of one process
//! share, each through its own [`MemEngine`] session: the same cluster
//! protocol as the PostgreSQL engine (write lock per mutation, change log,
//! sessions, kept-open inodes), so the semantics across mounts are tested
//! against both.

use crate::batch::{Batch, Op};
use crate::engine::{Change, Housekeeping, MetaEngine, RowSink, SharedMeta, Turn};
use crate::error::{StoreError, StoreResult};
use crate::keys::Table;
use crate::StoreInfo;
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Rows = BTreeMap<Vec<u8>, Vec<u8>>;

struct SessionState {
    heartbeat: Instant,
    applied: u64,
    holds: BTreeSet<u64>,
}

#[derive(Default)]
struct State {
    tables: [Rows; Table::ALL.len()],
    /// The change log (shared volumes only); `log[0].seq == first`.
    log: VecDeque<Change>,
    /// Sequence number of the last change, trimmed or not.
    head: u64,
    sessions: BTreeMap<u64, SessionState>,
    next_session: u64,
    counters: HashMap<String, u64>,
}

impl State {
    /// Applies a batch's rows: moved in from a batch nobody else needs, or
    /// cloned from one the change log keeps too.
    fn apply(&mut self, ops: impl IntoIterator<Item = Op>) {
        for op in ops {
            let t = &mut self.tables[op.table as usize];
            match op.value {
                Some(v) => {
                    t.insert(op.key, v);
                }
                None => {
                    t.remove(&op.key);
                }
            }
        }
    }

    fn changes_after(&self, since: u64) -> StoreResult<Vec<Change>> {
        let first = self.head + 1 - self.log.len() as u64;
        if since + 1 < first {
            return Err(StoreError::Stale { since, oldest: first });
        }
        Ok(self.log.iter().skip((since + 1 - first) as usize).cloned().collect())
    }
}

/// A memory volume shared by several filesystems in one process.
#[derive(Default)]
pub struct MemVolume {
    state: Mutex<State>,
    /// The write lock: true while a turn holds it.
    locked: Mutex<bool>,
    unlocked: Condvar,
    /// Signalled on every committed change.
    changed: Condvar,
    shared: bool,
    claims: crate::claims::MemClaims,
}

impl MemVolume {
    /// A new, empty shared volume.
    pub fn new() -> Arc<MemVolume> {
        Arc::new(MemVolume { shared: true, ..MemVolume::default() })
    }

    /// A new session on the volume: the engine one filesystem mounts.
    pub fn session(self: &Arc<MemVolume>) -> MemEngine {
        let mut s = self.state.lock();
        s.next_session += 1;
        let id = s.next_session;
        let applied = s.head;
        s.sessions.insert(id, SessionState { heartbeat: Instant::now(), applied, holds: BTreeSet::new() });
        MemEngine { vol: self.clone(), session: id }
    }

    /// Sessions alive (registered and not expired or ended).
    pub fn sessions(&self) -> Vec<u64> {
        self.state.lock().sessions.keys().copied().collect()
    }

    /// Entries in the change log.
    pub fn log_len(&self) -> usize {
        self.state.lock().log.len()
    }
}

/// The memory engine: one filesystem's, or one session of a [`MemVolume`].
pub struct MemEngine {
    vol: Arc<MemVolume>,
    session: u64,
}

impl Default for MemEngine {
    fn default() -> Self {
        MemEngine::new()
    }
}

impl MemEngine {
    /// An empty engine for one filesystem.
    pub fn new() -> MemEngine {
        MemEngine { vol: Arc::new(MemVolume::default()), session: 0 }
    }

    /// Sequence number of the last change.
    fn head(&self) -> u64 {
        self.vol.state.lock().head
    }

    fn lock(&self) {
        let mut l = self.vol.locked.lock();
        while *l {
            self.vol.unlocked.wait(&mut l);
        }
        *l = true;
    }

    fn unlock(&self) {
        *self.vol.locked.lock() = false;
        self.vol.unlocked.notify_one();
    }

    /// Applies a batch (and logs it on shared volumes); the write lock is held.
    fn write(&self, batch: &Batch, token: u64) -> u64 {
        let mut s = self.vol.state.lock();
        s.apply(batch.ops.iter().cloned());
        if !self.vol.shared {
            return 0;
        }
        s.head += 1;
        let seq = s.head;
        s.log.push_back(Change { seq, session: self.session, token, batch: batch.clone() });
        drop(s);
        self.vol.changed.notify_all();
        seq
    }
}

impl MetaEngine for MemEngine {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn scan(&self, t: Table, f: &mut dyn FnMut(&[u8], &[u8])) -> StoreResult<()> {
        for (k, v) in &self.vol.state.lock().tables[t as usize] {
            f(k, v);
        }
        Ok(())
    }

    fn get(&self, t: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.vol.state.lock().tables[t as usize].get(key).cloned())
    }

    fn snapshot(&self, f: &mut RowSink<'_>) -> StoreResult<u64> {
        let mut s = self.vol.state.lock();
        if self.vol.shared {
            // (Re)joins the volume at the snapshot's position.
            let head = s.head;
            let me = s.sessions.entry(self.session).or_insert_with(|| SessionState {
                heartbeat: Instant::now(),
                applied: head,
                holds: BTreeSet::new(),
            });
            me.heartbeat = Instant::now();
            me.applied = head;
        }
        for t in Table::ALL {
            for (k, v) in &s.tables[t as usize] {
                f(t, k, v);
            }
        }
        Ok(s.head)
    }

    fn commit(&self, batch: Batch) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if !self.vol.shared {
            self.vol.state.lock().apply(batch.ops);
            return Ok(());
        }
        self.lock();
        self.write(&batch, 0);
        self.unlock();
        Ok(())
    }

    fn sync(&self) -> StoreResult<()> {
        Ok(())
    }

    fn close(&self) -> StoreResult<()> {
        Ok(())
    }

    fn info(&self, i: &mut StoreInfo) {
        if self.vol.shared {
            i.applied = Some(self.head());
        }
    }

    fn shared(&self) -> Option<&dyn SharedMeta> {
        self.vol.shared.then_some(self as &dyn SharedMeta)
    }
}

struct MemTurn<'a> {
    engine: &'a MemEngine,
    done: bool,
}

impl Turn for MemTurn<'_> {
    fn commit(mut self: Box<Self>, batch: &Batch, token: u64) -> StoreResult<u64> {
        let seq = if batch.is_empty() { self.engine.head() } else { self.engine.write(batch, token) };
        self.done = true;
        self.engine.unlock();
        Ok(seq)
    }

    fn get(&mut self, t: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.engine.get(t, key)
    }
}

impl Drop for MemTurn<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.engine.unlock();
        }
    }
}

impl crate::Claims for MemEngine {
    fn claim(&self, kind: &str, key: &str, lease: Duration) -> StoreResult<bool> {
        let alive = |s: u64| self.vol.state.lock().sessions.contains_key(&s);
        Ok(self.vol.claims.claim(self.session, kind, key, lease, alive))
    }

    fn finish(&self, kind: &str, key: &str) -> StoreResult<()> {
        self.vol.claims.finish(self.session, kind, key);
        Ok(())
    }
}

impl SharedMeta for MemEngine {
    fn session(&self) -> u64 {
        self.session
    }

    fn begin(&self, since: u64) -> StoreResult<(Box<dyn Turn + '_>, Vec<Change>)> {
        self.lock();
        let turn = Box::new(MemTurn { engine: self, done: false });
        let changes = self.vol.state.lock().changes_after(since)?;
        Ok((turn, changes))
    }

    fn changes(&self, since: u64) -> StoreResult<Vec<Change>> {
        self.vol.state.lock().changes_after(since)
    }

    fn commit_if_current(&self, since: u64, batch: &Batch, token: u64) -> StoreResult<Option<u64>> {
        self.lock();
        let current = self.head() == since;
        let seq = current.then(|| self.write(batch, token));
        self.unlock();
        Ok(seq)
    }

    fn wait_for_change(&self, since: u64, timeout: Duration) {
        let mut s = self.vol.state.lock();
        if s.head <= since {
            self.vol.changed.wait_for(&mut s, timeout);
        }
    }

    fn heartbeat(&self, applied: u64, hold: &[u64], release: &[u64]) -> StoreResult<()> {
        let mut s = self.vol.state.lock();
        let Some(me) = s.sessions.get_mut(&self.session) else {
            return Err(StoreError::SessionExpired(self.session));
        };
        me.heartbeat = Instant::now();
        me.applied = me.applied.max(applied);
        me.holds.extend(hold);
        for i in release {
            me.holds.remove(i);
        }
        Ok(())
    }

    fn housekeeping(&self, timeout: Duration) -> StoreResult<Option<Housekeeping>> {
        let mut s = self.vol.state.lock();
        let mut h = Housekeeping { head: s.head, ..Housekeeping::default() };
        let now = Instant::now();
        h.expired = s.sessions.iter().filter(|(_, x)| now - x.heartbeat > timeout).map(|(id, _)| *id).collect();
        for id in &h.expired {
            s.sessions.remove(id);
        }
        h.min_applied = s.sessions.values().map(|x| x.applied).min().unwrap_or(s.head);
        while s.log.front().is_some_and(|c| c.seq <= h.min_applied) {
            s.log.pop_front();
            h.trimmed += 1;
        }
        let held: BTreeSet<u64> = s.sessions.values().flat_map(|x| x.holds.iter().copied()).collect();
        h.unsustained = s.tables[Table::Orphans as usize]
            .keys()
            .filter_map(|k| crate::keys::be_u64(k))
            .filter(|i| !held.contains(i))
            .collect();
        Ok(Some(h))
    }

    fn next_id(&self, name: &str) -> StoreResult<u64> {
        let mut s = self.vol.state.lock();
        let c = s.counters.entry(name.to_string()).or_insert(0);
        *c += 1;
        Ok(*c)
    }

    fn end_session(&self) -> StoreResult<()> {
        self.vol.state.lock().sessions.remove(&self.session);
        Ok(())
    }
}
