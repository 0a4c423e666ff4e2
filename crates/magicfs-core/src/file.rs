//! The path-based library API: open files by path and use them through
//! `std::io::{Read, Write, Seek}`, with the same semantics as the mount.
//!
//! ```
//! use magicfs_core::{Fs, FsConfig, OpenOptions};
//! use std::io::{Read, Seek, SeekFrom, Write};
//! use std::sync::Arc;
//!
//! let fs = Arc::new(Fs::memory(FsConfig::default()));
//! fs.mkdir_path("docs", 0o755)?;
//! let mut f = fs.open_path("docs/hello.txt", OpenOptions::new().write(true).create(true))?;
//! f.write_all(b"hello, world")?;
//! f.close()?;
//!
//! let mut f = fs.open_path("docs/hello.txt", OpenOptions::new().read(true))?;
//! f.seek(SeekFrom::Start(7))?;
//! let mut s = String::new();
//! f.read_to_string(&mut s)?;
//! assert_eq!(s, "world");
//! assert_eq!(fs.read_dir_path("docs")?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::fs::{Ctx, Fs};
use crate::setattr::SetAttr;
use crate::{DirEntry, RenameFlags};
use magicfs_types::{Attr, FileKind, FsError, FsResult, Ino, ROOT_INO};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// How to open a file, as `std::fs::OpenOptions`.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    create: bool,
    create_new: bool,
    truncate: bool,
    mode: Option<u32>,
}

impl OpenOptions {
    /// No access at all; enable what you need.
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }
    /// Open for reading.
    pub fn read(&mut self, v: bool) -> &mut Self {
        self.read = v;
        self
    }
    /// Open for writing.
    pub fn write(&mut self, v: bool) -> &mut Self {
        self.write = v;
        self
    }
    /// Every write goes to the end of the file.
    pub fn append(&mut self, v: bool) -> &mut Self {
        self.append = v;
        self
    }
    /// Create the file if it does not exist.
    pub fn create(&mut self, v: bool) -> &mut Self {
        self.create = v;
        self
    }
    /// Create the file; fail with `EEXIST` if it exists.
    pub fn create_new(&mut self, v: bool) -> &mut Self {
        self.create_new = v;
        self
    }
    /// Cut the file to length 0.
    pub fn truncate(&mut self, v: bool) -> &mut Self {
        self.truncate = v;
        self
    }
    /// Permission bits of a created file (default 0o644).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = Some(mode);
        self
    }

    fn flags(&self) -> i32 {
        match (self.read, self.write || self.append) {
            (true, true) => libc::O_RDWR,
            (false, true) => libc::O_WRONLY,
            _ => libc::O_RDONLY,
        }
    }
}

/// An open file: reads, writes and seeks like `std::fs::File`. Its data is
/// committed on [`File::close`] (or drop) and made durable by [`File::sync_all`].
pub struct File {
    fs: Arc<Fs>,
    ino: Ino,
    fh: Option<u64>,
    pos: u64,
    writable: bool,
    append: bool,
}

fn split(path: &str) -> FsResult<(&str, &str)> {
    let p = path.trim_end_matches('/');
    match p.rsplit_once('/') {
        Some((dir, name)) if !name.is_empty() => Ok((dir, name)),
        None if !p.is_empty() => Ok(("", p)),
        _ => Err(FsError::Invalid),
    }
}

fn io_err(e: FsError) -> io::Error {
    e.into()
}

impl Fs {
    fn dir_ino(&self, dir: &str) -> FsResult<Ino> {
        let a = self.resolve(dir)?;
        if a.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(a.ino)
    }

    /// Opens the file at `path` (relative to the root; symlinks are not followed).
    pub fn open_path(self: &Arc<Self>, path: &str, opts: &OpenOptions) -> FsResult<File> {
        let (dir, name) = split(path)?;
        let parent = self.dir_ino(dir)?;
        let writable = opts.write || opts.append;
        let (ino, fh) = match self.lookup(parent, name.as_bytes()) {
            Ok(_) if opts.create_new => return Err(FsError::Exists),
            Ok(a) => {
                if a.kind == FileKind::Dir && writable {
                    return Err(FsError::IsDir);
                }
                if opts.truncate && writable {
                    self.setattr(a.ino, SetAttr { size: Some(0), ..SetAttr::default() })?;
                }
                (a.ino, self.open(a.ino, opts.flags())?)
            }
            Err(FsError::NotFound) if opts.create || opts.create_new => {
                let mode = opts.mode.unwrap_or(0o644);
                let (a, fh) = self.create(parent, name.as_bytes(), mode, opts.flags(), Ctx::default())?;
                (a.ino, fh)
            }
            Err(e) => return Err(e),
        };
        Ok(File { fs: self.clone(), ino, fh: Some(fh), pos: 0, writable, append: opts.append })
    }

