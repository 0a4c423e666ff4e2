//! The segment catalog: which segments exist, who is appending to them,
//! which are sealed into objects, and the staged bytes of segments still
//! open. Every mount of a volume shares one catalog (PostgreSQL); tests and
//! single-process stores use [`MemCatalog`].

use crate::error::{ObjectsError, ObjectsResult};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A segment's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegState {
    /// Being appended to by a writer; its persisted bytes are staged rows.
    Open,
    /// Its bytes are one object of this many bytes; nothing is staged.
    Sealed(u64),
    /// Garbage, still readable (an object of this many bytes) until the
    /// grace period has passed and it is deleted.
    Retired(u64),
    /// Not in the catalog (never created, or deleted).
    Unknown,
}

/// One segment as the catalog records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegInfo {
    /// The segment id.
    pub id: u32,
    /// Its state.
    pub state: SegState,
    /// Bytes staged or sealed.
    pub len: u64,
    /// Time since it was created, sealed or retired (its last change).
    pub age: Duration,
}

/// Where segments and staged bytes are recorded; one implementation per
/// database, each passing the conformance tests in `tests/catalog.rs`.
/// Calls block (they run on worker threads, never on a FUSE request thread).
pub trait Catalog: Send + Sync {
    /// A new segment, recorded open and owned by `owner`.
    fn create(&self, owner: u64) -> ObjectsResult<u32>;
    /// Stages `bytes` at `offset` of segment `id`, which must still be open
    /// and owned by `owner` (else an error: a stalled writer whose segment
    /// was adopted by another mount must not stage more).
    fn stage(&self, id: u32, owner: u64, offset: u64, bytes: &[u8]) -> ObjectsResult<()>;
    /// Records that segment `id`'s object holds its first `len` bytes, and
    /// drops its staged rows.
    fn seal(&self, id: u32, len: u64) -> ObjectsResult<()>;
    /// The state of a segment.
    fn state(&self, id: u32) -> ObjectsResult<SegState>;
    /// The staged row of segment `id` that holds bytes `offset..offset+len`.
    fn staged(&self, id: u32, offset: u64, len: u32) -> ObjectsResult<Option<Bytes>>;
    /// Every staged row of segment `id`, in order: (offset, bytes).
    fn staged_rows(&self, id: u32) -> ObjectsResult<Vec<(u64, Bytes)>>;
    /// Tells the catalog that `owner` is alive and still appending to `ids`.
    fn heartbeat(&self, owner: u64, ids: &[u32]) -> ObjectsResult<()>;
    /// Open segments whose owner has not sent a heartbeat for `idle`; their
    /// ownership moves to `owner`, who seals them.
    fn adopt(&self, owner: u64, idle: Duration) -> ObjectsResult<Vec<u32>>;
    /// Every segment, by id.
    fn list(&self) -> ObjectsResult<Vec<SegInfo>>;
    /// Marks a sealed segment garbage; its object stays readable for the
    /// grace period.
    fn retire(&self, id: u32) -> ObjectsResult<()>;
    /// Segments retired at least `grace` ago.
    fn expired(&self, grace: Duration) -> ObjectsResult<Vec<u32>>;
    /// Removes a segment's record (its object is gone).
    fn forget(&self, id: u32) -> ObjectsResult<()>;
}

struct MemSeg {
    state: SegState,
    owner: u64,
    len: u64,
    beat: Instant,
    changed: Instant,
    retired: Option<Instant>,
    rows: BTreeMap<u64, Bytes>,
}

/// A catalog in this process's memory, shared by clones of its `Arc`.
#[derive(Default)]
pub struct MemCatalog {
    inner: Mutex<(u32, HashMap<u32, MemSeg>)>,
}

impl MemCatalog {
    /// Records an already sealed segment (objects found at open).
    pub fn insert_sealed(&self, id: u32, len: u64) {
        let mut g = self.inner.lock();
        g.0 = g.0.max(id);
        g.1.insert(
            id,
            MemSeg {
                state: SegState::Sealed(len),
                owner: 0,
                len,
                beat: Instant::now(),
                changed: Instant::now(),
                retired: None,
                rows: BTreeMap::new(),
            },
        );
    }
}

fn missing(id: u32) -> ObjectsError {
    ObjectsError::Catalog(format!("segment {id} is not in the catalog"))
}

