//! [`Tree`] over a MagicFS filesystem opened directly from its store (not
//! mounted), through the public API of `magicfs_core::Fs`.

use crate::error::{SnapshotError, SnapshotResult};
use crate::path::split;
use crate::tree::{Attrs, Stat, Tree};
use magicfs_core::{Ctx, Fs, FsConfig, OpenError, SetAttr, TimeSet};
use magicfs_types::{Attr, FileKind, FsError, Ino};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

/// Bytes written to the filesystem at a time.
const PIECE: usize = 1 << 20;

/// A MagicFS filesystem as a [`Tree`].
pub struct FsTree {
    fs: Arc<Fs>,
    ctx: Ctx,
    /// The tree closes the store when it finishes (else it only syncs).
    owned: bool,
}

fn fs_err(op: &str, path: &str, e: FsError) -> SnapshotError {
    let shown = if path.is_empty() { "/" } else { path };
    SnapshotError::io(format!("{op} {shown}"), io::Error::from(e))
}

impl FsTree {
    /// Writes what `content` yields at `offset` on, then closes `fh`;
    /// returns the number of bytes written.
    fn write_from(&self, path: &str, ino: u64, fh: u64, offset: u64, content: &mut dyn Read) -> SnapshotResult<u64> {
        let mut buf = vec![0u8; PIECE];
        let mut at = offset;
        let copied = loop {
            let n = match content.read(&mut buf) {
                Ok(0) => break Ok(at - offset),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(SnapshotError::io(format!("reading the content of {path}"), e)),
            };
            match self.fs.write(ino, at, &buf[..n]) {
                Ok(spill) => {
                    at += n as u64;
                    if spill {
                        if let Err(e) = self.fs.flush(ino) {
                            break Err(fs_err("writing", path, e));
                        }
                    }
                }
                Err(e) => break Err(fs_err("writing", path, e)),
            }
        };
        let released = self.fs.release(fh).map_err(|e| fs_err("writing", path, e));
        let n = copied?;
        released?;
        Ok(n)
    }

    /// Opens the store in data directory `dir` (creating a new one there
    /// when `create` and the directory is missing or empty). A store in use
    /// by a mount is refused with [`SnapshotError::InUse`].
    pub fn open(dir: &Path, create: bool) -> SnapshotResult<FsTree> {
        match Fs::open_store(dir, create, FsConfig::default()) {
            Ok(fs) => Ok(FsTree::new(fs)),
            Err(OpenError::Locked { path, holder }) => Err(SnapshotError::InUse { path, holder }),
            Err(e) => Err(SnapshotError::Store(e)),
        }
    }

    /// A tree over an open filesystem. New entries are created as the
    /// calling process's user and group until their attributes are set.
    pub fn new(fs: Fs) -> FsTree {
        FsTree::with(Arc::new(fs), true)
    }

    /// A tree over a filesystem someone else keeps using: finishing an
    /// import commits and syncs, and leaves the store open.
    pub fn shared(fs: Arc<Fs>) -> FsTree {
        FsTree::with(fs, false)
    }

    fn with(fs: Arc<Fs>, owned: bool) -> FsTree {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FsTree { fs, ctx: Ctx { uid, gid }, owned }
    }

    /// The filesystem underneath.
    pub fn fs(&self) -> &Fs {
        &self.fs
    }

    /// Commits everything and closes the store.
    pub fn close(self) -> SnapshotResult<()> {
        self.fs.shutdown().map_err(|e| fs_err("closing the store at", "", e))
    }

    fn resolve(&self, path: &str) -> SnapshotResult<Attr> {
        self.fs.resolve(path).map_err(|e| fs_err("looking up", path, e))
    }

    /// The directory's inode and the name, for creating `path`.
    fn parent<'p>(&self, path: &'p str) -> SnapshotResult<(Ino, &'p [u8])> {
        let (dir, name) = split(path);
        Ok((self.resolve(dir)?.ino, name.as_bytes()))
    }
}

/// An open file read in pieces; the handle is released when dropped.
struct FileReader<'a> {
    fs: &'a Fs,
    ino: Ino,
    fh: u64,
    offset: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fs.read_with(self.ino, self.offset, buf.len() as u64, |d| {
            buf[..d.len()].copy_from_slice(d);
            d.len()
        })?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl Drop for FileReader<'_> {
    fn drop(&mut self) {
        // Nothing was written through this handle: releasing cannot lose data.
        let _ = self.fs.release(self.fh);
    }
}

impl Tree for FsTree {
    fn stat(&mut self, path: &str) -> SnapshotResult<Stat> {
        let a = self.resolve(path)?;
        Ok(Stat {
            kind: a.kind,
            perm: a.perm as u32,
            uid: a.uid,
            gid: a.gid,
            atime: a.atime,
            mtime: a.mtime,
            rdev: a.rdev as u64,
            nlink: a.nlink as u64,
            id: (0, a.ino),
        })
    }

