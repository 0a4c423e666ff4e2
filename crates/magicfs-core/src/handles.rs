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
    /// An open directory, with the listing taken at open time.
    Dir {
        /// The inode.
        ino: Ino,
        /// Entries including `.` and `..`.
        entries: Vec<DirEntry>,
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

/// The handle table used by default: a lock-free hash map (`papaya`) with
/// handle numbers from an atomic counter. Readers and writers never block
/// each other; removed entries are reclaimed once no reader can see them.
#[derive(Default)]
pub struct LockFreeHandles {
    map: papaya::HashMap<u64, Arc<HandleKind>>,
    next: AtomicU64,
}

impl HandleTable for LockFreeHandles {
    fn insert(&self, h: HandleKind) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.pin().insert(fh, Arc::new(h));
        fh
    }

    fn get(&self, fh: u64) -> Option<Arc<HandleKind>> {
        self.map.pin().get(&fh).cloned()
    }

    fn remove(&self, fh: u64) -> Option<Arc<HandleKind>> {
        self.map.pin().remove(&fh).cloned()
    }

    fn len(&self) -> usize {
        self.map.len()
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
