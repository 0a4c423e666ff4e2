//! `libmagicfs.so`: a MagicFS store used from C, in process, with no mount.
//!
//! Every function follows POSIX conventions: `-1` (or `NULL`) on failure
//! with `errno` set, never a panic across the boundary (a Rust panic becomes
//! `EIO`). Descriptors are numbers of this library's own table, shared by
//! every thread of the process; each one is an open file description with
//! its own offset. Paths are relative to the store's root (`/a/b` and `a/b`
//! are the same file) and symbolic links are followed as `open(2)` does,
//! absolute targets from the store's root.
//!
//! The header `include/magicfs.h` is generated from this file by cbindgen
//! (`tests/header.rs` checks that it is current).

#![allow(non_camel_case_types)]

use magicfs_core::{Fs, FsConfig, OpenError};
use magicfs_posix::c_abi::{answer, c_slice, c_slice_mut, c_str, set_errno};
use magicfs_posix::{fill_stat, Absolute, FsError, FsResult, OpenFile, Posix, Table};
use magicfs_types::ROOT_INO;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// `magicfs_store_open` flag: create the store when the directory is missing or empty.
pub const MAGICFS_STORE_CREATE: c_int = 1;

/// `magicfs_export_memfd` flag: leave the memfd open across `exec` (by
/// default it is close-on-exec).
pub const MAGICFS_EXPORT_KEEP_ON_EXEC: c_int = 1;

/// An open store. Opaque; from `magicfs_store_open`, released by `magicfs_store_close`.
pub struct magicfs_store {
    id: u64,
    posix: Posix,
}

/// One open file of the descriptor table, and the store it belongs to.
struct Descriptor {
    store: u64,
    file: OpenFile,
}

static DESCRIPTORS: Table<Descriptor> = Table::new();
static NEXT_STORE: AtomicU64 = AtomicU64::new(1);

/// The bytes of a C string argument; `NULL` is `EINVAL`.
///
/// # Safety
/// `p` is `NULL` or a valid NUL-terminated string.
unsafe fn c_path<'a>(p: *const c_char) -> FsResult<&'a [u8]> {
    // SAFETY: per the contract.
    unsafe { c_str(p) }.ok_or(FsError::Invalid)
}

/// # Safety
/// `s` is `NULL` or a pointer `magicfs_store_open` returned and not yet closed.
unsafe fn store<'a>(s: *const magicfs_store) -> FsResult<&'a magicfs_store> {
    // SAFETY: per the contract.
    unsafe { s.as_ref() }.ok_or(FsError::Invalid)
}

fn descriptor(fd: c_int) -> FsResult<Arc<Descriptor>> {
    DESCRIPTORS.get(fd).ok_or(FsError::BadHandle)
}

fn open_error(e: &OpenError) -> c_int {
    match e {
        OpenError::Locked { .. } => libc::EBUSY,
        OpenError::Missing(_) => libc::ENOENT,
        OpenError::NotAStore(_) => libc::ENOTDIR,
        OpenError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        _ => libc::EIO,
    }
}

/// Opens the store in directory `dir` (flags: `MAGICFS_STORE_CREATE`), or a
/// new store held in memory when `dir` is `NULL`. Returns `NULL` with errno
/// `ENOENT` (no store there), `EBUSY` (open in another process, a mount
/// included), `ENOTDIR`, `EINVAL` or `EIO`.
///
/// # Safety
/// `dir` is `NULL` or a valid NUL-terminated path.
#[no_mangle]
pub unsafe extern "C" fn magicfs_store_open(dir: *const c_char, flags: c_int) -> *mut magicfs_store {
    let open = || -> FsResult<*mut magicfs_store> {
        if flags & !MAGICFS_STORE_CREATE != 0 {
            return Err(FsError::Invalid);
        }
        let fs = if dir.is_null() {
            Fs::memory(FsConfig::default())
        } else {
            // SAFETY: non-null and NUL-terminated per the contract.
            let bytes = unsafe { CStr::from_ptr(dir) }.to_bytes();
            let path = Path::new(std::ffi::OsStr::from_bytes(bytes));
            match Fs::open_store(path, flags & MAGICFS_STORE_CREATE != 0, FsConfig::default()) {
                Ok(fs) => fs,
                Err(e) => {
                    log::error!("magicfs_store_open {}: {e}", path.display());
                    set_errno(open_error(&e));
                    return Ok(std::ptr::null_mut());
                }
            }
        };
        let id = NEXT_STORE.fetch_add(1, Ordering::Relaxed);
        let posix = Posix::new(Arc::new(fs), Absolute::StoreRoot);
        Ok(Box::into_raw(Box::new(magicfs_store { id, posix })))
    };
    answer(std::ptr::null_mut(), open)
}

