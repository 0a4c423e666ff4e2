//! Calls by name: `open` and `creat`, directories, names, links, modes,
//! owners, times, sizes, access checks, extended attributes, and the calls
//! by name the shim refuses under the prefix (`ENOTSUP`).

use crate::state::{answer, file, install, may_change, posix, route, set_errno, Route};
use magicfs_core::SetAttr;
use magicfs_posix::{set_attr, time_set, FsError, FsResult, OpenFile};
use magicfs_types::{Attr, Ino};
use std::ffi::{c_char, c_int, c_uint, c_void};

type Path = *const c_char;

/// Opens `path` in the store and gives it a descriptor.
fn open_in_store(base: Ino, path: &[u8], flags: c_int, mode: c_uint) -> c_int {
    answer(-1, || {
        if flags & (libc::O_CREAT | libc::O_TRUNC) != 0 {
            may_change()?;
        }
        let f = posix()?.open(base, path, flags, mode)?;
        install(f, flags & libc::O_CLOEXEC != 0)
    })
}

macro_rules! open_fn {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: Path, flags: c_int, mode: c_uint) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { base, path } => open_in_store(base, &path, flags, mode),
                Route::Host => forward!($name: fn(Path, c_int, c_uint) -> c_int, -1, (path, flags, mode)),
            }
        }
    };
}
open_fn!(open);
open_fn!(open64);

macro_rules! open_2 {
    ($name:ident) => {
        /// The checked variant `_FORTIFY_SOURCE` builds call (no mode).
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: Path, flags: c_int) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { base, path } => open_in_store(base, &path, flags, 0),
                Route::Host => forward!($name: fn(Path, c_int) -> c_int, -1, (path, flags)),
            }
        }
    };
}
open_2!(__open_2);
open_2!(__open64_2);

macro_rules! openat_fn {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(dirfd: c_int, path: Path, flags: c_int, mode: c_uint) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(dirfd, path) } {
                Route::Store { base, path } => open_in_store(base, &path, flags, mode),
                Route::Host => forward!($name: fn(c_int, Path, c_int, c_uint) -> c_int, -1, (dirfd, path, flags, mode)),
            }
        }
    };
}
openat_fn!(openat);
openat_fn!(openat64);

macro_rules! openat_2 {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(dirfd: c_int, path: Path, flags: c_int) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(dirfd, path) } {
                Route::Store { base, path } => open_in_store(base, &path, flags, 0),
                Route::Host => forward!($name: fn(c_int, Path, c_int) -> c_int, -1, (dirfd, path, flags)),
            }
        }
    };
}
openat_2!(__openat_2);
openat_2!(__openat64_2);

macro_rules! creat_fn {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: Path, mode: c_uint) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { base, path } => {
                    open_in_store(base, &path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, mode)
                }
                Route::Host => forward!($name: fn(Path, c_uint) -> c_int, -1, (path, mode)),
            }
        }
    };
}
creat_fn!(creat);
creat_fn!(creat64);

/// Runs a changing call on the store.
fn change(f: impl FnOnce() -> FsResult<()>) -> c_int {
    answer(-1, || {
        may_change()?;
        f().map(|_| 0)
    })
}

