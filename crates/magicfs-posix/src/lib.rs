//! POSIX calls over a MagicFS filesystem opened in the calling process, for
//! the programs that use a store without a mount: the C library
//! (`libmagicfs.so`), the `LD_PRELOAD` shim and the Python package.
//!
//! - [`resolve`]: path resolution that follows symbolic links the way the
//!   kernel does (intermediate components always, the last one unless asked
//!   not to; `..`; at most 40 links; a trailing slash asks for a directory).
//! - [`Posix`]: the calls by path (`open`, `mkdir`, `unlink`, `rename`,
//!   `stat`, links, attributes, xattrs, memfd export), each relative to a
//!   directory inode the way the `*at` calls are.
//! - [`OpenFile`]: an open file description — access mode, status flags and
//!   one offset shared by every descriptor that refers to it.
//! - [`Table`]: a process-wide table of descriptor numbers.
//! - [`c_abi`]: `errno`, panics and arguments of C entry points.
//!
//! Errors are [`FsError`], whose [`FsError::errno`] is the `errno` a C
//! caller sees.

pub mod c_abi;
mod flags;
mod open_file;
mod posix;
mod resolve;
mod stat;
mod table;

pub use flags::OpenFlags;
pub use magicfs_types::{FsError, FsResult};
pub use open_file::{DirStream, OpenFile};
pub use posix::{set_attr, time_set, Posix};
pub use resolve::{resolve, Absolute, Entry, MAX_LINKS};
pub use stat::{fill_stat, fill_statx, BLKSIZE, DEV_MAJOR, DEV_MINOR};
pub use table::{Table, MAX_DESCRIPTORS};
