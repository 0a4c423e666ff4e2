//! The file operations of the store, behind one narrow trait.
//!
//! Every byte the store keeps on disk — log segments, pack files and the
//! redb image — is read, written and synced through [`Disk`] and
//! [`DiskFile`]. [`OsDisk`] is the real filesystem;
//! [`crate::sim_disk::SimDisk`] is a disk in memory that records every
//! write and sync and can lose power at any point, keeping only what was
//! synced plus a random, possibly torn, part of the rest.

use memmap2::{Mmap, MmapOptions};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// An open file of a [`Disk`].
#[allow(clippy::len_without_is_empty)]
pub trait DiskFile: Send + Sync {
    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the file as needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Cuts or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data and length durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Frees the space of `len` bytes at `offset` (they read as zeros after;
    /// the length stays).
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Bytes of disk space the file takes (holes excluded).
    fn allocated(&self) -> io::Result<u64>;
    /// A read-only mapping of `len` bytes from the start (it may reach past
    /// the end of the file), or `None` where the disk has no mappings.
    fn map(&self, len: usize) -> io::Result<Option<Mmap>>;
}

/// Space on the filesystem under a directory, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    /// Size of the filesystem.
    pub total: u64,
    /// Free bytes.
    pub free: u64,
    /// Free bytes an unprivileged user may fill.
    pub avail: u64,
}

/// Something held while a store is open, released when dropped.
pub struct DiskLock(#[allow(dead_code)] Box<dyn Send + Sync>);

impl DiskLock {
    /// Holds `guard` until the lock is dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> DiskLock {
        DiskLock(Box::new(guard))
    }
}

/// The file and directory operations the store makes.
pub trait Disk: Send + Sync {
    /// Opens the file at `path` for reading and writing (created empty
    /// when missing and `create`).
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing `to` (atomically, as `rename(2)`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// The names in a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the entries of a directory (creations, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// True when `path` is a directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// True when `path` exists and is not a directory.
    fn is_file(&self, path: &Path) -> bool;
    /// Takes the lock file at `path` for this process. `WouldBlock` (whose
    /// message is the holder's pid) when another process holds it.
    fn lock(&self, path: &Path) -> io::Result<DiskLock>;
    /// Space on the filesystem under `dir`.
    fn space(&self, dir: &Path) -> io::Result<Space>;
}

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsDisk;

impl OsDisk {
    /// The real filesystem, shared.
    pub fn shared() -> Arc<dyn Disk> {
        Arc::new(OsDisk)
    }
}

struct OsFile(File);

impl DiskFile for OsFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        // SAFETY: fallocate on an owned, open descriptor.
        let rc = unsafe {
            libc::fallocate(self.0.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn allocated(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.0.metadata()?.blocks() * 512)
    }

    fn map(&self, len: usize) -> io::Result<Option<Mmap>> {
        // SAFETY: the store maps only files it appends to and never
        // truncates while open (pack files; see `FilePacks`), and it holds
        // the data directory's lock against other processes.
        Ok(Some(unsafe { MmapOptions::new().len(len).map(&self.0)? }))
    }
}

impl Disk for OsDisk {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let f = OpenOptions::new().create(create).truncate(false).read(true).write(true).open(path)?;
        Ok(Arc::new(OsFile(f)))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn is_file(&self, path: &Path) -> bool {
        path.exists() && !path.is_dir()
    }

    fn lock(&self, path: &Path) -> io::Result<DiskLock> {
        let mut f = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            return Err(io::Error::new(io::ErrorKind::WouldBlock, holder.trim().to_string()));
        }
        f.set_len(0)?;
        let _ = write!(f, "{}", std::process::id());
        Ok(DiskLock(Box::new(f)))
    }

    fn space(&self, dir: &Path) -> io::Result<Space> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
        // SAFETY: statvfs is plain old data; all-zero is a valid value.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and out-pointer.
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let unit = s.f_frsize as u64;
        Ok(Space { total: s.f_blocks as u64 * unit, free: s.f_bfree as u64 * unit, avail: s.f_bavail as u64 * unit })
    }
}

/// Reads a whole file of `disk`.
pub fn read_all(file: &dyn DiskFile) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.len()?).map_err(|_| io::Error::other("file too large to read"))?;
    let mut v = vec![0u8; len];
    file.read_exact_at(&mut v, 0)?;
    Ok(v)
}