impl Catalog for MemCatalog {
    fn create(&self, owner: u64) -> ObjectsResult<u32> {
        let mut g = self.inner.lock();
        g.0 = g.0.checked_add(1).ok_or_else(|| ObjectsError::Catalog("segment ids exhausted".into()))?;
        let id = g.0;
        let now = Instant::now();
        let seg = MemSeg {
            state: SegState::Open,
            owner,
            len: 0,
            beat: now,
            changed: now,
            retired: None,
            rows: BTreeMap::new(),
        };
        g.1.insert(id, seg);
        Ok(id)
    }

    fn stage(&self, id: u32, owner: u64, offset: u64, bytes: &[u8]) -> ObjectsResult<()> {
        let mut g = self.inner.lock();
        let s = g.1.get_mut(&id).ok_or_else(|| missing(id))?;
        if s.state != SegState::Open || s.owner != owner {
            return Err(ObjectsError::Catalog(format!("segment {id} is no longer open for this writer")));
        }
        s.rows.insert(offset, Bytes::copy_from_slice(bytes));
        s.len = s.len.max(offset + bytes.len() as u64);
        s.beat = Instant::now();
        Ok(())
    }

    fn seal(&self, id: u32, len: u64) -> ObjectsResult<()> {
        let mut g = self.inner.lock();
        let s = g.1.get_mut(&id).ok_or_else(|| missing(id))?;
        s.state = SegState::Sealed(len);
        s.changed = Instant::now();
        s.len = len;
        s.rows.clear();
        Ok(())
    }

    fn state(&self, id: u32) -> ObjectsResult<SegState> {
        Ok(self.inner.lock().1.get(&id).map_or(SegState::Unknown, |s| s.state))
    }

    fn staged(&self, id: u32, offset: u64, len: u32) -> ObjectsResult<Option<Bytes>> {
        let g = self.inner.lock();
        let Some(s) = g.1.get(&id) else { return Ok(None) };
        Ok(s.rows.range(..=offset).next_back().and_then(|(at, b)| {
            let from = (offset - at) as usize;
            (from + len as usize <= b.len()).then(|| b.slice(from..from + len as usize))
        }))
    }

    fn staged_rows(&self, id: u32) -> ObjectsResult<Vec<(u64, Bytes)>> {
        let g = self.inner.lock();
        Ok(g.1.get(&id).map(|s| s.rows.iter().map(|(o, b)| (*o, b.clone())).collect()).unwrap_or_default())
    }

    fn heartbeat(&self, owner: u64, ids: &[u32]) -> ObjectsResult<()> {
        let mut g = self.inner.lock();
        for id in ids {
            if let Some(s) = g.1.get_mut(id).filter(|s| s.owner == owner) {
                s.beat = Instant::now();
            }
        }
        Ok(())
    }

    fn adopt(&self, owner: u64, idle: Duration) -> ObjectsResult<Vec<u32>> {
        let mut g = self.inner.lock();
        let mut v = Vec::new();
        for (id, s) in g.1.iter_mut() {
            if s.state == SegState::Open && s.owner != owner && s.beat.elapsed() >= idle {
                s.owner = owner;
                s.beat = Instant::now();
                v.push(*id);
            }
        }
        v.sort_unstable();
        Ok(v)
    }

    fn list(&self) -> ObjectsResult<Vec<SegInfo>> {
        let g = self.inner.lock();
        let mut v: Vec<SegInfo> =
            g.1.iter()
                .map(|(id, s)| SegInfo { id: *id, state: s.state, len: s.len, age: s.changed.elapsed() })
                .collect();
        v.sort_unstable_by_key(|s| s.id);
        Ok(v)
    }

    fn retire(&self, id: u32) -> ObjectsResult<()> {
        let mut g = self.inner.lock();
        let s = g.1.get_mut(&id).ok_or_else(|| missing(id))?;
        if !matches!(s.state, SegState::Sealed(_)) {
            return Err(ObjectsError::Catalog(format!("segment {id} is not sealed; only sealed segments are retired")));
        }
        s.state = SegState::Retired(s.len);
        s.changed = Instant::now();
        s.retired = Some(s.changed);
        Ok(())
    }

    fn expired(&self, grace: Duration) -> ObjectsResult<Vec<u32>> {
        let g = self.inner.lock();
        let mut v: Vec<u32> =
            g.1.iter().filter(|(_, s)| s.retired.is_some_and(|t| t.elapsed() >= grace)).map(|(id, _)| *id).collect();
        v.sort_unstable();
        Ok(v)
    }

    fn forget(&self, id: u32) -> ObjectsResult<()> {
        self.inner.lock().1.remove(&id);
        Ok(())
    }
}