/// Closes every descriptor still open on `store`, commits everything, closes
/// the store and frees `store`. Returns 0, or -1 with errno `EIO` when
/// something could not be committed (the handle is freed either way).
///
/// # Safety
/// `store` is `NULL` or came from `magicfs_store_open` and is not used again.
#[no_mangle]
pub unsafe extern "C" fn magicfs_store_close(store: *mut magicfs_store) -> c_int {
    answer(-1, || {
        if store.is_null() {
            return Err(FsError::Invalid);
        }
        // SAFETY: per the contract, `store` is ours and not used again.
        let s = unsafe { Box::from_raw(store) };
        let mut result = Ok(());
        for d in DESCRIPTORS.remove_where(|d| d.store == s.id) {
            result = result.and(d.file.close());
        }
        result.and(s.posix.fs().shutdown()).map(|_| 0)
    })
}

/// Opens `path` (`O_RDONLY`, `O_WRONLY`, `O_RDWR`, with `O_CREAT`, `O_EXCL`,
/// `O_TRUNC`, `O_APPEND`, `O_DIRECTORY`, `O_NOFOLLOW`, `O_SYNC`); `mode`
/// gives a created file's permission bits (the umask applies). Returns a
/// descriptor, or -1 with errno as `open(2)` sets it.
///
/// # Safety
/// `store` is a live store; `path` is a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn magicfs_open(
    store: *const magicfs_store,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    answer(-1, || {
        // SAFETY: per the contract.
        let (s, path) = unsafe { (self::store(store)?, c_path(path)?) };
        let file = s.posix.open(ROOT_INO, path, flags, mode)?;
        DESCRIPTORS.insert(Arc::new(Descriptor { store: s.id, file })).ok_or(FsError::TooManyFiles)
    })
}

/// Closes descriptor `fd`, committing what was written through it. Returns
/// 0, or -1 with errno `EBADF`, or `EIO` when the data could not be
/// committed (the descriptor is closed either way).
#[no_mangle]
pub extern "C" fn magicfs_close(fd: c_int) -> c_int {
    answer(-1, || {
        let d = DESCRIPTORS.remove(fd).ok_or(FsError::BadHandle)?;
        d.file.close().map(|_| 0)
    })
}

fn offset(o: libc::off_t) -> FsResult<u64> {
    u64::try_from(o).map_err(|_| FsError::Invalid)
}

/// Reads up to `count` bytes at the descriptor's offset and advances it.
/// Returns the number read (0 at the end), or -1.
///
/// # Safety
/// `buf` is valid for writing `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn magicfs_read(fd: c_int, buf: *mut c_void, count: usize) -> libc::ssize_t {
    answer(-1, || {
        // SAFETY: per the contract.
        let buf = unsafe { c_slice_mut(buf, count)? };
        Ok(descriptor(fd)?.file.read(buf)? as libc::ssize_t)
    })
}

/// Writes `count` bytes at the descriptor's offset (at the end with
/// `O_APPEND`) and advances it. Returns `count`, or -1.
///
/// # Safety
/// `buf` is valid for reading `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn magicfs_write(fd: c_int, buf: *const c_void, count: usize) -> libc::ssize_t {
    answer(-1, || {
        // SAFETY: per the contract.
        let buf = unsafe { c_slice(buf, count)? };
        Ok(descriptor(fd)?.file.write(buf)? as libc::ssize_t)
    })
}

/// Reads up to `count` bytes at `offset` without moving the descriptor's offset.
///
/// # Safety
/// `buf` is valid for writing `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn magicfs_pread(
    fd: c_int,
    buf: *mut c_void,
    count: usize,
    offset: libc::off_t,
) -> libc::ssize_t {
    answer(-1, || {
        // SAFETY: per the contract.
        let buf = unsafe { c_slice_mut(buf, count)? };
        Ok(descriptor(fd)?.file.pread(buf, self::offset(offset)?)? as libc::ssize_t)
    })
}

/// Writes `count` bytes at `offset` without moving the descriptor's offset.
///
/// # Safety
/// `buf` is valid for reading `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn magicfs_pwrite(
    fd: c_int,
    buf: *const c_void,
    count: usize,
    offset: libc::off_t,
) -> libc::ssize_t {
    answer(-1, || {
        // SAFETY: per the contract.
        let buf = unsafe { c_slice(buf, count)? };
        Ok(descriptor(fd)?.file.pwrite(buf, self::offset(offset)?)? as libc::ssize_t)
    })
}

/// Moves the descriptor's offset (`SEEK_SET`, `SEEK_CUR`, `SEEK_END`,
/// `SEEK_DATA`, `SEEK_HOLE`). Returns the new offset, or -1.
#[no_mangle]
pub extern "C" fn magicfs_lseek(fd: c_int, offset: libc::off_t, whence: c_int) -> libc::off_t {
    answer(-1, || Ok(descriptor(fd)?.file.seek(offset, whence)? as libc::off_t))
}

