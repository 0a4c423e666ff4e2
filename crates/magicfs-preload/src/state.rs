//! The shim's state: its configuration, the store (opened on first use),
//! the table of store descriptors, and the routing of a path or descriptor
//! to the store or to the C library.

use magicfs_core::{Fs, FsConfig, OpenError};
use magicfs_posix::c_abi::c_str;
pub use magicfs_posix::c_abi::{answer, c_slice, set_errno};
use magicfs_posix::{Absolute, FsError, FsResult, OpenFile, Posix, Table};
use magicfs_types::{Ino, ROOT_INO};
use std::ffi::{c_char, c_int, CStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Environment variable naming the store's directory.
pub const STORE_VAR: &str = "MAGICFS_PRELOAD_STORE";
/// Environment variable naming the path prefix (default `/magic`).
pub const PREFIX_VAR: &str = "MAGICFS_PRELOAD_PREFIX";
/// How long opening waits for a store another process holds.
const LOCK_WAIT: Duration = Duration::from_secs(2);

struct Config {
    store: PathBuf,
    prefix: Vec<u8>,
}

static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
static STORE: OnceLock<Result<Posix, i32>> = OnceLock::new();
/// Store descriptors by their (kernel) number.
pub static FDS: Table<OpenFile> = Table::new();
/// Set in a child made by `fork`: it may read, never change the store.
static FORKED: AtomicBool = AtomicBool::new(false);

fn warn(msg: &str) {
    let line = format!("magicfs-preload: {msg}\n");
    // SAFETY: writing a buffer we own to standard error.
    let _ = forward!(write: fn(c_int, *const libc::c_void, usize) -> isize, -1, (2, line.as_ptr().cast(), line.len()));
}

fn config() -> Option<&'static Config> {
    CONFIG
        .get_or_init(|| {
            let store = std::env::var_os(STORE_VAR).filter(|s| !s.is_empty())?;
            let raw = std::env::var_os(PREFIX_VAR).unwrap_or_else(|| "/magic".into());
            let mut prefix = raw.as_bytes().to_vec();
            while prefix.len() > 1 && prefix.ends_with(b"/") {
                prefix.pop();
            }
            if !prefix.starts_with(b"/") || prefix == b"/" || prefix.contains(&0) {
                warn(&format!(
                    "{PREFIX_VAR}={} is not usable: name an absolute path other than / (the shim is off)",
                    raw.to_string_lossy()
                ));
                return None;
            }
            let store = std::path::absolute(&store).unwrap_or_else(|_| PathBuf::from(&store));
            if store.as_os_str().as_bytes().starts_with(&prefix) {
                warn(&format!(
                    "{STORE_VAR} lies under {PREFIX_VAR}: choose a store outside the prefix (the shim is off)"
                ));
                return None;
            }
            Some(Config { store, prefix })
        })
        .as_ref()
}

fn open_errno(e: &OpenError) -> i32 {
    match e {
        OpenError::Locked { .. } => libc::EBUSY,
        OpenError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        OpenError::NotAStore(_) => libc::ENOTDIR,
        _ => libc::EIO,
    }
}

extern "C" fn after_fork_in_child() {
    FORKED.store(true, Ordering::Release);
}

extern "C" fn at_exit() {
    if FORKED.load(Ordering::Acquire) {
        return;
    }
    if let Some(Ok(p)) = STORE.get() {
        for f in FDS.remove_where(|_| true) {
            if let Err(e) = f.close() {
                warn(&format!("committing an open file at exit: {e}"));
            }
        }
        if let Err(e) = p.fs().shutdown() {
            warn(&format!("closing the store at exit: {e}"));
        }
    }
}

fn open_store(c: &Config) -> Result<Posix, i32> {
    let deadline = Instant::now() + LOCK_WAIT;
    let fs = loop {
        match Fs::open_store(&c.store, true, FsConfig::default()) {
            Ok(fs) => break fs,
            Err(OpenError::Locked { .. }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                warn(&format!("cannot open the store at {}: {e}", c.store.display()));
                return Err(open_errno(&e));
            }
        }
    };
    // SAFETY: registering plain functions without arguments.
    unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_in_child));
        libc::atexit(at_exit);
    }
    Ok(Posix::new(Arc::new(fs), Absolute::HostPrefix(c.prefix.clone())))
}

