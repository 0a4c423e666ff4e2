//! Open file descriptions: what one `open` call returns, shared by every
//! descriptor duplicated from it (one offset, one set of status flags).

use crate::flags::OpenFlags;
use magicfs_core::{DirEntry, Fs, SetAttr};
use magicfs_types::{Attr, FileKind, FsError, FsResult, Ino};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Bytes handed to the filesystem per write call: a large write is committed
/// piece by piece once enough is buffered, instead of all at once.
const WRITE_PIECE: usize = 8 << 20;

/// Appends through different descriptions take turns: reading the size and
/// writing there is one step.
static APPEND: Mutex<()> = Mutex::new(());

/// An open file, directory or (with `O_PATH`) any inode.
pub struct OpenFile {
    fs: Arc<Fs>,
    attr: Attr,
    flags: OpenFlags,
    /// The filesystem's handle (regular files opened for I/O); `None` once closed.
    fh: Mutex<Option<u64>>,
    pos: Mutex<u64>,
    append: AtomicBool,
    nonblock: AtomicBool,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFile").field("ino", &self.attr.ino).field("flags", &self.flags).finish_non_exhaustive()
    }
}

impl OpenFile {
    /// Opens `attr`'s inode with `flags` (already checked against its type).
    pub(crate) fn new(fs: Arc<Fs>, attr: Attr, flags: OpenFlags) -> FsResult<OpenFile> {
        let fh = if attr.kind == FileKind::File && !flags.path_only {
            Some(fs.open(attr.ino, flags.access_mode())?)
        } else {
            None
        };
        Ok(OpenFile {
            fs,
            attr,
            flags,
            fh: Mutex::new(fh),
            pos: Mutex::new(0),
            append: AtomicBool::new(flags.append),
            nonblock: AtomicBool::new(flags.nonblock),
        })
    }

    /// The inode.
    pub fn ino(&self) -> Ino {
        self.attr.ino
    }

    /// The inode's type.
    pub fn kind(&self) -> FileKind {
        self.attr.kind
    }

    /// The filesystem.
    pub fn fs(&self) -> &Arc<Fs> {
        &self.fs
    }

    /// The flags it was opened with.
    pub fn flags(&self) -> OpenFlags {
        self.flags
    }

    /// The status flags (`fcntl(F_GETFL)`).
    pub fn status_flags(&self) -> i32 {
        let mut f = self.flags;
        f.append = self.append.load(Ordering::Relaxed);
        f.nonblock = self.nonblock.load(Ordering::Relaxed);
        f.status_flags()
    }

    /// Changes `O_APPEND` and `O_NONBLOCK` (`fcntl(F_SETFL)`); other bits are ignored.
    pub fn set_status_flags(&self, flags: i32) {
        self.append.store(flags & libc::O_APPEND != 0, Ordering::Relaxed);
        self.nonblock.store(flags & libc::O_NONBLOCK != 0, Ordering::Relaxed);
    }

    fn readable(&self) -> FsResult<()> {
        match self.attr.kind {
            _ if self.flags.path_only || !self.flags.read => Err(FsError::BadHandle),
            FileKind::Dir => Err(FsError::IsDir),
            FileKind::File => Ok(()),
            _ => Err(FsError::Invalid),
        }
    }

