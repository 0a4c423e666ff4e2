//! Types shared by every MagicFS crate: inode numbers, chunk ids, file
//! attributes with their stable binary encoding, and [`FsError`], the one
//! POSIX-named error type of the filesystem layer.

mod attr;
pub mod dirs;
mod error;
pub mod magic;
pub mod noise;

pub use attr::{Attr, FileKind, Timespec, ATTR_LEN};
pub use error::{FsError, FsResult};

/// An inode number. The root directory is [`ROOT_INO`].
pub type Ino = u64;

/// The inode number of the root directory.
pub const ROOT_INO: Ino = 1;

/// Longest name accepted for one path component, in bytes.
pub const NAME_MAX: usize = 255;

/// Largest extended attribute value accepted, in bytes (Linux `XATTR_SIZE_MAX`).
pub const XATTR_SIZE_MAX: usize = 65536;

/// A content-addressed chunk name: the BLAKE3 hash of the chunk's raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Lower-case hex form.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}
