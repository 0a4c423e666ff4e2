//! The calls by path. Each takes the directory a relative path starts from
//! (`base`, the root for most callers), as the `*at` system calls do.

use crate::flags::OpenFlags;
use crate::open_file::{DirStream, OpenFile};
use crate::resolve::{resolve, Absolute, Entry};
use magicfs_core::{Ctx, Fs, RenameFlags, SetAttr, TimeSet};
use magicfs_types::{Attr, FileKind, FsError, FsResult, Ino, ROOT_INO};
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// POSIX calls over one filesystem, as the calling process: entries it
/// creates belong to its effective user and group, with its umask applied.
/// Permission bits are recorded but not enforced (the process that holds a
/// store owns all of it).
pub struct Posix {
    fs: Arc<Fs>,
    absolute: Absolute,
    ctx: Ctx,
    umask: u32,
}

/// The calling process's umask, read without changing it (Linux 4.7+).
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let v = s.lines().find_map(|l| l.strip_prefix("Umask:"))?.trim().to_string();
            u32::from_str_radix(&v, 8).ok()
        })
        .unwrap_or(0o022)
}

impl Posix {
    /// Calls over `fs`; `absolute` says how absolute symbolic link targets are read.
    pub fn new(fs: Arc<Fs>, absolute: Absolute) -> Posix {
        // SAFETY: geteuid/getegid cannot fail.
        let ctx = unsafe { Ctx { uid: libc::geteuid(), gid: libc::getegid() } };
        Posix { fs, absolute, ctx, umask: process_umask() }
    }

    /// The filesystem.
    pub fn fs(&self) -> &Arc<Fs> {
        &self.fs
    }

    /// The owner given to new entries.
    pub fn ctx(&self) -> Ctx {
        self.ctx
    }

    /// Resolves `path` from `base` (see [`resolve`]).
    pub fn resolve(&self, base: Ino, path: &[u8], follow: bool) -> FsResult<Entry> {
        resolve(&self.fs, base, path, follow, &self.absolute)
    }

    fn existing(&self, base: Ino, path: &[u8], follow: bool) -> FsResult<Attr> {
        self.resolve(base, path, follow)?.existing()
    }