    fn writable(&self) -> FsResult<()> {
        match self.attr.kind {
            _ if self.flags.path_only || !self.flags.write => Err(FsError::BadHandle),
            FileKind::File => Ok(()),
            FileKind::Dir => Err(FsError::IsDir),
            _ => Err(FsError::Invalid),
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        let parts = self.fs.read_parts(self.attr.ino, offset, buf.len() as u64)?;
        let n = parts.len();
        parts.copy_to(&mut buf[..n]);
        Ok(n)
    }

    /// Reads at the offset and advances it.
    pub fn read(&self, buf: &mut [u8]) -> FsResult<usize> {
        self.readable()?;
        let mut pos = self.pos.lock();
        let n = self.read_at(buf, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    /// Reads at `offset`, leaving the offset alone.
    pub fn pread(&self, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        self.readable()?;
        self.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> FsResult<usize> {
        let ino = self.attr.ino;
        let mut at = offset;
        for piece in buf.chunks(WRITE_PIECE) {
            if self.fs.write(ino, at, piece)? {
                self.fs.flush(ino)?;
            }
            at += piece.len() as u64;
        }
        if self.flags.sync && !buf.is_empty() {
            self.fs.fsync(ino)?;
        }
        Ok(buf.len())
    }

    fn append_locked(&self, buf: &[u8]) -> FsResult<u64> {
        let _turn = APPEND.lock();
        let end = self.fs.getattr(self.attr.ino)?.size;
        self.write_at(buf, end)?;
        Ok(end + buf.len() as u64)
    }

    /// Writes at the offset (at the end with `O_APPEND`) and advances it.
    pub fn write(&self, buf: &[u8]) -> FsResult<usize> {
        self.writable()?;
        let mut pos = self.pos.lock();
        if self.append.load(Ordering::Relaxed) {
            *pos = self.append_locked(buf)?;
        } else {
            self.write_at(buf, *pos)?;
            *pos += buf.len() as u64;
        }
        Ok(buf.len())
    }

    /// Writes at `offset`, leaving the offset alone (with `O_APPEND`, at the
    /// end, as Linux does).
    pub fn pwrite(&self, buf: &[u8], offset: u64) -> FsResult<usize> {
        self.writable()?;
        if self.append.load(Ordering::Relaxed) {
            self.append_locked(buf)?;
            return Ok(buf.len());
        }
        self.write_at(buf, offset)
    }

    /// Moves the offset (`SEEK_SET`, `SEEK_CUR`, `SEEK_END`, `SEEK_DATA`,
    /// `SEEK_HOLE`); returns the new offset.
    pub fn seek(&self, offset: i64, whence: i32) -> FsResult<u64> {
        if self.flags.path_only {
            return Err(FsError::BadHandle);
        }
        let mut pos = self.pos.lock();
        let new = match whence {
            libc::SEEK_SET => u64::try_from(offset).ok(),
            libc::SEEK_CUR => pos.checked_add_signed(offset),
            libc::SEEK_END => self.fs.getattr(self.attr.ino)?.size.checked_add_signed(offset),
            libc::SEEK_DATA | libc::SEEK_HOLE => {
                let from = u64::try_from(offset).map_err(|_| FsError::NoData)?;
                Some(self.fs.lseek(self.attr.ino, from, whence)?)
            }
            _ => None,
        };
        let new = new.filter(|n| *n <= i64::MAX as u64).ok_or(FsError::Invalid)?;
        *pos = new;
        Ok(new)
    }

    /// The current offset.
    pub fn tell(&self) -> u64 {
        *self.pos.lock()
    }

    /// The inode's attributes now.
    pub fn stat(&self) -> FsResult<Attr> {
        self.fs.getattr(self.attr.ino)
    }

    /// Cuts or extends the file to `size` (needs write access).
    pub fn truncate(&self, size: u64) -> FsResult<Attr> {
        if self.writable().is_err() {
            return Err(FsError::Invalid);
        }
        self.fs.setattr(self.attr.ino, SetAttr { size: Some(size), ..SetAttr::default() })
    }

    /// Commits the file's data and makes the store durable (`fsync`).
    pub fn sync(&self) -> FsResult<()> {
        if self.flags.path_only {
            return Err(FsError::BadHandle);
        }
        match self.attr.kind {
            FileKind::File => self.fs.fsync(self.attr.ino),
            _ => self.fs.sync_store(),
        }
    }

    /// The directory's entries as they are now, `.` and `..` first.
    pub fn list(&self) -> FsResult<DirStream> {
        if self.attr.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        DirStream::open(&self.fs, self.attr.ino)
    }

    /// Commits written data and releases the file; reports a failed commit.
    /// Later calls do nothing.
    pub fn close(&self) -> FsResult<()> {
        match self.fh.lock().take() {
            Some(fh) => self.fs.release(fh),
            None => Ok(()),
        }
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::error!("closing inode {}: {e}", self.attr.ino);
        }
    }
}

/// A directory listing being read (`readdir`), taken when it was opened.
#[derive(Debug)]
pub struct DirStream {
    ino: Ino,
    entries: Vec<DirEntry>,
    pos: usize,
}

impl DirStream {
    /// Lists directory `ino`, `.` and `..` included.
    pub fn open(fs: &Fs, ino: Ino) -> FsResult<DirStream> {
        let fh = fs.opendir(ino)?;
        let mut entries = Vec::new();
        let listed = fs.readdir(fh, 0, |_, e| {
            entries.push(e.clone());
            false
        });
        let released = fs.releasedir(fh);
        listed.and(released)?;
        Ok(DirStream { ino, entries, pos: 0 })
    }

    /// The directory.
    pub fn ino(&self) -> Ino {
        self.ino
    }

    /// The next entry and its position (for `telldir`), or `None` at the end.
    pub fn next_entry(&mut self) -> Option<(usize, &DirEntry)> {
        let e = self.entries.get(self.pos)?;
        self.pos += 1;
        Some((self.pos, e))
    }

    /// The position of the next entry.
    pub fn tell(&self) -> usize {
        self.pos
    }

    /// Continues from position `pos` (as `telldir` returned it).
    pub fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.entries.len());
    }

    /// Every entry, `.` and `..` first.
    pub fn entries(&self) -> &[DirEntry] {
        &self.entries
    }
}
