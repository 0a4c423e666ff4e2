//! The metadata engine seam: where the tables of [`Table`] live.
//!
//! [`MetaEngine`] is what every engine offers: reading rows, applying a
//! [`Batch`] atomically, durability. The embedded engines (the redb image
//! with its write-ahead log, and memory) serve one process. An engine that
//! several mounts share (PostgreSQL, or [`crate::MemEngine::shared`] in
//! tests) also offers [`SharedMeta`]: a volume-wide write lock taken per
//! mutation ([`SharedMeta::begin`]), a change log of every committed batch
//! that mounts replay to stay current, sessions with heartbeats, and the
//! inodes each session keeps open.

use crate::batch::Batch;
use crate::claims::Claims;
use crate::error::StoreResult;
use crate::keys::Table;
use std::time::Duration;

/// One batch of a shared volume's change log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Sequence number: one more than the change before it.
    pub seq: u64,
    /// The session that committed it.
    pub session: u64,
    /// The token that session gave the mutation (see [`Turn::commit`]).
    pub token: u64,
    /// The mutations, as committed.
    pub batch: Batch,
}

/// Receives the rows of a snapshot: table, key, value.
pub type RowSink<'a> = dyn FnMut(Table, &[u8], &[u8]) + 'a;

/// Where a filesystem's tables live.
pub trait MetaEngine: Send + Sync {
    /// Short name for status reports: `redb`, `memory`, `postgres`.
    fn kind(&self) -> &'static str;

    /// Calls `f` on every row of `t`, in key order.
    fn scan(&self, t: Table, f: &mut dyn FnMut(&[u8], &[u8])) -> StoreResult<()>;

    /// One row of `t`.
    fn get(&self, t: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;

    /// Every row of every table, tables in [`Table::ALL`] order and rows in
    /// key order, all from one consistent state. Returns the sequence number
    /// of the last change that state contains (0 for engines without a
    /// change log).
    fn snapshot(&self, f: &mut RowSink<'_>) -> StoreResult<u64> {
        for t in Table::ALL {
            self.scan(t, &mut |k, v| f(t, k, v))?;
        }
        Ok(0)
    }

    /// Applies `batch` atomically. Embedded engines: the batch survives a
    /// crash of this process once this returns. Shared engines: a write
    /// turn of its own, durable once this returns.
    fn commit(&self, batch: Batch) -> StoreResult<()>;

    /// Makes everything committed so far durable against power loss.
    fn sync(&self) -> StoreResult<()>;

    /// Folds logged batches into the engine's image (embedded engines).
    fn checkpoint(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Makes everything durable and stops background work. Idempotent.
    fn close(&self) -> StoreResult<()>;

    /// Adds the engine's counters to a status report.
    fn info(&self, _into: &mut crate::StoreInfo) {}

    /// The cluster protocol, for engines several mounts share.
    fn shared(&self) -> Option<&dyn SharedMeta> {
        None
    }
}

/// One mutation's hold on a shared volume's write lock. Dropping it
/// without [`Turn::commit`] rolls back and releases the lock.
pub trait Turn: Send {
    /// Writes `batch` and its change-log entry, releases the lock, and
    /// returns the entry's sequence number. `token` names the mutation, so
    /// a retry after an uncertain failure can tell whether it committed (its
    /// [`Change`] then shows up in the change log).
    fn commit(self: Box<Self>, batch: &Batch, token: u64) -> StoreResult<u64>;

    /// Reads a row under the lock (to refresh rows a failed commit touched).
    fn get(&mut self, t: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;
}

/// What the housekeeper of a shared volume learned (see
/// [`SharedMeta::housekeeping`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Housekeeping {
    /// The newest change-log sequence number.
    pub head: u64,
    /// The lowest sequence number every live session has applied.
    pub min_applied: u64,
    /// Inodes in the orphan table that no live session keeps open.
    pub unsustained: Vec<u64>,
    /// Sessions removed because they stopped heartbeating.
    pub expired: Vec<u64>,
    /// Change-log entries trimmed.
    pub trimmed: u64,
}

/// The cluster protocol of an engine that several mounts share.
///
/// Every mutation runs as a turn: [`SharedMeta::begin`] takes the volume's
/// write lock and returns the changes committed since the mount last
/// caught up; the mount applies them, runs the operation against its now
/// current tables, and [`Turn::commit`]s the resulting batch. Mutations
/// are therefore serialised volume-wide and computed against current data.
/// Work that one daemon should do for the whole volume (answering a chat
/// turn, generating a file) goes to whoever [`Claims::claim`]s it.
pub trait SharedMeta: Claims {
    /// This mount's session number.
    fn session(&self) -> u64;

    /// Waits for the write lock; returns the turn and the changes after
    /// `since`. Fails with [`crate::StoreError::Stale`] when the change log
    /// no longer reaches back to `since`.
    fn begin(&self, since: u64) -> StoreResult<(Box<dyn Turn + '_>, Vec<Change>)>;

    /// The changes after `since`, without the lock.
    fn changes(&self, since: u64) -> StoreResult<Vec<Change>>;

    /// A whole turn at once for a mount that believes it is current: takes
    /// the lock and, if nothing was committed after `since`, writes `batch`
    /// (as [`Turn::commit`] does) and returns its sequence number; if
    /// something was, writes nothing and returns `None`. One round trip
    /// where [`SharedMeta::begin`] and [`Turn::commit`] take two.
    fn commit_if_current(&self, since: u64, batch: &Batch, token: u64) -> StoreResult<Option<u64>>;

    /// Waits until a change after `since` may exist, or `timeout` passes.
    fn wait_for_change(&self, since: u64, timeout: Duration);

    /// Says this session is alive, has applied the change log through
    /// `applied`, keeps the inodes `hold` open, and no longer keeps `release`.
    fn heartbeat(&self, applied: u64, hold: &[u64], release: &[u64]) -> StoreResult<()>;

    /// Volume-wide cleaning, done by one mount at a time (`None`: another
    /// mount is doing it): removes sessions silent for longer than
    /// `timeout` with what they kept open, trims the change log below what
    /// every live session has applied, and lists the orphans nobody holds.
    fn housekeeping(&self, timeout: Duration) -> StoreResult<Option<Housekeeping>>;

    /// A new number from the volume-wide counter `name` (pack ids and the like).
    fn next_id(&self, name: &str) -> StoreResult<u64>;

    /// Ends this session (clean unmount): nothing it kept open is kept any more.
    fn end_session(&self) -> StoreResult<()>;
}
