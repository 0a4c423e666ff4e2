//! The table of open file and directory handles.

use magicfs_types::{FileKind, Ino};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode of the entry.
    pub ino: Ino,
    /// Type of the entry.
    pub kind: FileKind,
    /// Name of the entry.
    pub name: Vec<u8>,
}

/// What a handle refers to.
#[derive(Debug)]
pub enum HandleKind {
    /// An open file.
    File {
        /// The inode.
        ino: Ino,
        /// Open flags (`O_*`).
        flags: i32,
    },
    /// An open directory.
    Dir {
        /// The inode.
        ino: Ino,
        /// Entries including `.` and `..`, as of the last read from the start.
        entries: parking_lot::Mutex<Option<Vec<DirEntry>>>,
    },
}

/// A table of open handles by number.
pub trait HandleTable: Send + Sync {
    /// Registers a handle and returns its number (never 0).
    fn insert(&self, h: HandleKind) -> u64;
    /// The handle with this number.
    fn get(&self, fh: u64) -> Option<Arc<HandleKind>>;
    /// Removes a handle.
    fn remove(&self, fh: u64) -> Option<Arc<HandleKind>>;
    /// Number of open handles.
    fn len(&self) -> usize;
    /// True when no handle is open.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Slots per segment of the lock-free table.
const SEGMENT: usize = 4096;
/// Segments: room for 4 Mi handles open at once.
const SEGMENTS: usize = 1024;

/// One slot: the handle (if any) and a generation bumped on every removal,
/// so a stale handle number never reaches a reused slot.
#[derive(Default)]
struct Slot {
    value: crossbeam_epoch::Atomic<Arc<HandleKind>>,
    generation: std::sync::atomic::AtomicU32,
}

/// The handle table used by default: a lock-free slab. A handle number is
/// `generation << 32 | (slot + 1)`. Slots are reserved atomically (a
/// lock-free queue of free slots, else a bump counter); values are atomic
/// pointers reclaimed through epochs (`crossbeam-epoch`), and lookups
/// re-check the generation after loading, so readers and writers never wait
/// for each other.
pub struct LockFreeHandles {
    segments: Box<[std::sync::OnceLock<Box<[Slot]>>]>,
    free: crossbeam_queue::SegQueue<u32>,
    next: std::sync::atomic::AtomicU32,
    len: std::sync::atomic::AtomicUsize,
}

impl Default for LockFreeHandles {
    fn default() -> Self {
        LockFreeHandles {
            segments: (0..SEGMENTS).map(|_| std::sync::OnceLock::new()).collect(),
            free: crossbeam_queue::SegQueue::new(),
            next: std::sync::atomic::AtomicU32::new(0),
            len: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl Drop for LockFreeHandles {
    fn drop(&mut self) {
        for seg in self.segments.iter_mut() {
            for slot in seg.get_mut().into_iter().flat_map(|s| s.iter()) {
                // SAFETY: `&mut self`: no other thread can reach the table any more.
                unsafe {
                    let p = slot.value.swap(
                        crossbeam_epoch::Shared::null(),
                        Ordering::Relaxed,
                        crossbeam_epoch::unprotected(),
                    );
                    if !p.is_null() {
                        drop(p.into_owned());
                    }
                }
            }
        }
    }
}

impl LockFreeHandles {
    fn slot(&self, idx: u32) -> Option<&Slot> {
        let seg = self.segments.get(idx as usize / SEGMENT)?;
        let slots = seg.get_or_init(|| (0..SEGMENT).map(|_| Slot::default()).collect());
        slots.get(idx as usize % SEGMENT)
    }

    fn split(fh: u64) -> Option<(u32, u32)> {
        let idx = (fh & 0xffff_ffff) as u32;
        (idx != 0).then(|| (idx - 1, (fh >> 32) as u32))
    }
}

impl HandleTable for LockFreeHandles {
    fn insert(&self, h: HandleKind) -> u64 {
        let idx = self.free.pop().unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed));
        let Some(slot) = self.slot(idx) else {
            // More than SEGMENTS * SEGMENT handles open at once: report a
            // number that resolves to nothing rather than overwrite one.
            log::error!("handle table full ({} open)", SEGMENTS * SEGMENT);
            return 0;
        };
        slot.value.store(crossbeam_epoch::Owned::new(Arc::new(h)), Ordering::Release);
        self.len.fetch_add(1, Ordering::Relaxed);
        (slot.generation.load(Ordering::Acquire) as u64) << 32 | (idx as u64 + 1)
    }

    fn get(&self, fh: u64) -> Option<Arc<HandleKind>> {
        let (idx, generation) = Self::split(fh)?;
        let slot = self.slot(idx)?;
        if slot.generation.load(Ordering::Acquire) != generation {
            return None;
        }
        let guard = crossbeam_epoch::pin();
        // SAFETY: the pointer stays valid while `guard` is pinned: removal
        // only frees it through `defer_destroy`.
        let v = unsafe { slot.value.load(Ordering::Acquire, &guard).as_ref() }.cloned();
        // A removal (and reuse) in between bumped the generation.
        (slot.generation.load(Ordering::Acquire) == generation).then_some(v).flatten()
    }

    fn remove(&self, fh: u64) -> Option<Arc<HandleKind>> {
        let (idx, generation) = Self::split(fh)?;
        let slot = self.slot(idx)?;
        // Only the caller that moves the generation on owns the removal.
        slot.generation
            .compare_exchange(generation, generation.wrapping_add(1), Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        let guard = crossbeam_epoch::pin();
        let old = slot.value.swap(crossbeam_epoch::Shared::null(), Ordering::AcqRel, &guard);
        // SAFETY: `old` was unlinked above; readers pinned before that still
        // see it until the epoch advances, and it is freed only after them.
        let v = unsafe { old.as_ref() }.cloned();
        if !old.is_null() {
            // SAFETY: as above; nothing else will free this pointer.
            unsafe { guard.defer_destroy(old) };
        }
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.free.push(idx);
        v
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

/// A mutex around a `HashMap`: the baseline the lock-free table is measured against.
#[derive(Default)]
pub struct MutexHandles {
    map: Mutex<HashMap<u64, Arc<HandleKind>>>,
    next: AtomicU64,
}

impl HandleTable for MutexHandles {
    fn insert(&self, h: HandleKind) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.lock().insert(fh, Arc::new(h));
        fh
    }

    fn get(&self, fh: u64) -> Option<Arc<HandleKind>> {
        self.map.lock().get(&fh).cloned()
    }

    fn remove(&self, fh: u64) -> Option<Arc<HandleKind>> {
        self.map.lock().remove(&fh)
    }

    fn len(&self) -> usize {
        self.map.lock().len()
    }
}
