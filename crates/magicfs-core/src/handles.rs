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

/// Open handles by number.
#[derive(Default)]
pub struct Handles {
    map: Mutex<HashMap<u64, Arc<HandleKind>>>,
    next: AtomicU64,
}

impl Handles {
    /// Registers a handle and returns its number.
    pub fn insert(&self, h: HandleKind) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.lock().insert(fh, Arc::new(h));
        fh
    }

    /// The handle with this number.
    pub fn get(&self, fh: u64) -> Option<Arc<HandleKind>> {
        self.map.lock().get(&fh).cloned()
    }

    /// Removes a handle.
    pub fn remove(&self, fh: u64) -> Option<Arc<HandleKind>> {
        self.map.lock().remove(&fh)
    }

    /// Number of open handles.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }
}
