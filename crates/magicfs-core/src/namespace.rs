//! Names: lookup, creation of every kind of inode, unlink, rmdir, rename,
//! hard links, symlinks, opening and listing.

use crate::fs::{check_name, Ctx, Fs};
use crate::handles::{DirEntry, HandleKind};
use crate::node::{Body, Meta, Node};
use magicfs_store::keys::{ino_key, named_key};
use magicfs_store::{Batch, Table};
use magicfs_types::{Attr, FileKind, FsError, FsResult, Ino, Timespec, ROOT_INO};
use std::sync::atomic::Ordering;

/// Options of [`Fs::rename`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RenameFlags {
    /// Fail with `EEXIST` if the target exists.
    pub noreplace: bool,
    /// Atomically swap source and target (both must exist).
    pub exchange: bool,
}

/// Highest link count of one inode.
const LINK_MAX: u32 = 65000;

/// A directory that still has a name (a removed one that is still open
/// lives on with no links, and takes no new entries).
fn dir_of(meta: &Meta, ino: Ino) -> FsResult<&Node> {
    let n = meta.nodes.get(&ino).ok_or(FsError::NotFound)?;
    if n.attr.kind != FileKind::Dir {
        return Err(FsError::NotDir);
    }
    if n.attr.nlink == 0 {
        return Err(FsError::NotFound);
    }
    Ok(n)
}

fn child_of(meta: &Meta, parent: Ino, name: &[u8]) -> FsResult<Ino> {
    dir_of(meta, parent)?.entries().and_then(|e| e.get(name).copied()).ok_or(FsError::NotFound)
}

fn touch_dir(meta: &mut Meta, b: &mut Batch, ino: Ino, now: Timespec) {
    if let Some(n) = meta.nodes.get_mut(&ino) {
        n.attr.mtime = now;
        n.attr.ctime = now;
    }
    meta.log_node(b, ino);
}

