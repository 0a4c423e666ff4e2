//! The one interface export and import go through: a tree of entries named by
//! paths relative to its root, read by [`crate::export`] and written by
//! [`crate::import`]. [`crate::FsTree`] implements it over a MagicFS store,
//! [`crate::HostTree`] over a host directory (which may be a mount point).

use crate::error::SnapshotResult;
use magicfs_types::{FileKind, Timespec};
use std::io::Read;

/// What a tree reports about one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Type of the entry.
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (low 12 bits).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access.
    pub atime: Timespec,
    /// Last modification.
    pub mtime: Timespec,
    /// Device number of a device node (Linux `dev_t` encoding), 0 otherwise.
    pub rdev: u64,
    /// Number of names of the inode.
    pub nlink: u64,
    /// Identity of the inode within the tree (device and inode number): two
    /// entries with the same identity are hard links of one inode.
    pub id: (u64, u64),
}

/// Attributes to restore on an entry once it exists; `None` leaves one as
/// the entry was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Permission bits including setuid, setgid and sticky (ignored for
    /// symbolic links, whose permissions are fixed).
    pub perm: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Last access.
    pub atime: Option<Timespec>,
    /// Last modification.
    pub mtime: Option<Timespec>,
}

/// A tree that can be exported (the reading half) and imported into (the
/// writing half). Paths are relative to the tree's root, names separated by
/// `/`; the empty path is the root itself. Callers pass only checked paths
/// (no empty, `.` or `..` components) whose parents exist.
pub trait Tree {
    /// Attributes of the entry at `path` (symbolic links are not followed).
    fn stat(&mut self, path: &str) -> SnapshotResult<Stat>;

    /// Names in the directory at `path`, without `.`, `..` and, at the root
    /// of a MagicFS mount, the virtual `.magic` directory; in no particular
    /// order.
    fn list(&mut self, path: &str) -> SnapshotResult<Vec<Vec<u8>>>;

    /// Target of the symbolic link at `path`.
    fn read_link(&mut self, path: &str) -> SnapshotResult<Vec<u8>>;

    /// Extended attributes of the entry at `path`: (name, value) pairs in no
    /// particular order.
    fn xattrs(&mut self, path: &str) -> SnapshotResult<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Opens the regular file at `path` for reading its content in pieces.
    fn open_file(&mut self, path: &str) -> SnapshotResult<Box<dyn Read + '_>>;

    /// True when the root directory holds no entries (the virtual `.magic`
    /// directory of a MagicFS mount does not count).
    fn is_empty(&mut self) -> SnapshotResult<bool> {
        Ok(self.list("")?.is_empty())
    }

    /// Creates a directory, private to its owner until [`Tree::set_attrs`].
    fn make_dir(&mut self, path: &str) -> SnapshotResult<()>;

    /// Creates a regular file with the bytes `content` yields, read in
    /// pieces; returns the number of bytes written.
    fn make_file(&mut self, path: &str, content: &mut dyn Read) -> SnapshotResult<u64>;

    /// Appends the bytes `content` yields to the regular file at `path`;
    /// returns the number of bytes written.
    fn append_file(&mut self, path: &str, content: &mut dyn Read) -> SnapshotResult<u64>;

    /// Creates a symbolic link to `target`.
    fn make_symlink(&mut self, path: &str, target: &[u8]) -> SnapshotResult<()>;

    /// Creates a fifo, socket or device node.
    fn make_node(&mut self, path: &str, kind: FileKind, rdev: u64) -> SnapshotResult<()>;

    /// Makes `path` another name of the existing entry `existing`.
    fn make_link(&mut self, path: &str, existing: &str) -> SnapshotResult<()>;

    /// Sets one extended attribute.
    fn set_xattr(&mut self, path: &str, name: &[u8], value: &[u8]) -> SnapshotResult<()>;

    /// Restores permissions, ownership and times of the entry at `path` of
    /// type `kind`.
    fn set_attrs(&mut self, path: &str, kind: FileKind, attrs: &Attrs) -> SnapshotResult<()>;

    /// Makes everything written so far durable where the tree buffers it.
    fn finish(&mut self) -> SnapshotResult<()> {
        Ok(())
    }
}
