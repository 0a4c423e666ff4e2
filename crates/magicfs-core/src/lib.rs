//! POSIX filesystem semantics for MagicFS, independent of FUSE.
//!
//! [`Fs`] holds every inode in memory ([`node::Meta`]) under one
//! reader-writer lock and writes each change to the store as one batch
//! before returning. Slow work — reading chunks, chunking, hashing and
//! compressing written data — happens outside that lock, so metadata
//! operations stay fast while large files are committed.

mod atime;
mod cache;
mod claim;
mod cluster;
mod data;
mod file;
mod fs;
pub mod fsck;
pub mod gc;
mod handles;
mod lineage;
pub mod memfd;
mod namespace;
pub mod node;
mod parts;
mod paths;
mod rows;
mod setattr;
mod status;
mod xattr;

pub use atime::Atime;
pub use cluster::{ClusterConfig, InvalListener};
pub use file::{File, OpenOptions};
pub use fs::{Ctx, Fs, FsConfig, OpenError};
pub use handles::{DirEntry, HandleKind, HandleTable, LockFreeHandles, MutexHandles};
pub use magicfs_store::Codec;
pub use namespace::RenameFlags;
pub use parts::ReadParts;
pub use rows::Inval;
pub use setattr::{SetAttr, TimeSet};
pub use status::{StatFs, Status};
pub use xattr::not_kept as xattr_not_kept;