    fn list(&mut self, path: &str) -> SnapshotResult<Vec<Vec<u8>>> {
        let ino = self.resolve(path)?.ino;
        let fh = self.fs.opendir(ino).map_err(|e| fs_err("opening directory", path, e))?;
        let mut names = Vec::new();
        let listed = self.fs.readdir(fh, 0, |_, e| {
            if e.name != b"." && e.name != b".." {
                names.push(e.name.clone());
            }
            false
        });
        let released = self.fs.releasedir(fh);
        listed.and(released).map_err(|e| fs_err("listing", path, e))?;
        Ok(names)
    }

    fn read_link(&mut self, path: &str) -> SnapshotResult<Vec<u8>> {
        let ino = self.resolve(path)?.ino;
        self.fs.readlink(ino).map_err(|e| fs_err("reading link", path, e))
    }

    fn xattrs(&mut self, path: &str) -> SnapshotResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let ino = self.resolve(path)?.ino;
        let names = self.fs.listxattr(ino).map_err(|e| fs_err("listing extended attributes of", path, e))?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let value = self.fs.getxattr(ino, &name).map_err(|e| fs_err("reading extended attribute of", path, e))?;
            out.push((name, value));
        }
        Ok(out)
    }

    fn open_file(&mut self, path: &str) -> SnapshotResult<Box<dyn Read + '_>> {
        let ino = self.resolve(path)?.ino;
        let fh = self.fs.open(ino, libc::O_RDONLY).map_err(|e| fs_err("opening", path, e))?;
        Ok(Box::new(FileReader { fs: &self.fs, ino, fh, offset: 0 }))
    }

    fn make_dir(&mut self, path: &str) -> SnapshotResult<()> {
        let (parent, name) = self.parent(path)?;
        self.fs.mkdir(parent, name, 0o700, self.ctx).map_err(|e| fs_err("creating directory", path, e))?;
        Ok(())
    }

    fn make_file(&mut self, path: &str, content: &mut dyn Read) -> SnapshotResult<u64> {
        let (parent, name) = self.parent(path)?;
        let (attr, fh) =
            self.fs.create(parent, name, 0o600, libc::O_WRONLY, self.ctx).map_err(|e| fs_err("creating", path, e))?;
        self.write_from(path, attr.ino, fh, 0, content)
    }

    fn append_file(&mut self, path: &str, content: &mut dyn Read) -> SnapshotResult<u64> {
        let attr = self.fs.resolve(path).map_err(|e| fs_err("opening", path, e))?;
        let fh = self.fs.open(attr.ino, libc::O_WRONLY).map_err(|e| fs_err("opening", path, e))?;
        self.write_from(path, attr.ino, fh, attr.size, content)
    }

    fn make_symlink(&mut self, path: &str, target: &[u8]) -> SnapshotResult<()> {
        let (parent, name) = self.parent(path)?;
        self.fs.symlink(parent, name, target, self.ctx).map_err(|e| fs_err("creating symbolic link", path, e))?;
        Ok(())
    }

    fn make_node(&mut self, path: &str, kind: FileKind, rdev: u64) -> SnapshotResult<()> {
        let (parent, name) = self.parent(path)?;
        let rdev = u32::try_from(rdev).map_err(|_| fs_err("creating", path, FsError::Invalid))?;
        self.fs
            .mknod(parent, name, kind.mode_bits() | 0o600, rdev, self.ctx)
            .map_err(|e| fs_err("creating", path, e))?;
        Ok(())
    }

    fn make_link(&mut self, path: &str, existing: &str) -> SnapshotResult<()> {
        let ino = self.resolve(existing)?.ino;
        let (parent, name) = self.parent(path)?;
        self.fs.link(ino, parent, name).map_err(|e| fs_err("creating hard link", path, e))?;
        Ok(())
    }

    fn set_xattr(&mut self, path: &str, name: &[u8], value: &[u8]) -> SnapshotResult<()> {
        let ino = self.resolve(path)?.ino;
        self.fs.setxattr(ino, name, value, 0).map_err(|e| fs_err("setting extended attribute of", path, e))
    }

    fn set_attrs(&mut self, path: &str, kind: FileKind, attrs: &Attrs) -> SnapshotResult<()> {
        let ino = self.resolve(path)?.ino;
        let set = SetAttr {
            mode: attrs.perm.filter(|_| kind != FileKind::Symlink),
            uid: attrs.uid,
            gid: attrs.gid,
            atime: attrs.atime.map(TimeSet::At),
            mtime: attrs.mtime.map(TimeSet::At),
            ..SetAttr::default()
        };
        self.fs.setattr(ino, set).map_err(|e| fs_err("setting attributes of", path, e))?;
        Ok(())
    }

    fn finish(&mut self) -> SnapshotResult<()> {
        let done = if self.owned { self.fs.shutdown() } else { self.fs.sync_store() };
        done.map_err(|e| fs_err("committing", "", e))
    }
}