impl Fs {
    /// Finds `name` in directory `parent`.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> FsResult<Attr> {
        if name.len() > magicfs_types::NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let meta = self.meta.read();
        let ino = match name {
            b"." => parent,
            b".." => match &dir_of(&meta, parent)?.body {
                Body::Dir { parent, .. } => *parent,
                _ => return Err(FsError::NotDir),
            },
            _ => child_of(&meta, parent, name)?,
        };
        meta.nodes.get(&ino).map(Node::attr_out).ok_or(FsError::NotFound)
    }

    /// Creates an inode of any kind named `name` in `parent`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn make_node(
        &self,
        parent: Ino,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        rdev: u32,
        target: Option<&[u8]>,
        ctx: Ctx,
    ) -> FsResult<Attr> {
        check_name(name)?;
        let mut meta = self.meta.write();
        let pattr = dir_of(&meta, parent)?.attr;
        if child_of(&meta, parent, name).is_ok() {
            return Err(FsError::Exists);
        }
        if kind == FileKind::Dir && pattr.nlink >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        let mut b = Batch::new();
        let ino = meta.alloc_ino(&mut b);
        let mut perm = perm & 0o7777;
        let mut gid = ctx.gid;
        if pattr.perm as u32 & libc::S_ISGID != 0 {
            gid = pattr.gid;
            if kind == FileKind::Dir {
                perm |= libc::S_ISGID;
            }
        }
        let mut attr = Attr::new(ino, kind, perm as u16, ctx.uid, gid);
        attr.rdev = rdev;
        if kind == FileKind::Dir {
            attr.nlink = 2;
        }
        let mut node = Node::new(attr, parent);
        if let (Body::Symlink(t), Some(target)) = (&mut node.body, target) {
            *t = target.to_vec();
            node.attr.size = target.len() as u64;
        }
        let attr = node.attr;
        meta.nodes.insert(ino, node);
        meta.log_node(&mut b, ino);
        if let Some(p) = meta.nodes.get_mut(&parent) {
            if kind == FileKind::Dir {
                p.attr.nlink += 1;
            }
            if let Some(e) = p.entries_mut() {
                e.insert(name.to_vec(), ino);
            }
        }
        b.put(Table::Dirents, named_key(parent, name), ino_key(ino));
        touch_dir(&mut meta, &mut b, parent, attr.ctime);
        self.commit(b)?;
        Ok(attr)
    }

    /// Creates a directory.
    pub fn mkdir(&self, parent: Ino, name: &[u8], perm: u32, ctx: Ctx) -> FsResult<Attr> {
        self.make_node(parent, name, FileKind::Dir, perm, 0, None, ctx)
    }

    /// Creates a regular file, fifo, socket or device node from `mode`.
    pub fn mknod(&self, parent: Ino, name: &[u8], mode: u32, rdev: u32, ctx: Ctx) -> FsResult<Attr> {
        let kind = FileKind::from_mode(mode).ok_or(FsError::Invalid)?;
        if kind == FileKind::Dir || kind == FileKind::Symlink {
            return Err(FsError::Invalid);
        }
        self.make_node(parent, name, kind, mode, rdev, None, ctx)
    }

    /// Creates a symbolic link to `target`.
    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8], ctx: Ctx) -> FsResult<Attr> {
        if target.len() > 4095 {
            return Err(FsError::NameTooLong);
        }
        self.make_node(parent, name, FileKind::Symlink, 0o777, 0, Some(target), ctx)
    }

    /// Reads a symbolic link's target.
    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        match &self.meta.read().nodes.get(&ino).ok_or(FsError::NotFound)?.body {
            Body::Symlink(t) => Ok(t.clone()),
            _ => Err(FsError::Invalid),
        }
    }

    /// Creates and opens a regular file.
    pub fn create(&self, parent: Ino, name: &[u8], perm: u32, flags: i32, ctx: Ctx) -> FsResult<(Attr, u64)> {
        let attr = self.make_node(parent, name, FileKind::File, perm, 0, None, ctx)?;
        let fh = self.open(attr.ino, flags)?;
        Ok((attr, fh))
    }

    /// Drops one link of `ino` after its entry was removed; frees it when
    /// nothing refers to it any more.
    fn drop_link(&self, meta: &mut Meta, b: &mut Batch, ino: Ino, now: Timespec) {
        let Some(n) = meta.nodes.get_mut(&ino) else { return };
        n.attr.ctime = now;
        n.attr.nlink = if n.attr.kind == FileKind::Dir { 0 } else { n.attr.nlink.saturating_sub(1) };
        if n.attr.nlink > 0 {
            meta.log_node(b, ino);
        } else if n.open.load(Ordering::Acquire) > 0 {
            meta.log_node(b, ino);
            b.put(Table::Orphans, ino_key(ino), Vec::new());
        } else {
            let freed = meta.free_node(b, ino);
            self.release_chunks(freed);
        }
    }

    /// Removes a non-directory entry.
    pub fn unlink(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        if name.len() > magicfs_types::NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let mut meta = self.meta.write();
        let ino = child_of(&meta, parent, name)?;
        if meta.nodes.get(&ino).map(|n| n.attr.kind) == Some(FileKind::Dir) {
            return Err(FsError::IsDir);
        }
        let mut b = Batch::new();
        let now = Timespec::now();
        if let Some(e) = meta.nodes.get_mut(&parent).and_then(Node::entries_mut) {
            e.remove(name);
        }
        b.del(Table::Dirents, named_key(parent, name));
        touch_dir(&mut meta, &mut b, parent, now);
        self.drop_link(&mut meta, &mut b, ino, now);
        self.commit(b)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        match name {
            b"." => return Err(FsError::Invalid),
            b".." => return Err(FsError::NotEmpty),
            _ if name.len() > magicfs_types::NAME_MAX => return Err(FsError::NameTooLong),
            _ => {}
        }
        let mut meta = self.meta.write();
        let ino = child_of(&meta, parent, name)?;
        let n = dir_of(&meta, ino)?;
        if n.entries().is_some_and(|e| !e.is_empty()) {
            return Err(FsError::NotEmpty);
        }
        let mut b = Batch::new();
        let now = Timespec::now();
        if let Some(p) = meta.nodes.get_mut(&parent) {
            p.attr.nlink -= 1;
            if let Some(e) = p.entries_mut() {
                e.remove(name);
            }
        }
        b.del(Table::Dirents, named_key(parent, name));
        touch_dir(&mut meta, &mut b, parent, now);
        self.drop_link(&mut meta, &mut b, ino, now);
        self.commit(b)
    }

    /// Adds a hard link to `ino` named `name` in `parent`.
    pub fn link(&self, ino: Ino, parent: Ino, name: &[u8]) -> FsResult<Attr> {
        check_name(name)?;
        let mut meta = self.meta.write();
        dir_of(&meta, parent)?;
        if child_of(&meta, parent, name).is_ok() {
            return Err(FsError::Exists);
        }
        let n = meta.nodes.get(&ino).ok_or(FsError::NotFound)?;
        if n.attr.kind == FileKind::Dir {
            return Err(FsError::Perm);
        }
        if n.attr.nlink >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        let mut b = Batch::new();
        let now = Timespec::now();
        let n = meta.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
        n.attr.nlink += 1;
        n.attr.ctime = now;
        let attr = n.attr_out();
        meta.log_node(&mut b, ino);
        if let Some(e) = meta.nodes.get_mut(&parent).and_then(Node::entries_mut) {
            e.insert(name.to_vec(), ino);
        }
        b.put(Table::Dirents, named_key(parent, name), ino_key(ino));
        b.del(Table::Orphans, ino_key(ino));
        touch_dir(&mut meta, &mut b, parent, now);
        self.commit(b)?;
        Ok(attr)
    }

    /// True if `dir` is `ancestor` or lies below it.
    fn is_within(meta: &Meta, mut dir: Ino, ancestor: Ino) -> bool {
        loop {
            if dir == ancestor {
                return true;
            }
            match meta.nodes.get(&dir).map(|n| &n.body) {
                Some(Body::Dir { parent, .. }) if dir != ROOT_INO => dir = *parent,
                _ => return false,
            }
        }
    }

    /// Renames `name` in `parent` to `newname` in `newparent`.
    pub fn rename(&self, parent: Ino, name: &[u8], newparent: Ino, newname: &[u8], flags: RenameFlags) -> FsResult<()> {
        check_name(newname)?;
        if name.len() > magicfs_types::NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if flags.exchange && flags.noreplace {
            return Err(FsError::Invalid);
        }
        let mut meta = self.meta.write();
        let src = child_of(&meta, parent, name)?;
        dir_of(&meta, newparent)?;
        let dst = child_of(&meta, newparent, newname).ok();
        let src_dir = meta.nodes.get(&src).map(|n| n.attr.kind) == Some(FileKind::Dir);
        if src_dir && Self::is_within(&meta, newparent, src) {
            return Err(FsError::Invalid);
        }
        let now = Timespec::now();
        let mut b = Batch::new();
        if flags.exchange {
            let dst = dst.ok_or(FsError::NotFound)?;
            let dst_dir = meta.nodes.get(&dst).map(|n| n.attr.kind) == Some(FileKind::Dir);
            if dst_dir && Self::is_within(&meta, parent, dst) {
                return Err(FsError::Invalid);
            }
            if let Some(e) = meta.nodes.get_mut(&parent).and_then(Node::entries_mut) {
                e.insert(name.to_vec(), dst);
            }
            if let Some(e) = meta.nodes.get_mut(&newparent).and_then(Node::entries_mut) {
                e.insert(newname.to_vec(), src);
            }
            b.put(Table::Dirents, named_key(parent, name), ino_key(dst));
            b.put(Table::Dirents, named_key(newparent, newname), ino_key(src));
            if parent != newparent {
                self.reparent(&mut meta, src, src_dir, parent, newparent);
                let dst_dir = meta.nodes.get(&dst).map(|n| n.attr.kind) == Some(FileKind::Dir);
                self.reparent(&mut meta, dst, dst_dir, newparent, parent);
            }
            for ino in [src, dst] {
                if let Some(n) = meta.nodes.get_mut(&ino) {
                    n.attr.ctime = now;
                }
                meta.log_node(&mut b, ino);
            }
        } else {
            if let Some(dst) = dst {
                if flags.noreplace {
                    return Err(FsError::Exists);
                }
                if dst == src {
                    return Ok(());
                }
                let dn = meta.nodes.get(&dst).ok_or(FsError::NotFound)?;
                let dst_dir = dn.attr.kind == FileKind::Dir;
                match (src_dir, dst_dir) {
                    (true, false) => return Err(FsError::NotDir),
                    (false, true) => return Err(FsError::IsDir),
                    (true, true) if dn.entries().is_some_and(|e| !e.is_empty()) => return Err(FsError::NotEmpty),
                    _ => {}
                }
                if dst_dir {
                    if let Some(p) = meta.nodes.get_mut(&newparent) {
                        p.attr.nlink -= 1;
                    }
                }
                self.drop_link(&mut meta, &mut b, dst, now);
            }
            if let Some(e) = meta.nodes.get_mut(&parent).and_then(Node::entries_mut) {
                e.remove(name);
            }
            if let Some(e) = meta.nodes.get_mut(&newparent).and_then(Node::entries_mut) {
                e.insert(newname.to_vec(), src);
            }
            b.del(Table::Dirents, named_key(parent, name));
            b.put(Table::Dirents, named_key(newparent, newname), ino_key(src));
            if parent != newparent {
                self.reparent(&mut meta, src, src_dir, parent, newparent);
            }
            if let Some(n) = meta.nodes.get_mut(&src) {
                n.attr.ctime = now;
            }
            meta.log_node(&mut b, src);
        }
        touch_dir(&mut meta, &mut b, parent, now);
        if newparent != parent {
            touch_dir(&mut meta, &mut b, newparent, now);
        }
        self.commit(b)
    }

    /// Moves directory `ino` from `from` to `to` in the link counts.
    fn reparent(&self, meta: &mut Meta, ino: Ino, is_dir: bool, from: Ino, to: Ino) {
        if !is_dir {
            return;
        }
        if let Some(Body::Dir { parent, .. }) = meta.nodes.get_mut(&ino).map(|n| &mut n.body) {
            *parent = to;
        }
        if let Some(n) = meta.nodes.get_mut(&from) {
            n.attr.nlink -= 1;
        }
        if let Some(n) = meta.nodes.get_mut(&to) {
            n.attr.nlink += 1;
        }
    }

    /// Opens a file; returns the handle number.
    pub fn open(&self, ino: Ino, flags: i32) -> FsResult<u64> {
        let meta = self.meta.read();
        let n = meta.nodes.get(&ino).ok_or(FsError::NotFound)?;
        if n.attr.kind == FileKind::Dir && flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(FsError::IsDir);
        }
        n.open.fetch_add(1, Ordering::AcqRel);
        drop(meta);
        Ok(self.handles.insert(HandleKind::File { ino, flags }))
    }

    /// Closes a file handle: commits its data and frees the inode if it was
    /// the last reference to an unlinked file.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let Some(h) = self.handles.remove(fh) else { return Err(FsError::BadHandle) };
        let HandleKind::File { ino, .. } = *h else { return Ok(()) };
        let committed = self.flush(ino);
        self.closed(ino)?;
        committed
    }

    /// Counts a handle of `ino` closed; frees the inode when that was the
    /// last one and no name is left.
    fn closed(&self, ino: Ino) -> FsResult<()> {
        let last_of_unlinked = {
            let meta = self.meta.read();
            let Some(n) = meta.nodes.get(&ino) else { return Ok(()) };
            let before = n.open.fetch_sub(1, Ordering::AcqRel);
            before == 1 && n.attr.nlink == 0
        };
        if !last_of_unlinked {
            return Ok(());
        }
        let mut meta = self.meta.write();
        let Some(n) = meta.nodes.get(&ino) else { return Ok(()) };
        if n.open.load(Ordering::Acquire) == 0 && n.attr.nlink == 0 {
            let mut b = Batch::new();
            let freed = meta.free_node(&mut b, ino);
            self.release_chunks(freed);
            drop(meta);
            self.commit(b)?;
        }
        Ok(())
    }

    /// Opens a directory for listing. While open, a directory that is
    /// removed lives on with no links (`fstat` on the handle says so).
    pub fn opendir(&self, ino: Ino) -> FsResult<u64> {
        let meta = self.meta.read();
        let n = dir_of(&meta, ino)?;
        n.open.fetch_add(1, Ordering::AcqRel);
        drop(meta);
        Ok(self.handles.insert(HandleKind::Dir { ino, entries: parking_lot::Mutex::new(None) }))
    }

    /// The entries of directory `ino` now, `.` and `..` first.
    fn listing(&self, ino: Ino) -> Vec<DirEntry> {
        let meta = self.meta.read();
        let Some(Body::Dir { entries, parent }) = meta.nodes.get(&ino).map(|n| &n.body) else { return Vec::new() };
        let mut list = Vec::with_capacity(entries.len() + 2);
        list.push(DirEntry { ino, kind: FileKind::Dir, name: b".".to_vec() });
        list.push(DirEntry { ino: *parent, kind: FileKind::Dir, name: b"..".to_vec() });
        for (name, child) in entries {
            if let Some(c) = meta.nodes.get(child) {
                list.push(DirEntry { ino: *child, kind: c.attr.kind, name: name.clone() });
            }
        }
        list
    }

    /// Feeds entries of an open directory from position `offset` on to
    /// `add(position of the next entry, entry)` until it returns true (full).
    /// The listing is taken at the first read and again at every read from
    /// position 0 (`rewinddir`), so it shows entries made since `opendir`.
    pub fn readdir(&self, fh: u64, offset: usize, mut add: impl FnMut(usize, &DirEntry) -> bool) -> FsResult<()> {
        let h = self.handles.get(fh);
        let Some(HandleKind::Dir { ino, entries }) = h.as_deref() else { return Err(FsError::BadHandle) };
        let mut entries = entries.lock();
        if offset == 0 || entries.is_none() {
            *entries = Some(self.listing(*ino));
        }
        for (i, e) in entries.iter().flatten().enumerate().skip(offset) {
            if add(i + 1, e) {
                break;
            }
        }
        Ok(())
    }

    /// Closes a directory handle (and frees the directory if it was removed
    /// while open).
    pub fn releasedir(&self, fh: u64) -> FsResult<()> {
        let h = self.handles.remove(fh).ok_or(FsError::BadHandle)?;
        match *h {
            HandleKind::Dir { ino, .. } => self.closed(ino),
            HandleKind::File { .. } => Ok(()),
        }
    }

    /// Resolves a slash-separated path from the root (no symlinks followed).
    pub fn resolve(&self, path: &str) -> FsResult<Attr> {
        let mut attr = self.getattr(ROOT_INO)?;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            attr = self.lookup(attr.ino, part.as_bytes())?;
        }
        Ok(attr)
    }
}