/// Fills `st` with the attributes of the descriptor's file.
///
/// # Safety
/// `st` points to a writable `struct stat`.
#[no_mangle]
pub unsafe extern "C" fn magicfs_fstat(fd: c_int, st: *mut libc::stat) -> c_int {
    answer(-1, || {
        // SAFETY: per the contract.
        let st = unsafe { st.as_mut() }.ok_or(FsError::Fault)?;
        fill_stat(&descriptor(fd)?.file.stat()?, st);
        Ok(0)
    })
}

/// Fills `st` with the attributes of `path` (following symbolic links).
///
/// # Safety
/// `store` is a live store; `path` a valid string; `st` a writable `struct stat`.
#[no_mangle]
pub unsafe extern "C" fn magicfs_stat(store: *const magicfs_store, path: *const c_char, st: *mut libc::stat) -> c_int {
    answer(-1, || {
        // SAFETY: per the contract.
        let (s, path, st) = unsafe { (self::store(store)?, c_path(path)?, st.as_mut().ok_or(FsError::Fault)?) };
        fill_stat(&s.posix.stat(ROOT_INO, path, true)?, st);
        Ok(0)
    })
}

/// Cuts or extends the descriptor's file to `length` (needs write access).
#[no_mangle]
pub extern "C" fn magicfs_ftruncate(fd: c_int, length: libc::off_t) -> c_int {
    answer(-1, || descriptor(fd)?.file.truncate(offset(length)?).map(|_| 0))
}

/// Commits the descriptor's file and makes the store durable.
#[no_mangle]
pub extern "C" fn magicfs_fsync(fd: c_int) -> c_int {
    answer(-1, || descriptor(fd)?.file.sync().map(|_| 0))
}

/// Removes the name `path` (not a directory; an open file stays readable
/// through its descriptors until they are closed).
///
/// # Safety
/// `store` is a live store; `path` is a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn magicfs_unlink(store: *const magicfs_store, path: *const c_char) -> c_int {
    answer(-1, || {
        // SAFETY: per the contract.
        let (s, path) = unsafe { (self::store(store)?, c_path(path)?) };
        s.posix.unlink(ROOT_INO, path).map(|_| 0)
    })
}

/// Creates directory `path` with permission bits `mode` (the umask applies).
///
/// # Safety
/// `store` is a live store; `path` is a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn magicfs_mkdir(store: *const magicfs_store, path: *const c_char, mode: libc::mode_t) -> c_int {
    answer(-1, || {
        // SAFETY: per the contract.
        let (s, path) = unsafe { (self::store(store)?, c_path(path)?) };
        s.posix.mkdir(ROOT_INO, path, mode).map(|_| 0)
    })
}

/// Removes the empty directory `path`.
///
/// # Safety
/// `store` is a live store; `path` is a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn magicfs_rmdir(store: *const magicfs_store, path: *const c_char) -> c_int {
    answer(-1, || {
        // SAFETY: per the contract.
        let (s, path) = unsafe { (self::store(store)?, c_path(path)?) };
        s.posix.rmdir(ROOT_INO, path).map(|_| 0)
    })
}

/// Renames `from` to `to`, replacing a file (or an empty directory) there.
///
/// # Safety
/// `store` is a live store; `from` and `to` are valid NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn magicfs_rename(store: *const magicfs_store, from: *const c_char, to: *const c_char) -> c_int {
    answer(-1, || {
        // SAFETY: per the contract.
        let (s, from, to) = unsafe { (self::store(store)?, c_path(from)?, c_path(to)?) };
        s.posix.rename(ROOT_INO, from, ROOT_INO, to, 0).map(|_| 0)
    })
}

/// A kernel file descriptor of a sealed memfd holding the contents of the
/// file at `path` now (data written through open descriptors included): it
/// works with `read`, `mmap`, `fstat`, `lseek`, child processes and
/// `fexecve`, and cannot be written, grown or shrunk. Close-on-exec unless
/// `flags` has `MAGICFS_EXPORT_KEEP_ON_EXEC`. Returns -1 with errno `ENOENT`,
/// `EISDIR`, `EINVAL` (`NULL` path, unknown flags, not a regular file) or `EIO`.
///
/// # Safety
/// `store` is a live store; `path` is `NULL` or a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn magicfs_export_memfd(store: *const magicfs_store, path: *const c_char, flags: c_int) -> c_int {
    answer(-1, || {
        // SAFETY: per the contract.
        let (s, path) = unsafe { (self::store(store)?, c_path(path)?) };
        if flags & !MAGICFS_EXPORT_KEEP_ON_EXEC != 0 {
            return Err(FsError::Invalid);
        }
        let fd = s.posix.export_memfd(ROOT_INO, path)?.into_raw_fd();
        // SAFETY: `fd` is a descriptor we own.
        if flags & MAGICFS_EXPORT_KEEP_ON_EXEC != 0 && unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            // SAFETY: closing the descriptor we own.
            unsafe { libc::close(fd) };
            return Err(FsError::Io);
        }
        Ok(fd)
    })
}

/// The library's version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn magicfs_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