#[no_mangle]
pub unsafe extern "C" fn mkdir(path: Path, mode: c_uint) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { base, path } => change(|| posix()?.mkdir(base, &path, mode).map(|_| ())),
        Route::Host => forward!(mkdir: fn(Path, c_uint) -> c_int, -1, (path, mode)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn mkdirat(dirfd: c_int, path: Path, mode: c_uint) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(dirfd, path) } {
        Route::Store { base, path } => change(|| posix()?.mkdir(base, &path, mode).map(|_| ())),
        Route::Host => forward!(mkdirat: fn(c_int, Path, c_uint) -> c_int, -1, (dirfd, path, mode)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn unlink(path: Path) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { base, path } => change(|| posix()?.unlink(base, &path)),
        Route::Host => forward!(unlink: fn(Path) -> c_int, -1, (path)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: Path, flags: c_int) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(dirfd, path) } {
        Route::Store { base, path } => change(|| match flags {
            0 => posix()?.unlink(base, &path),
            libc::AT_REMOVEDIR => posix()?.rmdir(base, &path),
            _ => Err(FsError::Invalid),
        }),
        Route::Host => forward!(unlinkat: fn(c_int, Path, c_int) -> c_int, -1, (dirfd, path, flags)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn rmdir(path: Path) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { base, path } => change(|| posix()?.rmdir(base, &path)),
        Route::Host => forward!(rmdir: fn(Path) -> c_int, -1, (path)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn remove(path: Path) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { base, path } => change(|| {
            let p = posix()?;
            match p.unlink(base, &path) {
                Err(FsError::IsDir) => p.rmdir(base, &path),
                r => r,
            }
        }),
        Route::Host => forward!(remove: fn(Path) -> c_int, -1, (path)),
    }
}

/// A name in the store: the directory a relative path starts from, and the path.
type Named = (Ino, Vec<u8>);

/// Two routes of a two-name call: both in the store, both outside, or
/// across (`EXDEV`, which `mv` answers by copying).
///
/// # Safety
/// Both paths are `NULL` or valid NUL-terminated strings.
unsafe fn two(fd1: c_int, p1: Path, fd2: c_int, p2: Path) -> Option<FsResult<(Named, Named)>> {
    // SAFETY: per the contract.
    match unsafe { (route(fd1, p1), route(fd2, p2)) } {
        (Route::Host, Route::Host) => None,
        (Route::Store { base: b1, path: a }, Route::Store { base: b2, path: b }) => Some(Ok(((b1, a), (b2, b)))),
        _ => Some(Err(FsError::CrossDevice)),
    }
}

fn rename_in_store(names: FsResult<(Named, Named)>, flags: c_uint) -> c_int {
    change(|| {
        let ((b1, a), (b2, b)) = names?;
        posix()?.rename(b1, &a, b2, &b, flags)
    })
}

#[no_mangle]
pub unsafe extern "C" fn rename(old: Path, new: Path) -> c_int {
    // SAFETY: the caller's paths.
    match unsafe { two(libc::AT_FDCWD, old, libc::AT_FDCWD, new) } {
        Some(names) => rename_in_store(names, 0),
        None => forward!(rename: fn(Path, Path) -> c_int, -1, (old, new)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn renameat(fd1: c_int, old: Path, fd2: c_int, new: Path) -> c_int {
    // SAFETY: the caller's paths.
    match unsafe { two(fd1, old, fd2, new) } {
        Some(names) => rename_in_store(names, 0),
        None => forward!(renameat: fn(c_int, Path, c_int, Path) -> c_int, -1, (fd1, old, fd2, new)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn renameat2(fd1: c_int, old: Path, fd2: c_int, new: Path, flags: c_uint) -> c_int {
    // SAFETY: the caller's paths.
    match unsafe { two(fd1, old, fd2, new) } {
        Some(names) => rename_in_store(names, flags),
        None => forward!(renameat2: fn(c_int, Path, c_int, Path, c_uint) -> c_int, -1, (fd1, old, fd2, new, flags)),
    }
}

use crate::state::c_bytes as bytes;

#[no_mangle]
pub unsafe extern "C" fn symlink(target: Path, path: Path) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        // SAFETY: the caller's target string.
        Route::Store { base, path } => change(|| posix()?.symlink(unsafe { bytes(target)? }, base, &path).map(|_| ())),
        Route::Host => forward!(symlink: fn(Path, Path) -> c_int, -1, (target, path)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn symlinkat(target: Path, dirfd: c_int, path: Path) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(dirfd, path) } {
        // SAFETY: the caller's target string.
        Route::Store { base, path } => change(|| posix()?.symlink(unsafe { bytes(target)? }, base, &path).map(|_| ())),
        Route::Host => forward!(symlinkat: fn(Path, c_int, Path) -> c_int, -1, (target, dirfd, path)),
    }
}

fn readlink_in_store(base: Ino, path: &[u8], buf: *mut c_char, size: usize) -> isize {
    answer(-1, || {
        if size == 0 {
            return Err(FsError::Invalid);
        }
        let t = posix()?.readlink(base, path)?;
        let n = t.len().min(size);
        // SAFETY: the caller's buffer holds `size` bytes; `n <= size`.
        unsafe { std::ptr::copy_nonoverlapping(t.as_ptr(), buf.cast(), n) };
        Ok(n as isize)
    })
}

#[no_mangle]
pub unsafe extern "C" fn readlink(path: Path, buf: *mut c_char, size: usize) -> isize {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { base, path } => readlink_in_store(base, &path, buf, size),
        Route::Host => forward!(readlink: fn(Path, *mut c_char, usize) -> isize, -1, (path, buf, size)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn readlinkat(dirfd: c_int, path: Path, buf: *mut c_char, size: usize) -> isize {
    // SAFETY: the caller's path.
    match unsafe { route(dirfd, path) } {
        Route::Store { base, path } => readlink_in_store(base, &path, buf, size),
        Route::Host => forward!(readlinkat: fn(c_int, Path, *mut c_char, usize) -> isize, -1, (dirfd, path, buf, size)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn link(old: Path, new: Path) -> c_int {
    // SAFETY: the caller's paths.
    match unsafe { two(libc::AT_FDCWD, old, libc::AT_FDCWD, new) } {
        Some(names) => change(|| {
            let ((b1, a), (b2, b)) = names?;
            posix()?.link(b1, &a, b2, &b, false).map(|_| ())
        }),
        None => forward!(link: fn(Path, Path) -> c_int, -1, (old, new)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn linkat(fd1: c_int, old: Path, fd2: c_int, new: Path, flags: c_int) -> c_int {
    // SAFETY: the caller's paths.
    match unsafe { two(fd1, old, fd2, new) } {
        Some(names) => change(|| {
            if flags & !libc::AT_SYMLINK_FOLLOW != 0 {
                return Err(FsError::NotSupported);
            }
            let ((b1, a), (b2, b)) = names?;
            posix()?.link(b1, &a, b2, &b, flags & libc::AT_SYMLINK_FOLLOW != 0).map(|_| ())
        }),
        None => forward!(linkat: fn(c_int, Path, c_int, Path, c_int) -> c_int, -1, (fd1, old, fd2, new, flags)),
    }
}

/// Applies `set` to the inode `path` names, or to descriptor `dirfd`'s
/// inode for an empty path with `AT_EMPTY_PATH`.
fn set_in_store(base: Ino, path: &[u8], flags: c_int, set: SetAttr) -> c_int {
    change(|| {
        let p = posix()?;
        if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            return set_attr(p.fs(), p.fs().getattr(base)?, set).map(|_| ());
        }
        p.set_attr(base, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, set).map(|_| ())
    })
}

fn set_on_file(f: &OpenFile, set: SetAttr) -> c_int {
    change(|| set_attr(f.fs(), f.stat()?, set).map(|_| ()))
}

fn mode_set(mode: c_uint) -> SetAttr {
    SetAttr { mode: Some(mode & 0o7777), ..SetAttr::default() }
}

fn owner_set(uid: libc::uid_t, gid: libc::gid_t) -> SetAttr {
    SetAttr {
        uid: (uid != libc::uid_t::MAX).then_some(uid),
        gid: (gid != libc::gid_t::MAX).then_some(gid),
        ..SetAttr::default()
    }
}

#[no_mangle]
pub unsafe extern "C" fn chmod(path: Path, mode: c_uint) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { base, path } => set_in_store(base, &path, 0, mode_set(mode)),
        Route::Host => forward!(chmod: fn(Path, c_uint) -> c_int, -1, (path, mode)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn fchmodat(dirfd: c_int, path: Path, mode: c_uint, flags: c_int) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(dirfd, path) } {
        Route::Store { base, path } => set_in_store(base, &path, flags, mode_set(mode)),
        Route::Host => forward!(fchmodat: fn(c_int, Path, c_uint, c_int) -> c_int, -1, (dirfd, path, mode, flags)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn fchmod(fd: c_int, mode: c_uint) -> c_int {
    match file(fd) {
        Some(f) => set_on_file(&f, mode_set(mode)),
        None => forward!(fchmod: fn(c_int, c_uint) -> c_int, -1, (fd, mode)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn chown(path: Path, uid: libc::uid_t, gid: libc::gid_t) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { base, path } => set_in_store(base, &path, 0, owner_set(uid, gid)),
        Route::Host => forward!(chown: fn(Path, libc::uid_t, libc::gid_t) -> c_int, -1, (path, uid, gid)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn lchown(path: Path, uid: libc::uid_t, gid: libc::gid_t) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { base, path } => set_in_store(base, &path, libc::AT_SYMLINK_NOFOLLOW, owner_set(uid, gid)),
        Route::Host => forward!(lchown: fn(Path, libc::uid_t, libc::gid_t) -> c_int, -1, (path, uid, gid)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn fchownat(dirfd: c_int, path: Path, uid: libc::uid_t, gid: libc::gid_t, flags: c_int) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(dirfd, path) } {
        Route::Store { base, path } => set_in_store(base, &path, flags, owner_set(uid, gid)),
        Route::Host => {
            forward!(fchownat: fn(c_int, Path, libc::uid_t, libc::gid_t, c_int) -> c_int, -1, (dirfd, path, uid, gid, flags))
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn fchown(fd: c_int, uid: libc::uid_t, gid: libc::gid_t) -> c_int {
    match file(fd) {
        Some(f) => set_on_file(&f, owner_set(uid, gid)),
        None => forward!(fchown: fn(c_int, libc::uid_t, libc::gid_t) -> c_int, -1, (fd, uid, gid)),
    }
}

/// The times of `utimensat`: `NULL` is "both now".
///
/// # Safety
/// `times` is `NULL` or points to two timespecs.
unsafe fn times_set(times: *const libc::timespec) -> FsResult<SetAttr> {
    if times.is_null() {
        let now = Some(magicfs_core::TimeSet::Now);
        return Ok(SetAttr { atime: now, mtime: now, ..SetAttr::default() });
    }
    // SAFETY: per the contract.
    let t = unsafe { std::slice::from_raw_parts(times, 2) };
    Ok(SetAttr { atime: time_set(&t[0])?, mtime: time_set(&t[1])?, ..SetAttr::default() })
}

#[no_mangle]
pub unsafe extern "C" fn utimensat(dirfd: c_int, path: Path, times: *const libc::timespec, flags: c_int) -> c_int {
    if path.is_null() {
        // Linux: a null path sets the times of `dirfd` itself.
        if let Some(f) = file(dirfd) {
            // SAFETY: the caller's times.
            return match unsafe { times_set(times) } {
                Ok(set) => set_on_file(&f, set),
                Err(e) => answer(-1, || Err(e)),
            };
        }
    }
    // SAFETY: the caller's path.
    match unsafe { route(dirfd, path) } {
        // SAFETY: the caller's times.
        Route::Store { base, path } => match unsafe { times_set(times) } {
            Ok(set) => set_in_store(base, &path, flags, set),
            Err(e) => answer(-1, || Err(e)),
        },
        Route::Host => {
            forward!(utimensat: fn(c_int, Path, *const libc::timespec, c_int) -> c_int, -1, (dirfd, path, times, flags))
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn futimens(fd: c_int, times: *const libc::timespec) -> c_int {
    match file(fd) {
        // SAFETY: the caller's times.
        Some(f) => match unsafe { times_set(times) } {
            Ok(set) => set_on_file(&f, set),
            Err(e) => answer(-1, || Err(e)),
        },
        None => forward!(futimens: fn(c_int, *const libc::timespec) -> c_int, -1, (fd, times)),
    }
}

/// `utimes`' microsecond times as `utimensat`'s.
///
/// # Safety
/// `tv` is `NULL` or points to two timevals.
unsafe fn from_timevals(tv: *const libc::timeval) -> Option<[libc::timespec; 2]> {
    if tv.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    let t = unsafe { std::slice::from_raw_parts(tv, 2) };
    let ts = |t: &libc::timeval| libc::timespec { tv_sec: t.tv_sec, tv_nsec: t.tv_usec * 1000 };
    Some([ts(&t[0]), ts(&t[1])])
}

#[no_mangle]
pub unsafe extern "C" fn utimes(path: Path, tv: *const libc::timeval) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { .. } => {
            // SAFETY: the caller's times.
            let ts = unsafe { from_timevals(tv) };
            let p = ts.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
            // SAFETY: the caller's path; `p` is null or two timespecs.
            unsafe { utimensat(libc::AT_FDCWD, path, p, 0) }
        }
        Route::Host => forward!(utimes: fn(Path, *const libc::timeval) -> c_int, -1, (path, tv)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn utime(path: Path, times: *const libc::utimbuf) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { .. } => {
            // SAFETY: `times` is null or the caller's utimbuf.
            let ts = unsafe { times.as_ref() }.map(|t| {
                [libc::timespec { tv_sec: t.actime, tv_nsec: 0 }, libc::timespec { tv_sec: t.modtime, tv_nsec: 0 }]
            });
            let p = ts.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
            // SAFETY: the caller's path; `p` is null or two timespecs.
            unsafe { utimensat(libc::AT_FDCWD, path, p, 0) }
        }
        Route::Host => forward!(utime: fn(Path, *const libc::utimbuf) -> c_int, -1, (path, times)),
    }
}

macro_rules! truncate_fn {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: Path, len: libc::off_t) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { base, path } => {
                    let size = u64::try_from(len).ok();
                    change(|| {
                        let set = SetAttr { size: Some(size.ok_or(FsError::Invalid)?), ..SetAttr::default() };
                        posix()?.set_attr(base, &path, true, set).map(|_| ())
                    })
                }
                Route::Host => forward!($name: fn(Path, libc::off_t) -> c_int, -1, (path, len)),
            }
        }
    };
}
truncate_fn!(truncate);
truncate_fn!(truncate64);

#[no_mangle]
pub unsafe extern "C" fn access(path: Path, mode: c_int) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { base, path } => answer(-1, || posix()?.access(base, &path, mode, true).map(|_| 0)),
        Route::Host => forward!(access: fn(Path, c_int) -> c_int, -1, (path, mode)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn faccessat(dirfd: c_int, path: Path, mode: c_int, flags: c_int) -> c_int {
    // SAFETY: the caller's path.
    match unsafe { route(dirfd, path) } {
        Route::Store { base, path } => {
            answer(-1, || posix()?.access(base, &path, mode, flags & libc::AT_SYMLINK_NOFOLLOW == 0).map(|_| 0))
        }
        Route::Host => forward!(faccessat: fn(c_int, Path, c_int, c_int) -> c_int, -1, (dirfd, path, mode, flags)),
    }
}

/// The inode an xattr call names: a path in the store, or a store descriptor.
enum On {
    Path(Ino, Vec<u8>, bool),
    File(Ino),
}

fn xattr_ino(on: &On) -> FsResult<Attr> {
    let p = posix()?;
    match on {
        On::Path(base, path, follow) => p.stat(*base, path, *follow),
        On::File(ino) => p.fs().getattr(*ino),
    }
}

/// Copies `data` out as the xattr calls do: the size alone for a zero-size
/// buffer, `ERANGE` when it does not fit.
fn copy_out(data: &[u8], buf: *mut c_void, size: usize) -> FsResult<isize> {
    if size == 0 {
        return Ok(data.len() as isize);
    }
    if data.len() > size {
        return Err(FsError::Range);
    }
    if buf.is_null() {
        return Err(FsError::Fault);
    }
    // SAFETY: the caller's buffer holds `size >= data.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast(), data.len()) };
    Ok(data.len() as isize)
}

fn getxattr_on(on: On, name: Path, buf: *mut c_void, size: usize) -> isize {
    answer(-1, || {
        // SAFETY: the caller's name.
        let name = unsafe { bytes(name)? };
        let v = posix()?.fs().getxattr(xattr_ino(&on)?.ino, name)?;
        copy_out(&v, buf, size)
    })
}

fn setxattr_on(on: On, name: Path, value: *const c_void, size: usize, flags: c_int) -> c_int {
    change(|| {
        // SAFETY: the caller's name and value.
        let (name, value) = unsafe { (bytes(name)?, crate::state::c_slice(value, size)?) };
        posix()?.fs().setxattr(xattr_ino(&on)?.ino, name, value, flags)
    })
}

fn listxattr_on(on: On, buf: *mut c_char, size: usize) -> isize {
    answer(-1, || {
        let names = posix()?.fs().listxattr(xattr_ino(&on)?.ino)?;
        let mut all = Vec::new();
        for n in names {
            all.extend_from_slice(&n);
            all.push(0);
        }
        copy_out(&all, buf.cast(), size)
    })
}

fn removexattr_on(on: On, name: Path) -> c_int {
    change(|| {
        // SAFETY: the caller's name.
        let name = unsafe { bytes(name)? };
        posix()?.fs().removexattr(xattr_ino(&on)?.ino, name)
    })
}

macro_rules! xattr_path_fns {
    ($get:ident, $set:ident, $list:ident, $remove:ident, $follow:expr) => {
        #[no_mangle]
        pub unsafe extern "C" fn $get(path: Path, name: Path, buf: *mut c_void, size: usize) -> isize {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { base, path } => getxattr_on(On::Path(base, path, $follow), name, buf, size),
                Route::Host => forward!($get: fn(Path, Path, *mut c_void, usize) -> isize, -1, (path, name, buf, size)),
            }
        }

        #[no_mangle]
        pub unsafe extern "C" fn $set(path: Path, name: Path, value: *const c_void, size: usize, flags: c_int) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { base, path } => setxattr_on(On::Path(base, path, $follow), name, value, size, flags),
                Route::Host => forward!($set: fn(Path, Path, *const c_void, usize, c_int) -> c_int, -1, (path, name, value, size, flags)),
            }
        }

        #[no_mangle]
        pub unsafe extern "C" fn $list(path: Path, buf: *mut c_char, size: usize) -> isize {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { base, path } => listxattr_on(On::Path(base, path, $follow), buf, size),
                Route::Host => forward!($list: fn(Path, *mut c_char, usize) -> isize, -1, (path, buf, size)),
            }
        }

        #[no_mangle]
        pub unsafe extern "C" fn $remove(path: Path, name: Path) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { base, path } => removexattr_on(On::Path(base, path, $follow), name),
                Route::Host => forward!($remove: fn(Path, Path) -> c_int, -1, (path, name)),
            }
        }
    };
}
xattr_path_fns!(getxattr, setxattr, listxattr, removexattr, true);
xattr_path_fns!(lgetxattr, lsetxattr, llistxattr, lremovexattr, false);

#[no_mangle]
pub unsafe extern "C" fn fgetxattr(fd: c_int, name: Path, buf: *mut c_void, size: usize) -> isize {
    match file(fd) {
        Some(f) => getxattr_on(On::File(f.ino()), name, buf, size),
        None => forward!(fgetxattr: fn(c_int, Path, *mut c_void, usize) -> isize, -1, (fd, name, buf, size)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn fsetxattr(fd: c_int, name: Path, value: *const c_void, size: usize, flags: c_int) -> c_int {
    match file(fd) {
        Some(f) => setxattr_on(On::File(f.ino()), name, value, size, flags),
        None => {
            forward!(fsetxattr: fn(c_int, Path, *const c_void, usize, c_int) -> c_int, -1, (fd, name, value, size, flags))
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn flistxattr(fd: c_int, buf: *mut c_char, size: usize) -> isize {
    match file(fd) {
        Some(f) => listxattr_on(On::File(f.ino()), buf, size),
        None => forward!(flistxattr: fn(c_int, *mut c_char, usize) -> isize, -1, (fd, buf, size)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn fremovexattr(fd: c_int, name: Path) -> c_int {
    match file(fd) {
        Some(f) => removexattr_on(On::File(f.ino()), name),
        None => forward!(fremovexattr: fn(c_int, Path) -> c_int, -1, (fd, name)),
    }
}

fn refuse<T>(fail: T) -> T {
    set_errno(libc::ENOTSUP);
    fail
}

macro_rules! refused_path_fn {
    ($name:ident ( $($arg:ident : $t:ty),* ) ) => {
        /// Not supported under the prefix (`ENOTSUP`).
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: Path $(, $arg: $t)*) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { .. } => refuse(-1),
                Route::Host => forward!($name: fn(Path $(, $t)*) -> c_int, -1, (path $(, $arg)*)),
            }
        }
    };
}
refused_path_fn!(mknod(mode: c_uint, dev: libc::dev_t));
refused_path_fn!(mkfifo(mode: c_uint));
refused_path_fn!(chdir());
refused_path_fn!(chroot());
refused_path_fn!(execve(argv: *const *const c_char, envp: *const *const c_char));
refused_path_fn!(statfs(buf: *mut libc::statfs));
refused_path_fn!(statfs64(buf: *mut libc::statfs64));
refused_path_fn!(statvfs(buf: *mut libc::statvfs));
refused_path_fn!(statvfs64(buf: *mut libc::statvfs64));

macro_rules! refused_at_fn {
    ($name:ident ( $($arg:ident : $t:ty),* ) ) => {
        /// Not supported under the prefix (`ENOTSUP`).
        #[no_mangle]
        pub unsafe extern "C" fn $name(dirfd: c_int, path: Path $(, $arg: $t)*) -> c_int {
            // SAFETY: the caller's path.
            match unsafe { route(dirfd, path) } {
                Route::Store { .. } => refuse(-1),
                Route::Host => forward!($name: fn(c_int, Path $(, $t)*) -> c_int, -1, (dirfd, path $(, $arg)*)),
            }
        }
    };
}
refused_at_fn!(mknodat(mode: c_uint, dev: libc::dev_t));
refused_at_fn!(mkfifoat(mode: c_uint));

macro_rules! refused_fd_fn {
    ($name:ident ( $($arg:ident : $t:ty),* ) ) => {
        /// Not supported on store descriptors (`ENOTSUP`).
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int $(, $arg: $t)*) -> c_int {
            if file(fd).is_some() {
                return refuse(-1);
            }
            forward!($name: fn(c_int $(, $t)*) -> c_int, -1, (fd $(, $arg)*))
        }
    };
}
refused_fd_fn!(fstatfs(buf: *mut libc::statfs));
refused_fd_fn!(fstatfs64(buf: *mut libc::statfs64));
refused_fd_fn!(fstatvfs(buf: *mut libc::statvfs));
refused_fd_fn!(fstatvfs64(buf: *mut libc::statvfs64));