    /// Creates a directory at `path`.
    pub fn mkdir_path(&self, path: &str, mode: u32) -> FsResult<Attr> {
        let (dir, name) = split(path)?;
        self.mkdir(self.dir_ino(dir)?, name.as_bytes(), mode, Ctx::default())
    }

    /// Lists a directory (without `.` and `..`).
    pub fn read_dir_path(&self, path: &str) -> FsResult<Vec<DirEntry>> {
        let fh = self.opendir(self.dir_ino(path)?)?;
        let mut v = Vec::new();
        let r = self.readdir(fh, 2, |_, e| {
            v.push(e.clone());
            false
        });
        self.releasedir(fh)?;
        r.map(|_| v)
    }

    /// Removes a file, symlink or empty directory.
    pub fn remove_path(&self, path: &str) -> FsResult<()> {
        let (dir, name) = split(path)?;
        let parent = self.dir_ino(dir)?;
        match self.lookup(parent, name.as_bytes())?.kind {
            FileKind::Dir => self.rmdir(parent, name.as_bytes()),
            _ => self.unlink(parent, name.as_bytes()),
        }
    }

    /// Renames `from` to `to`, replacing a compatible target.
    pub fn rename_path(&self, from: &str, to: &str) -> FsResult<()> {
        let (fd, fname) = split(from)?;
        let (td, tname) = split(to)?;
        self.rename(self.dir_ino(fd)?, fname.as_bytes(), self.dir_ino(td)?, tname.as_bytes(), RenameFlags::default())
    }

    /// Creates a symbolic link at `path` pointing to `target`.
    pub fn symlink_path(&self, target: &str, path: &str) -> FsResult<Attr> {
        let (dir, name) = split(path)?;
        self.symlink(self.dir_ino(dir)?, name.as_bytes(), target.as_bytes(), Ctx::default())
    }

    /// Creates a hard link `path` to the file at `existing`.
    pub fn link_path(&self, existing: &str, path: &str) -> FsResult<Attr> {
        let ino = self.resolve(existing)?.ino;
        let (dir, name) = split(path)?;
        self.link(ino, self.dir_ino(dir)?, name.as_bytes())
    }

    /// Attributes of the inode at `path` (the root for `""` or `"/"`).
    pub fn metadata_path(&self, path: &str) -> FsResult<Attr> {
        if path.trim_matches('/').is_empty() {
            return self.getattr(ROOT_INO);
        }
        self.resolve(path)
    }
}

impl File {
    /// The inode number.
    pub fn ino(&self) -> Ino {
        self.ino
    }

    /// Current attributes.
    pub fn metadata(&self) -> FsResult<Attr> {
        self.fs.getattr(self.ino)
    }

    /// Commits written data and makes the store durable.
    pub fn sync_all(&self) -> FsResult<()> {
        self.fs.fsync(self.ino)
    }

    /// Commits written data and closes the handle, reporting errors.
    pub fn close(mut self) -> FsResult<()> {
        match self.fh.take() {
            Some(fh) => self.fs.release(fh),
            None => Ok(()),
        }
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if let Some(fh) = self.fh.take() {
            if let Err(e) = self.fs.release(fh) {
                log::error!("closing inode {}: {e}", self.ino);
            }
        }
    }
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .fs
            .read_with(self.ino, self.pos, buf.len() as u64, |d| {
                buf[..d.len()].copy_from_slice(d);
                d.len()
            })
            .map_err(io_err)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.writable {
            return Err(io_err(FsError::BadHandle));
        }
        if self.append {
            self.pos = self.fs.getattr(self.ino).map_err(io_err)?.size;
        }
        if self.fs.write(self.ino, self.pos, buf).map_err(io_err)? {
            self.fs.flush(self.ino).map_err(io_err)?;
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.fs.flush(self.ino).map_err(io_err)
    }
}

impl Seek for File {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(o) => {
                self.pos = o;
                return Ok(o);
            }
            SeekFrom::End(d) => (self.fs.getattr(self.ino).map_err(io_err)?.size, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        let new = base.0.checked_add_signed(base.1).ok_or_else(|| io_err(FsError::Invalid))?;
        self.pos = new;
        Ok(new)
    }
}