    /// Opens (and with `O_CREAT` creates) `path`; `mode` gives a new file's
    /// permission bits before the umask.
    pub fn open(&self, base: Ino, path: &[u8], flags: i32, mode: u32) -> FsResult<OpenFile> {
        let f = OpenFlags::parse(flags)?;
        // A name created meanwhile by another thread is opened on the second pass.
        for _ in 0..2 {
            let e = self.resolve(base, path, !f.nofollow && !f.exclusive)?;
            let attr = match e.attr {
                Some(_) if f.exclusive => return Err(FsError::Exists),
                Some(a) => a,
                None if !f.create => return Err(FsError::NotFound),
                None if e.trailing_slash => return Err(FsError::IsDir),
                None if f.directory => return Err(FsError::Invalid),
                None => {
                    let perm = mode & 0o7777 & !self.umask;
                    match self.fs.create(e.dir, &e.name, perm, f.access_mode(), self.ctx) {
                        Ok((a, fh)) => {
                            // The open below takes its own handle.
                            self.fs.release(fh)?;
                            return OpenFile::new(self.fs.clone(), a, f);
                        }
                        Err(FsError::Exists) => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            return self.open_existing(attr, f);
        }
        Err(FsError::Exists)
    }

    fn open_existing(&self, attr: Attr, f: OpenFlags) -> FsResult<OpenFile> {
        match attr.kind {
            FileKind::Symlink if !f.path_only => return Err(FsError::Loop),
            k if f.directory && k != FileKind::Dir => return Err(FsError::NotDir),
            FileKind::Dir if f.write => return Err(FsError::IsDir),
            FileKind::File | FileKind::Dir => {}
            _ if f.path_only => {}
            // FIFOs, sockets and devices have no meaning inside a store.
            _ => return Err(FsError::NotSupported),
        }
        let file = OpenFile::new(self.fs.clone(), attr, f)?;
        if f.truncate && attr.kind == FileKind::File {
            self.fs.setattr(attr.ino, SetAttr { size: Some(0), ..SetAttr::default() })?;
        }
        Ok(file)
    }

    /// Opens inode `ino` again (`/proc/self/fd/N`-style reopening).
    pub fn open_ino(&self, ino: Ino, flags: i32) -> FsResult<OpenFile> {
        let f = OpenFlags::parse(flags)?;
        self.open_existing(self.fs.getattr(ino)?, f)
    }

    /// Attributes of `path` (`stat`; `lstat` with `follow` false).
    pub fn stat(&self, base: Ino, path: &[u8], follow: bool) -> FsResult<Attr> {
        self.existing(base, path, follow)
    }

    /// Creates a directory.
    pub fn mkdir(&self, base: Ino, path: &[u8], mode: u32) -> FsResult<Attr> {
        let e = self.resolve(base, path, false)?;
        if e.attr.is_some() {
            return Err(FsError::Exists);
        }
        self.fs.mkdir(e.dir, &e.name, mode & 0o7777 & !self.umask, self.ctx)
    }

    /// Removes a name that is not a directory.
    pub fn unlink(&self, base: Ino, path: &[u8]) -> FsResult<()> {
        let e = self.resolve(base, path, false)?;
        match e.existing()?.kind {
            FileKind::Dir => Err(FsError::IsDir),
            _ => self.fs.unlink(e.dir, &e.name),
        }
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, base: Ino, path: &[u8]) -> FsResult<()> {
        let e = self.resolve(base, path, false)?;
        if e.existing()?.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        match &e.name[..] {
            b"." if e.dir == ROOT_INO => Err(FsError::Busy),
            b"." => Err(FsError::Invalid),
            _ => self.fs.rmdir(e.dir, &e.name),
        }
    }

    /// Renames `from` to `to` (`renameat2` flags: `RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
    pub fn rename(&self, from_base: Ino, from: &[u8], to_base: Ino, to: &[u8], flags: u32) -> FsResult<()> {
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 {
            return Err(FsError::Invalid);
        }
        let src = self.resolve(from_base, from, false)?;
        let dst = self.resolve(to_base, to, false)?;
        let kind = src.existing()?.kind;
        if [&src.name[..], &dst.name[..]].iter().any(|n| *n == b"." || *n == b"..") {
            return Err(FsError::Busy);
        }
        if dst.trailing_slash && kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        let f = RenameFlags {
            noreplace: flags & libc::RENAME_NOREPLACE != 0,
            exchange: flags & libc::RENAME_EXCHANGE != 0,
        };
        if f.noreplace && dst.attr.is_some() {
            return Err(FsError::Exists);
        }
        self.fs.rename(src.dir, &src.name, dst.dir, &dst.name, f)
    }

    /// Creates a symbolic link at `path` holding `target`.
    pub fn symlink(&self, target: &[u8], base: Ino, path: &[u8]) -> FsResult<Attr> {
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        let e = self.resolve(base, path, false)?;
        if e.attr.is_some() {
            return Err(FsError::Exists);
        }
        self.fs.symlink(e.dir, &e.name, target, self.ctx)
    }

    /// The target of the symbolic link at `path`.
    pub fn readlink(&self, base: Ino, path: &[u8]) -> FsResult<Vec<u8>> {
        let a = self.existing(base, path, false)?;
        if a.kind != FileKind::Symlink {
            return Err(FsError::Invalid);
        }
        self.fs.readlink(a.ino)
    }

    /// Makes `to` another name of `from` (`follow`: of the file a symbolic link at `from` names).
    pub fn link(&self, from_base: Ino, from: &[u8], to_base: Ino, to: &[u8], follow: bool) -> FsResult<Attr> {
        let src = self.existing(from_base, from, follow)?;
        let dst = self.resolve(to_base, to, false)?;
        if dst.attr.is_some() {
            return Err(FsError::Exists);
        }
        self.fs.link(src.ino, dst.dir, &dst.name)
    }

    /// Changes the attributes of `path` (mode, owner, times, size).
    pub fn set_attr(&self, base: Ino, path: &[u8], follow: bool, set: SetAttr) -> FsResult<Attr> {
        let a = self.existing(base, path, follow)?;
        set_attr(&self.fs, a, set)
    }

    /// Checks that `path` exists and that `mode` (`R_OK`, `W_OK`, `X_OK`)
    /// would be allowed to the calling process by the permission bits.
    pub fn access(&self, base: Ino, path: &[u8], mode: i32, follow: bool) -> FsResult<()> {
        let a = self.existing(base, path, follow)?;
        if mode == libc::F_OK {
            return Ok(());
        }
        let perm = a.perm as u32;
        let allowed = if self.ctx.uid == 0 {
            // Root may read and write anything, and execute what someone may execute.
            0o6 | if perm & 0o111 != 0 || a.kind == FileKind::Dir { 1 } else { 0 }
        } else if a.uid == self.ctx.uid {
            perm >> 6 & 7
        } else if a.gid == self.ctx.gid {
            perm >> 3 & 7
        } else {
            perm & 7
        };
        let want = (mode & 7) as u32;
        if want & !allowed != 0 {
            return Err(FsError::Access);
        }
        Ok(())
    }

    /// The entries of directory `path`, `.` and `..` first.
    pub fn list(&self, base: Ino, path: &[u8]) -> FsResult<DirStream> {
        let a = self.existing(base, path, true)?;
        if a.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        DirStream::open(&self.fs, a.ino)
    }

    /// Reads extended attribute `name` of `path`.
    pub fn getxattr(&self, base: Ino, path: &[u8], name: &[u8], follow: bool) -> FsResult<Vec<u8>> {
        let a = self.existing(base, path, follow)?;
        self.fs.getxattr(a.ino, name)
    }

    /// Sets extended attribute `name` of `path` (`XATTR_CREATE`, `XATTR_REPLACE`).
    pub fn setxattr(
        &self,
        base: Ino,
        path: &[u8],
        name: &[u8],
        value: &[u8],
        flags: i32,
        follow: bool,
    ) -> FsResult<()> {
        let a = self.existing(base, path, follow)?;
        self.fs.setxattr(a.ino, name, value, flags)
    }

    /// The names of `path`'s extended attributes.
    pub fn listxattr(&self, base: Ino, path: &[u8], follow: bool) -> FsResult<Vec<Vec<u8>>> {
        let a = self.existing(base, path, follow)?;
        self.fs.listxattr(a.ino)
    }

    /// Removes extended attribute `name` of `path`.
    pub fn removexattr(&self, base: Ino, path: &[u8], name: &[u8], follow: bool) -> FsResult<()> {
        let a = self.existing(base, path, follow)?;
        self.fs.removexattr(a.ino, name)
    }

    /// A sealed memfd holding the contents of the file at `path` now.
    pub fn export_memfd(&self, base: Ino, path: &[u8]) -> FsResult<OwnedFd> {
        let a = self.existing(base, path, true)?;
        match a.kind {
            FileKind::File => self.fs.export_memfd(a.ino),
            FileKind::Dir => Err(FsError::IsDir),
            _ => Err(FsError::Invalid),
        }
    }
}

/// Applies `set` to the inode `a` describes: a size only for regular files
/// (`EISDIR` for directories, `EINVAL` otherwise).
pub fn set_attr(fs: &Fs, a: Attr, set: SetAttr) -> FsResult<Attr> {
    if set.size.is_some() && a.kind != FileKind::File {
        return Err(if a.kind == FileKind::Dir { FsError::IsDir } else { FsError::Invalid });
    }
    fs.setattr(a.ino, set)
}

/// `utimensat`'s two times: `UTIME_NOW`, `UTIME_OMIT` or a time.
pub fn time_set(t: &libc::timespec) -> FsResult<Option<TimeSet>> {
    match t.tv_nsec {
        libc::UTIME_OMIT => Ok(None),
        libc::UTIME_NOW => Ok(Some(TimeSet::Now)),
        n if (0..1_000_000_000).contains(&n) => {
            Ok(Some(TimeSet::At(magicfs_types::Timespec { sec: t.tv_sec, nsec: n as u32 })))
        }
        _ => Err(FsError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magicfs_core::FsConfig;

    fn posix() -> Posix {
        Posix::new(Arc::new(Fs::memory(FsConfig::default())), Absolute::StoreRoot)
    }

    #[test]
    fn open_create_write_read_seek() {
        let p = posix();
        p.mkdir(ROOT_INO, b"/d", 0o755).unwrap();
        let w = p.open(ROOT_INO, b"/d/f", libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o666).unwrap();
        assert_eq!(w.write(b"0123456789").unwrap(), 10);
        assert_eq!(p.stat(ROOT_INO, b"d/f", true).unwrap().perm as u32, 0o666 & !p.umask);
        let r = p.open(ROOT_INO, b"d/f", libc::O_RDONLY, 0).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(r.seek(5, libc::SEEK_SET).unwrap(), 5);
        assert_eq!(r.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"5678");
        assert_eq!(r.seek(-2, libc::SEEK_END).unwrap(), 8);
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        assert_eq!(r.write(b"x"), Err(FsError::BadHandle));
        assert_eq!(r.seek(-20, libc::SEEK_END), Err(FsError::Invalid));
        w.close().unwrap();
        let e = p.open(ROOT_INO, b"d/f", libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644).unwrap_err();
        assert_eq!(e, FsError::Exists);
        let a = p.open(ROOT_INO, b"d/f", libc::O_WRONLY | libc::O_APPEND, 0).unwrap();
        a.write(b"!").unwrap();
        assert_eq!(p.stat(ROOT_INO, b"d/f", true).unwrap().size, 11);
        let t = p.open(ROOT_INO, b"d/f", libc::O_RDWR | libc::O_TRUNC, 0).unwrap();
        assert_eq!(t.stat().unwrap().size, 0);
        assert_eq!(p.open(ROOT_INO, b"d", libc::O_WRONLY, 0).unwrap_err(), FsError::IsDir);
        assert_eq!(p.open(ROOT_INO, b"d/f", libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap_err(), FsError::NotDir);
        assert_eq!(p.open(ROOT_INO, b"missing", libc::O_RDONLY, 0).unwrap_err(), FsError::NotFound);
    }

    #[test]
    fn names_links_and_renames() {
        let p = posix();
        p.mkdir(ROOT_INO, b"a", 0o755).unwrap();
        p.open(ROOT_INO, b"a/f", libc::O_WRONLY | libc::O_CREAT, 0o644).unwrap().write(b"data").unwrap();
        p.symlink(b"a/f", ROOT_INO, b"l").unwrap();
        assert_eq!(p.readlink(ROOT_INO, b"l").unwrap(), b"a/f");
        assert_eq!(p.stat(ROOT_INO, b"l", true).unwrap().size, 4);
        assert_eq!(p.stat(ROOT_INO, b"l", false).unwrap().kind, FileKind::Symlink);
        p.link(ROOT_INO, b"l", ROOT_INO, b"hard", true).unwrap();
        assert_eq!(p.stat(ROOT_INO, b"a/f", true).unwrap().nlink, 2);
        assert_eq!(p.open(ROOT_INO, b"l", libc::O_RDONLY | libc::O_NOFOLLOW, 0).unwrap_err(), FsError::Loop);
        p.rename(ROOT_INO, b"hard", ROOT_INO, b"a/g", 0).unwrap();
        assert_eq!(p.rename(ROOT_INO, b"a/g", ROOT_INO, b"a/f", libc::RENAME_NOREPLACE), Err(FsError::Exists));
        assert_eq!(p.unlink(ROOT_INO, b"a"), Err(FsError::IsDir));
        assert_eq!(p.rmdir(ROOT_INO, b"a"), Err(FsError::NotEmpty));
        assert_eq!(p.rmdir(ROOT_INO, b"l"), Err(FsError::NotDir));
        let names: Vec<_> = p.list(ROOT_INO, b"a").unwrap().entries().iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, [&b"."[..], b"..", b"f", b"g"]);
        p.unlink(ROOT_INO, b"a/f").unwrap();
        p.unlink(ROOT_INO, b"a/g").unwrap();
        p.rmdir(ROOT_INO, b"a").unwrap();
        assert_eq!(p.stat(ROOT_INO, b"l", true), Err(FsError::NotFound));
        p.setxattr(ROOT_INO, b"l", b"user.k", b"v", 0, false).unwrap();
        assert_eq!(p.getxattr(ROOT_INO, b"l", b"user.k", false).unwrap(), b"v");
        assert_eq!(p.getxattr(ROOT_INO, b"l", b"user.k", true), Err(FsError::NotFound));
    }

    #[test]
    fn unlinked_open_file_stays_readable() {
        let p = posix();
        let f = p.open(ROOT_INO, b"f", libc::O_RDWR | libc::O_CREAT, 0o600).unwrap();
        f.write(b"still here").unwrap();
        p.unlink(ROOT_INO, b"f").unwrap();
        let mut buf = [0u8; 32];
        assert_eq!(f.pread(&mut buf, 0).unwrap(), 10);
        assert_eq!(&buf[..10], b"still here");
        f.close().unwrap();
    }
}
