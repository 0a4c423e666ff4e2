//! Changing attributes: mode, ownership, size and times, in one batch.

use crate::fs::Fs;
use crate::node::Node;
use magicfs_store::keys::named_key;
use magicfs_store::Table;
use magicfs_types::{Attr, FileKind, FsError, FsResult, Ino, Timespec};

/// The file capabilities xattr, dropped whenever the file's data changes.
const CAPS_XATTR: &[u8] = b"security.capability";

/// Whether a change of the file's data by this writer drops its setgid bit:
/// when the file is group-executable, or when the writer is not in the
/// file's group (as the kernel's `setattr_should_drop_sgid`).
fn drops_sgid(a: &Attr, in_group: &dyn Fn(u32) -> bool) -> bool {
    a.perm as u32 & libc::S_ISGID != 0 && (a.perm & 0o010 != 0 || !in_group(a.gid))
}

fn needs_kill(n: &Node, privileged: bool, in_group: &dyn Fn(u32) -> bool) -> bool {
    let a = &n.attr;
    a.kind == FileKind::File
        && ((!privileged && (a.perm as u32 & libc::S_ISUID != 0 || drops_sgid(a, in_group)))
            || n.xattrs.contains_key(CAPS_XATTR))
}

/// A new value for a timestamp.
#[derive(Clone, Copy, Debug)]
pub enum TimeSet {
    /// The current time.
    Now,
    /// A given time.
    At(Timespec),
}

/// The attributes to change; `None` leaves one as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    /// Permission bits (the type bits are ignored).
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Size (truncate or extend).
    pub size: Option<u64>,
    /// Access time.
    pub atime: Option<TimeSet>,
    /// Modification time.
    pub mtime: Option<TimeSet>,
    /// Change time (set explicitly, e.g. by a restore).
    pub ctime: Option<Timespec>,
}

impl Fs {
    /// What a write, truncation or fallocate must do to a file's
    /// privileges: drop its file capabilities (`security.capability`), and,
    /// unless the writer is `privileged`, clear setuid, and setgid when the
    /// file is group-executable or the writer is not `in_group` of the
    /// file's group. Returns the new attributes, or `None` when nothing
    /// changed.
    pub fn kill_privs(&self, ino: Ino, privileged: bool, in_group: &dyn Fn(u32) -> bool) -> FsResult<Option<Attr>> {
        {
            let meta = self.meta.read();
            let n = meta.nodes.get(&ino).ok_or(FsError::NotFound)?;
            if !needs_kill(n, privileged, in_group) {
                return Ok(None);
            }
        }
        self.mutate(|meta, b| {
            let n = meta.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
            if !needs_kill(n, privileged, in_group) {
                return Ok(None);
            }
            if n.xattrs.remove(CAPS_XATTR).is_some() {
                b.del(Table::Xattrs, named_key(ino, CAPS_XATTR));
            }
            if !privileged {
                if drops_sgid(&n.attr, in_group) {
                    n.attr.perm &= !(libc::S_ISGID as u16);
                }
                n.attr.perm &= !(libc::S_ISUID as u16);
            }
            n.attr.ctime = Timespec::now();
            let attr = n.attr;
            meta.log_node(b, ino);
            Ok(Some(attr))
        })
    }

    /// True when a write or truncation of `ino` by this caller must change
    /// the file's privileges first (a metadata commit).
    pub fn must_kill_privs(&self, ino: Ino, privileged: bool, in_group: &dyn Fn(u32) -> bool) -> bool {
        self.meta.read().nodes.get(&ino).is_some_and(|n| needs_kill(n, privileged, in_group))
    }

    /// Applies `set` to `ino`; returns the new attributes.
    pub fn setattr(&self, ino: Ino, set: SetAttr) -> FsResult<Attr> {
        let lock = match set.size {
            Some(_) => {
                let meta = self.meta.read();
                let n = meta.nodes.get(&ino).ok_or(FsError::NotFound)?;
                match (n.attr.kind, n.file()) {
                    (FileKind::Dir, _) => return Err(FsError::IsDir),
                    (_, Some(f)) => Some(f.commit_lock.clone()),
                    _ => return Err(FsError::Invalid),
                }
            }
            None => None,
        };
        if set.size.is_some_and(|s| s > crate::data::MAX_FILE_SIZE) {
            return Err(FsError::FileTooBig);
        }
        let _guard = lock.as_ref().map(|l| l.lock());
        self.mutate(|meta, b| {
            let now = Timespec::now();
            if let Some(size) = set.size {
                self.truncate_locked(meta, b, ino, size)?;
                if let Some(n) = meta.nodes.get_mut(&ino) {
                    n.attr.mtime = now;
                    n.attr.ctime = now;
                }
            }
            let n: &mut Node = meta.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
            let a = &mut n.attr;
            if let Some(mode) = set.mode {
                a.perm = (mode & 0o7777) as u16;
                a.ctime = now;
            }
            if set.uid.is_some() || set.gid.is_some() {
                if let Some(uid) = set.uid {
                    a.uid = uid;
                }
                if let Some(gid) = set.gid {
                    a.gid = gid;
                }
                a.ctime = now;
                // chown(2) clears setuid, setgid when group-executable, and file
                // capabilities of anything but a directory (FUSE leaves it to us).
                if a.kind != FileKind::Dir && set.mode.is_none() {
                    a.perm &= !(libc::S_ISUID as u16);
                    if a.perm & 0o010 != 0 {
                        a.perm &= !(libc::S_ISGID as u16);
                    }
                    if n.xattrs.remove(CAPS_XATTR).is_some() {
                        b.del(Table::Xattrs, named_key(ino, CAPS_XATTR));
                    }
                }
            }
            let resolve = |t: TimeSet| match t {
                TimeSet::Now => now,
                TimeSet::At(t) => t,
            };
            if let Some(t) = set.atime {
                a.atime = resolve(t);
                a.ctime = now;
            }
            if let Some(t) = set.mtime {
                a.mtime = resolve(t);
                a.ctime = now;
            }
            if let Some(t) = set.ctime {
                a.ctime = t;
            }
            // A truncation or a time set explicitly is a committed change.
            let mtime = a.mtime;
            if let Some(c) = n.file_mut().and_then(|f| f.committed.as_mut()) {
                if set.size.is_some() || set.mtime.is_some() {
                    c.mtime = mtime;
                }
            }
            meta.log_node(b, ino);
            meta.nodes.get(&ino).map(Node::attr_out).ok_or(FsError::NotFound)
        })
    }
}
