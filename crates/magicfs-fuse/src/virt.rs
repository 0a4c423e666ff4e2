//! The virtual `.magic/` control directory: files computed on open, never
//! stored. Their inode numbers sit at the top of the inode space.

use fuser::{FileAttr, FileType, INodeNo};
use magicfs_core::Fs;
use magicfs_types::ROOT_INO;
use std::time::SystemTime;

/// Name of the control directory in the root.
pub const MAGIC_DIR: &[u8] = b".magic";
/// Inode of `.magic/`.
pub const MAGIC_DIR_INO: u64 = u64::MAX - 255;
/// Inode of `.magic/status`.
pub const STATUS_INO: u64 = MAGIC_DIR_INO + 1;

/// True for inodes of virtual files and directories.
pub fn is_virtual(ino: u64) -> bool {
    ino >= MAGIC_DIR_INO || crate::search::owns(ino)
}

/// Files inside `.magic/`.
pub const FILES: [(&[u8], u64); 1] = [(b"status", STATUS_INO)];

/// Resolves a virtual name.
pub fn lookup(parent: u64, name: &[u8]) -> Option<u64> {
    match parent {
        ROOT_INO if name == MAGIC_DIR => Some(MAGIC_DIR_INO),
        MAGIC_DIR_INO => FILES.iter().find(|(n, _)| *n == name).map(|(_, i)| *i),
        _ => None,
    }
}

/// Attributes of a virtual inode (owned by the mounting user, read-only).
pub fn attr(ino: u64) -> FileAttr {
    let now = SystemTime::now();
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let dir = ino == MAGIC_DIR_INO;
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind: if dir { FileType::Directory } else { FileType::RegularFile },
        perm: if dir { 0o555 } else { 0o444 },
        nlink: if dir { 2 } else { 1 },
        uid,
        gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Contents of a virtual file, computed now; `extra` sections are added to the status.
pub fn content(ino: u64, fs: &Fs, extra: &[(&str, serde_json::Value)]) -> Vec<u8> {
    match ino {
        STATUS_INO => {
            let mut status = serde_json::to_value(fs.status()).unwrap_or_default();
            for (k, v) in extra {
                status[*k] = v.clone();
            }
            let mut v = serde_json::to_vec_pretty(&status).unwrap_or_default();
            v.push(b'\n');
            v
        }
        _ => Vec::new(),
    }
}