/// The store's calls, opening it on first use.
pub fn posix() -> FsResult<&'static Posix> {
    let c = config().ok_or(FsError::NotFound)?;
    match STORE.get_or_init(|| open_store(c)) {
        Ok(p) => Ok(p),
        Err(e) => Err(errno_error(*e)),
    }
}

/// An error for an errno the store reported when opening.
fn errno_error(e: i32) -> FsError {
    match e {
        libc::EBUSY => FsError::Busy,
        libc::ENOTDIR => FsError::NotDir,
        libc::EACCES => FsError::Access,
        libc::ENOSPC => FsError::NoSpace,
        libc::EROFS => FsError::ReadOnly,
        _ => FsError::Io,
    }
}

/// The store may be changed by this process (not by a child made by `fork`).
pub fn may_change() -> FsResult<()> {
    if FORKED.load(Ordering::Acquire) {
        return Err(FsError::Io);
    }
    Ok(())
}

/// True in a child made by `fork`.
pub fn forked() -> bool {
    FORKED.load(Ordering::Acquire)
}

/// Where a path argument leads.
pub enum Route {
    /// Not the store's: the C library answers.
    Host,
    /// Into the store: a path relative to directory `base`.
    Store {
        /// Where a relative `path` starts.
        base: Ino,
        /// The path, relative to `base` (absolute paths have the prefix cut off).
        path: Vec<u8>,
    },
}

/// The part of `path` below the prefix (`/` for the prefix itself).
fn strip_prefix(path: &[u8]) -> Option<Vec<u8>> {
    let c = config()?;
    let rest = path.strip_prefix(&c.prefix[..])?;
    match rest.first() {
        None => Some(b"/".to_vec()),
        Some(b'/') => Some(rest.to_vec()),
        Some(_) => None,
    }
}

/// Routes `path` relative to `dirfd` (`AT_FDCWD` or a descriptor).
///
/// # Safety
/// `path` is `NULL` or a valid NUL-terminated string.
pub unsafe fn route(dirfd: c_int, path: *const c_char) -> Route {
    if path.is_null() || config().is_none() {
        return Route::Host;
    }
    // SAFETY: per the contract.
    let p = unsafe { CStr::from_ptr(path) }.to_bytes();
    if p.first() == Some(&b'/') {
        return match strip_prefix(p) {
            Some(rest) => Route::Store { base: ROOT_INO, path: rest },
            None => Route::Host,
        };
    }
    if dirfd == libc::AT_FDCWD {
        return Route::Host;
    }
    match FDS.get(dirfd) {
        Some(f) => Route::Store { base: f.ino(), path: p.to_vec() },
        None => Route::Host,
    }
}

/// The store file behind descriptor `fd`, if it is one.
pub fn file(fd: c_int) -> Option<Arc<OpenFile>> {
    FDS.get(fd)
}

/// A kernel descriptor number for a store file: an `O_PATH` descriptor of
/// `/dev/null`, which no read or write can use by mistake. The file is
/// entered in the table under that number.
pub fn install(file: OpenFile, cloexec: bool) -> FsResult<c_int> {
    let flags = libc::O_PATH | if cloexec { libc::O_CLOEXEC } else { 0 };
    let fd = forward!(open: fn(*const c_char, c_int, libc::c_uint) -> c_int, -1, (c"/dev/null".as_ptr(), flags, 0));
    if fd < 0 {
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EMFILE);
        return Err(if e == libc::EMFILE || e == libc::ENFILE { FsError::TooManyFiles } else { FsError::Io });
    }
    FDS.insert_at(fd, Arc::new(file));
    Ok(fd)
}

/// Drops descriptor `fd` from the table and closes its kernel descriptor;
/// commits the file when this was its last descriptor (a child made by
/// `fork` never commits: the parent owns the store).
pub fn uninstall(fd: c_int) -> FsResult<()> {
    let f = FDS.remove(fd).ok_or(FsError::BadHandle)?;
    forward!(close: fn(c_int) -> c_int, -1, (fd));
    if forked() {
        std::mem::forget(f);
        return Ok(());
    }
    match Arc::try_unwrap(f) {
        Ok(f) => f.close(),
        Err(_) => Ok(()),
    }
}

/// The bytes of a C string argument (`EFAULT` for `NULL`).
///
/// # Safety
/// `p` is `NULL` or a valid NUL-terminated string.
pub unsafe fn c_bytes<'a>(p: *const c_char) -> FsResult<&'a [u8]> {
    // SAFETY: per the contract.
    unsafe { c_str(p) }.ok_or(FsError::Fault)
}
