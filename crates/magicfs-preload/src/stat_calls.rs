//! The `stat` family: `stat`, `lstat`, `fstat`, `fstatat`, `statx` and
//! their 64-bit names, and the `__xstat` names of binaries built against
//! glibc before 2.33.

use crate::state::{answer, file, posix, route, Route};
use magicfs_posix::{fill_stat, fill_statx, FsError, FsResult};
use magicfs_types::{Attr, Ino};
use std::ffi::{c_char, c_int, c_uint};

type Path = *const c_char;
type Stat = *mut libc::stat;

/// The attributes a `*at` stat call asks for: of `path` from `base`, or of
/// `base` itself for an empty path with `AT_EMPTY_PATH`.
fn lookup(base: Ino, path: &[u8], flags: c_int) -> FsResult<Attr> {
    let p = posix()?;
    if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH != 0 {
            return p.fs().getattr(base);
        }
        return Err(FsError::NotFound);
    }
    p.stat(base, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0)
}

fn fill(a: FsResult<Attr>, buf: Stat) -> c_int {
    answer(-1, || {
        // SAFETY: the caller's stat buffer, or null.
        let st = unsafe { buf.as_mut() }.ok_or(FsError::Fault)?;
        fill_stat(&a?, st);
        Ok(0)
    })
}

macro_rules! stat_fn {
    ($name:ident, $flags:expr) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: Path, buf: Stat) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { base, path } => fill(lookup(base, &path, $flags), buf),
                Route::Host => forward!($name: fn(Path, Stat) -> c_int, -1, (path, buf)),
            }
        }
    };
}
stat_fn!(stat, 0);
stat_fn!(stat64, 0);
stat_fn!(lstat, libc::AT_SYMLINK_NOFOLLOW);
stat_fn!(lstat64, libc::AT_SYMLINK_NOFOLLOW);

macro_rules! fstat_fn {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, buf: Stat) -> c_int {
            match file(fd) {
                Some(f) => fill(f.stat(), buf),
                None => forward!($name: fn(c_int, Stat) -> c_int, -1, (fd, buf)),
            }
        }
    };
}
fstat_fn!(fstat);
fstat_fn!(fstat64);

macro_rules! fstatat_fn {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(dirfd: c_int, path: Path, buf: Stat, flags: c_int) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(dirfd, path) } {
                Route::Store { base, path } => fill(lookup(base, &path, flags), buf),
                Route::Host => forward!($name: fn(c_int, Path, Stat, c_int) -> c_int, -1, (dirfd, path, buf, flags)),
            }
        }
    };
}
fstatat_fn!(fstatat);
fstatat_fn!(fstatat64);

#[no_mangle]
pub unsafe extern "C" fn statx(dirfd: c_int, path: Path, flags: c_int, mask: c_uint, buf: *mut libc::statx) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(dirfd, path) } {
        Route::Store { base, path } => answer(-1, || {
            // SAFETY: the caller's statx buffer, or null.
            let stx = unsafe { buf.as_mut() }.ok_or(FsError::Fault)?;
            fill_statx(&lookup(base, &path, flags)?, stx);
            Ok(0)
        }),
        Route::Host => {
            forward!(statx: fn(c_int, Path, c_int, c_uint, *mut libc::statx) -> c_int, -1, (dirfd, path, flags, mask, buf))
        }
    }
}

// Binaries built against glibc before 2.33 call these instead (`ver` is
// `_STAT_VER`, 1 on x86-64, whose `struct stat` is the one above). For other
// paths they go on to the C library's compatibility symbols, or to the
// plain calls where it has none.

macro_rules! xstat_fn {
    ($name:ident, $plain:ident, $flags:expr) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(ver: c_int, path: Path, buf: Stat) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { base, path } => fill(lookup(base, &path, $flags), buf),
                Route::Host => match real!($name: fn(c_int, Path, Stat) -> c_int) {
                    // SAFETY: forwarding the caller's arguments.
                    Some(f) => unsafe { f(ver, path, buf) },
                    None => forward!($plain: fn(Path, Stat) -> c_int, -1, (path, buf)),
                },
            }
        }
    };
}
xstat_fn!(__xstat, stat, 0);
xstat_fn!(__xstat64, stat64, 0);
xstat_fn!(__lxstat, lstat, libc::AT_SYMLINK_NOFOLLOW);
xstat_fn!(__lxstat64, lstat64, libc::AT_SYMLINK_NOFOLLOW);

macro_rules! fxstat_fn {
    ($name:ident, $plain:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(ver: c_int, fd: c_int, buf: Stat) -> c_int {
            match file(fd) {
                Some(f) => fill(f.stat(), buf),
                None => match real!($name: fn(c_int, c_int, Stat) -> c_int) {
                    // SAFETY: forwarding the caller's arguments.
                    Some(f) => unsafe { f(ver, fd, buf) },
                    None => forward!($plain: fn(c_int, Stat) -> c_int, -1, (fd, buf)),
                },
            }
        }
    };
}
fxstat_fn!(__fxstat, fstat);
fxstat_fn!(__fxstat64, fstat64);

macro_rules! fxstatat_fn {
    ($name:ident, $plain:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(ver: c_int, dirfd: c_int, path: Path, buf: Stat, flags: c_int) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(dirfd, path) } {
                Route::Store { base, path } => fill(lookup(base, &path, flags), buf),
                Route::Host => match real!($name: fn(c_int, c_int, Path, Stat, c_int) -> c_int) {
                    // SAFETY: forwarding the caller's arguments.
                    Some(f) => unsafe { f(ver, dirfd, path, buf, flags) },
                    None => forward!($plain: fn(c_int, Path, Stat, c_int) -> c_int, -1, (dirfd, path, buf, flags)),
                },
            }
        }
    };
}
fxstatat_fn!(__fxstatat, fstatat);
fxstatat_fn!(__fxstatat64, fstatat64);
