//! Snapshots of a whole MagicFS tree as one JSON document, streamed both
//! ways: `magicfs export` writes one, `magicfs import` recreates the tree.
//!
//! Export and import go through one interface, [`Tree`], implemented over an
//! unmounted MagicFS store ([`FsTree`]) and over a host directory
//! ([`HostTree`]), which may be the mount point of a MagicFS filesystem or
//! any other directory. So a store can be exported from its data directory
//! or through its mount, and imported into a new store, a mount or a plain
//! directory.
//!
//! The format is described for users in `docs/snapshot-format.md`.
//!
//! # The document
//!
//! ```json
//! {"format":"magicfs-snapshot","version":1,"entries":[
//! {"path":"","type":"dir","mode":493,"uid":0,"gid":0,"atime":[1700000000,0],"mtime":[1700000000,5]},
//! {"path":"docs","type":"dir","mode":1023,"uid":0,"gid":0,"atime":[1700000000,0],"mtime":[1700000000,0]},
//! {"path":"docs/a.txt","type":"file","mode":420,"uid":0,"gid":0,"atime":[1700000000,0],"mtime":[1700000000,0],"xattrs":{"user.k":{"utf8":"v"}},"content":{"utf8":"hello\n"}},
//! {"path":"docs/b.txt","type":"file","link":"docs/a.txt"},
//! {"path":"logo.png","type":"file","mode":420,"uid":0,"gid":0,"atime":[1700000000,0],"mtime":[1700000000,0],"content":{"base64":"iVBORw0KGgo="}},
//! {"path":"tty0","type":"chardev","mode":432,"uid":0,"gid":0,"atime":[1700000000,0],"mtime":[1700000000,0],"rdev":1024},
//! {"path":"up","type":"symlink","mode":511,"uid":0,"gid":0,"atime":[1700000000,0],"mtime":[1700000000,0],"target":".."}
//! ]}
//! ```
//!
//! One object with `format` (`"magicfs-snapshot"`), `version` (`1`) and
//! `entries`, an array in which every directory is followed by everything
//! under it (pre-order), names sorted by bytes, so each parent comes before
//! its children. Each entry is an object:
//!
//! | field | meaning |
//! |---|---|
//! | `path` | relative to the tree's root, names joined by `/`; no empty, `.` or `..` names. `""` is the root itself, allowed only as the first entry. |
//! | `type` | `dir`, `file`, `symlink`, `fifo`, `socket`, `chardev` or `blockdev` |
//! | `mode` | permission bits including setuid, setgid and sticky (at most `0o7777`); required |
//! | `uid`, `gid` | owner and group; optional (the importing process's when missing) |
//! | `atime`, `mtime` | `[seconds, nanoseconds]` since the epoch (seconds may be negative); optional (now when missing) |
//! | `xattrs` | extended attributes (`user.`, `trusted.` or `security.`), name → `{"utf8":"..."}` or `{"base64":"..."}`; optional |
//! | `content` | a file's bytes, `{"utf8":"..."}` when they are valid UTF-8 without NUL, else `{"base64":"..."}` (standard alphabet, padded); longer than 1 MiB: an array of such strings, one piece each; files only, empty when missing |
//! | `target` | a symbolic link's target; symlinks only, required |
//! | `rdev` | a device node's number (Linux `dev_t` encoding); devices only, 0 when missing |
//! | `link` | makes this entry another name (hard link) of the entry at that path, which must come earlier; such an entry has only `path`, `type` (the same as the target's) and `link` |
//!
//! Unknown fields are refused. `ctime` is not in the document: POSIX gives no
//! way to set it, every restore stamps it with the time of the restore.
//! `system.*` extended attributes (POSIX ACLs) are not exported. Names,
//! extended attribute names and symlink targets must be valid UTF-8 (export
//! refuses others). The virtual `.magic` directory at the root of a MagicFS
//! mount is not exported.
//!
//! # Streaming and all-or-nothing
//!
//! [`export`] writes one entry at a time and reads each file in 256 KiB
//! pieces, escaping text or base64-encoding it on the way out; it keeps the
//! names of the directories being walked and one path per hard-linked inode.
//! A file is read twice: once to see whether it is text, once to write it.
//!
//! [`import`] reads the document twice. The first pass ([`validate`]) checks
//! everything (syntax, schema, paths, order, hard-link targets, base64) and
//! writes nothing; errors carry the line and column. The second pass
//! ([`apply`]) writes each entry as soon as it is parsed, decoding base64 in
//! pieces. Contents longer than 1 MiB are written as arrays of pieces, so the
//! import holds at most one piece in memory; memory grows only with the
//! number of entries (every path is kept, without content, to check
//! duplicates and hard links).
//! A directory's mode and times are set after everything under it is
//! written.

mod error;
mod export;
mod fs_tree;
mod host_tree;
mod import;
mod parse;
mod path;
mod text;
mod tree;

pub use error::{SnapshotError, SnapshotResult};
pub use export::export;
pub use fs_tree::FsTree;
pub use host_tree::HostTree;
pub use import::{apply, ensure_empty, import, validate};
pub use tree::{Attrs, Stat, Tree};

use magicfs_types::FileKind;

/// The `format` of every snapshot document.
pub const FORMAT: &str = "magicfs-snapshot";

/// The `version` of the documents this crate writes and reads.
pub const VERSION: u64 = 1;

/// Counts of an export or import.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries, the root and hard links included.
    pub entries: u64,
    /// Directories, the root included (import only counts those it reads).
    pub dirs: u64,
    /// Regular files with content (hard links not counted).
    pub files: u64,
    /// Entries that are hard links to an earlier one.
    pub links: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// The schema's name of a type.
pub fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Dir => "dir",
        FileKind::File => "file",
        FileKind::Symlink => "symlink",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "socket",
        FileKind::CharDev => "chardev",
        FileKind::BlockDev => "blockdev",
    }
}

/// The type the schema names `name`, if any.
pub fn kind_from_name(name: &str) -> Option<FileKind> {
    Some(match name {
        "dir" => FileKind::Dir,
        "file" => FileKind::File,
        "symlink" => FileKind::Symlink,
        "fifo" => FileKind::Fifo,
        "socket" => FileKind::Socket,
        "chardev" => FileKind::CharDev,
        "blockdev" => FileKind::BlockDev,
        _ => return None,
    })
}
