//! Extended attributes.

use crate::fs::Fs;
use magicfs_store::keys::named_key;
use magicfs_store::{Codec, Table};
use magicfs_types::{magic, FsError, FsResult, Ino, Timespec, XATTR_SIZE_MAX};

/// How `setxattr` treats an existing or missing attribute.
const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;

/// Namespaces accepted for attribute names.
const NAMESPACES: [&[u8]; 4] = [b"user.", b"trusted.", b"security.", b"system."];

/// Refuses (`EINVAL`) a value of a `user.magic.*` attribute that has a
/// fixed form but does not fit it.
fn check_magic(name: &[u8], value: &[u8]) -> FsResult<()> {
    let r =
        if name == magic::CODEC.as_bytes() {
            std::str::from_utf8(value).ok().and_then(Codec::parse).map(|_| ()).ok_or_else(|| {
                format!("{}={:?} is not zstd, gzip or none", magic::CODEC, String::from_utf8_lossy(value))
            })
        } else {
            magic::check(name, value)
        };
    r.map_err(|m| {
        log::info!("setxattr refused: {m}");
        FsError::Invalid
    })
}

/// Attributes MagicFS does not keep, answered `EOPNOTSUPP` on reads and
/// writes alike: `system.*` (POSIX ACLs; permissions are the mode bits) and
/// `security.selinux` (no per-file labels). A "not supported" answer, unlike
/// "no such attribute", lets tools stop asking: `ls -l` then makes no
/// attribute calls per entry, which matters for large directories.
pub fn not_kept(name: &[u8]) -> bool {
    name.starts_with(b"system.") || name == b"security.selinux"
}

impl Fs {
    /// Reads an extended attribute.
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> FsResult<Vec<u8>> {
        if not_kept(name) {
            return Err(FsError::NotSupported);
        }
        let meta = self.meta.read();
        let n = meta.nodes.get(&ino).ok_or(FsError::NotFound)?;
        n.xattrs.get(name).cloned().ok_or(FsError::NoAttr)
    }

    /// Lists attribute names.
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<Vec<u8>>> {
        let meta = self.meta.read();
        let n = meta.nodes.get(&ino).ok_or(FsError::NotFound)?;
        Ok(n.xattrs.keys().cloned().collect())
    }

    /// Sets an attribute; `flags` takes `XATTR_CREATE` / `XATTR_REPLACE`.
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> FsResult<()> {
        if name.is_empty() || name.len() > 255 {
            return Err(FsError::Range);
        }
        if value.len() > XATTR_SIZE_MAX {
            return Err(FsError::TooBig);
        }
        if !NAMESPACES.iter().any(|ns| name.starts_with(ns)) {
            return Err(FsError::NotSupported);
        }
        if not_kept(name) {
            return Err(FsError::NotSupported);
        }
        check_magic(name, value)?;
        self.mutate(|meta, b| {
            let n = meta.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
            let exists = n.xattrs.contains_key(name);
            if flags & XATTR_CREATE != 0 && exists {
                return Err(FsError::Exists);
            }
            if flags & XATTR_REPLACE != 0 && !exists {
                return Err(FsError::NoAttr);
            }
            n.xattrs.insert(name.to_vec(), value.to_vec());
            n.attr.ctime = Timespec::now();
            b.put(Table::Xattrs, named_key(ino, name), value.to_vec());
            meta.log_node(b, ino);
            Ok(())
        })
    }

    /// Removes an attribute.
    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> FsResult<()> {
        self.mutate(|meta, b| {
            let n = meta.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
            if n.xattrs.remove(name).is_none() {
                return Err(FsError::NoAttr);
            }
            n.attr.ctime = Timespec::now();
            b.del(Table::Xattrs, named_key(ino, name));
            meta.log_node(b, ino);
            Ok(())
        })
    }
}
