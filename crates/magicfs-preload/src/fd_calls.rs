//! Calls on descriptors: I/O, offsets, duplication, `fcntl`, closing, and
//! the descriptor calls the shim refuses for store files (`ENOTSUP`).

use crate::state::{answer, file, forked, may_change, set_errno, uninstall, FDS};
use magicfs_posix::{FsError, FsResult, OpenFile};
use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::sync::Arc;

type Iov = *const libc::iovec;

use crate::state::c_slice as inp;
use magicfs_posix::c_abi::c_slice_mut as out;

/// # Safety
/// `iov` holds `n` valid iovecs.
unsafe fn iovecs<'a>(iov: Iov, n: c_int) -> FsResult<&'a [libc::iovec]> {
    match (iov.is_null(), n) {
        (_, 0) => Ok(&[]),
        (_, n) if !(0..=libc::UIO_MAXIOV).contains(&n) => Err(FsError::Invalid),
        (true, _) => Err(FsError::Fault),
        // SAFETY: per the contract.
        _ => Ok(unsafe { std::slice::from_raw_parts(iov, n as usize) }),
    }
}

fn offset(o: libc::off_t) -> FsResult<u64> {
    u64::try_from(o).map_err(|_| FsError::Invalid)
}

fn read_into(f: &OpenFile, buf: &mut [u8], at: Option<u64>) -> FsResult<usize> {
    match at {
        Some(o) => f.pread(buf, o),
        None => f.read(buf),
    }
}

fn write_from(f: &OpenFile, buf: &[u8], at: Option<u64>) -> FsResult<usize> {
    may_change()?;
    match at {
        Some(o) => f.pwrite(buf, o),
        None => f.write(buf),
    }
}

/// Vectored read: fills each buffer in turn, stopping at a short read.
///
/// # Safety
/// `iov` holds `n` valid iovecs.
unsafe fn readv_file(f: &OpenFile, iov: Iov, n: c_int, mut at: Option<u64>) -> FsResult<usize> {
    let mut total = 0;
    // SAFETY: per the contract.
    for v in unsafe { iovecs(iov, n)? } {
        // SAFETY: each iovec describes a buffer of the caller's.
        let buf = unsafe { out(v.iov_base, v.iov_len)? };
        let got = read_into(f, buf, at)?;
        total += got;
        at = at.map(|o| o + got as u64);
        if got < buf.len() {
            break;
        }
    }
    Ok(total)
}

/// Vectored write: writes each buffer in turn.
///
/// # Safety
/// `iov` holds `n` valid iovecs.
unsafe fn writev_file(f: &OpenFile, iov: Iov, n: c_int, mut at: Option<u64>) -> FsResult<usize> {
    let mut total = 0;
    // SAFETY: per the contract.
    for v in unsafe { iovecs(iov, n)? } {
        // SAFETY: each iovec describes a buffer of the caller's.
        let buf = unsafe { inp(v.iov_base, v.iov_len)? };
        let put = write_from(f, buf, at)?;
        total += put;
        at = at.map(|o| o + put as u64);
    }
    Ok(total)
}

#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: usize) -> isize {
    match file(fd) {
        // SAFETY: the caller's buffer of `count` bytes.
        Some(f) => answer(-1, || Ok(read_into(&f, unsafe { out(buf, count)? }, None)? as isize)),
        None => forward!(read: fn(c_int, *mut c_void, usize) -> isize, -1, (fd, buf, count)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: usize) -> isize {
    match file(fd) {
        // SAFETY: the caller's buffer of `count` bytes.
        Some(f) => answer(-1, || Ok(write_from(&f, unsafe { inp(buf, count)? }, None)? as isize)),
        None => forward!(write: fn(c_int, *const c_void, usize) -> isize, -1, (fd, buf, count)),
    }
}

macro_rules! positioned {
    ($read:ident, $write:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $read(fd: c_int, buf: *mut c_void, count: usize, off: libc::off_t) -> isize {
            match file(fd) {
                Some(f) => answer(-1, || {
                    // SAFETY: the caller's buffer of `count` bytes.
                    Ok(read_into(&f, unsafe { out(buf, count)? }, Some(offset(off)?))? as isize)
                }),
                None => forward!($read: fn(c_int, *mut c_void, usize, libc::off_t) -> isize, -1, (fd, buf, count, off)),
            }
        }

        #[no_mangle]
        pub unsafe extern "C" fn $write(fd: c_int, buf: *const c_void, count: usize, off: libc::off_t) -> isize {
            match file(fd) {
                Some(f) => answer(-1, || {
                    // SAFETY: the caller's buffer of `count` bytes.
                    Ok(write_from(&f, unsafe { inp(buf, count)? }, Some(offset(off)?))? as isize)
                }),
                None => {
                    forward!($write: fn(c_int, *const c_void, usize, libc::off_t) -> isize, -1, (fd, buf, count, off))
                }
            }
        }
    };
}
positioned!(pread, pwrite);
positioned!(pread64, pwrite64);

#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: Iov, n: c_int) -> isize {
    match file(fd) {
        // SAFETY: the caller's iovecs.
        Some(f) => answer(-1, || Ok(unsafe { readv_file(&f, iov, n, None)? } as isize)),
        None => forward!(readv: fn(c_int, Iov, c_int) -> isize, -1, (fd, iov, n)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: Iov, n: c_int) -> isize {
    match file(fd) {
        // SAFETY: the caller's iovecs.
        Some(f) => answer(-1, || Ok(unsafe { writev_file(&f, iov, n, None)? } as isize)),
        None => forward!(writev: fn(c_int, Iov, c_int) -> isize, -1, (fd, iov, n)),
    }
}

/// `preadv2`/`pwritev2` read an offset of -1 as "the descriptor's offset".
fn at_or_current(off: libc::off_t) -> FsResult<Option<u64>> {
    if off == -1 {
        Ok(None)
    } else {
        offset(off).map(Some)
    }
}

macro_rules! vectored_at {
    ($read:ident, $write:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $read(fd: c_int, iov: Iov, n: c_int, off: libc::off_t) -> isize {
            match file(fd) {
                // SAFETY: the caller's iovecs.
                Some(f) => answer(-1, || Ok(unsafe { readv_file(&f, iov, n, Some(offset(off)?))? } as isize)),
                None => forward!($read: fn(c_int, Iov, c_int, libc::off_t) -> isize, -1, (fd, iov, n, off)),
            }
        }

        #[no_mangle]
        pub unsafe extern "C" fn $write(fd: c_int, iov: Iov, n: c_int, off: libc::off_t) -> isize {
            match file(fd) {
                // SAFETY: the caller's iovecs.
                Some(f) => answer(-1, || Ok(unsafe { writev_file(&f, iov, n, Some(offset(off)?))? } as isize)),
                None => forward!($write: fn(c_int, Iov, c_int, libc::off_t) -> isize, -1, (fd, iov, n, off)),
            }
        }
    };
}
vectored_at!(preadv, pwritev);
vectored_at!(preadv64, pwritev64);

macro_rules! vectored_flags {
    ($read:ident, $write:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $read(fd: c_int, iov: Iov, n: c_int, off: libc::off_t, flags: c_int) -> isize {
            match file(fd) {
                // SAFETY: the caller's iovecs.
                Some(f) => answer(-1, || Ok(unsafe { readv_file(&f, iov, n, at_or_current(off)?)? } as isize)),
                None => forward!($read: fn(c_int, Iov, c_int, libc::off_t, c_int) -> isize, -1, (fd, iov, n, off, flags)),
            }
        }

        #[no_mangle]
        pub unsafe extern "C" fn $write(fd: c_int, iov: Iov, n: c_int, off: libc::off_t, flags: c_int) -> isize {
            match file(fd) {
                // SAFETY: the caller's iovecs.
                Some(f) => answer(-1, || Ok(unsafe { writev_file(&f, iov, n, at_or_current(off)?)? } as isize)),
                None => {
                    forward!($write: fn(c_int, Iov, c_int, libc::off_t, c_int) -> isize, -1, (fd, iov, n, off, flags))
                }
            }
        }
    };
}
vectored_flags!(preadv2, pwritev2);
vectored_flags!(preadv64v2, pwritev64v2);

macro_rules! seek {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, off: libc::off_t, whence: c_int) -> libc::off_t {
            match file(fd) {
                Some(f) => answer(-1, || Ok(f.seek(off, whence)? as libc::off_t)),
                None => forward!($name: fn(c_int, libc::off_t, c_int) -> libc::off_t, -1, (fd, off, whence)),
            }
        }
    };
}
seek!(lseek);
seek!(lseek64);

#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if FDS.get(fd).is_some() {
        return answer(-1, || uninstall(fd).map(|_| 0));
    }
    forward!(close: fn(c_int) -> c_int, -1, (fd))
}

/// Forgets the store descriptors in `first..=last` that `close_range` is about to close.
fn forget_range(first: u32, last: u32) {
    if FDS.is_empty() {
        return;
    }
    let last = last.min(i32::MAX as u32);
    for fd in first..=last {
        if FDS.get(fd as c_int).is_some() {
            let _ = uninstall(fd as c_int);
        }
        if fd as usize >= magicfs_posix::MAX_DESCRIPTORS {
            break;
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
        forget_range(first, last);
    }
    forward!(close_range: fn(c_uint, c_uint, c_int) -> c_int, -1, (first, last, flags))
}

#[no_mangle]
pub unsafe extern "C" fn closefrom(low: c_int) {
    forget_range(low.max(0) as u32, u32::MAX);
    if let Some(f) = real!(closefrom: fn(c_int) -> ()) {
        // SAFETY: forwarding the caller's argument.
        unsafe { f(low) }
    }
}

/// Enters `new` (just made by the kernel as a copy of `old`'s descriptor)
/// as another number of `old`'s file.
fn share(old: &Arc<OpenFile>, new: c_int) -> c_int {
    if new >= 0 {
        FDS.insert_at(new, old.clone());
    }
    new
}

/// Removes a store descriptor about to be replaced by `dup2`/`dup3`.
fn replace_target(old: c_int, new: c_int) {
    if old != new && FDS.get(new).is_some() {
        if let Some(f) = FDS.remove(new) {
            if !forked() {
                if let Ok(f) = Arc::try_unwrap(f) {
                    let _ = f.close();
                }
            } else {
                std::mem::forget(f);
            }
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    let f = file(fd);
    let new = forward!(dup: fn(c_int) -> c_int, -1, (fd));
    match f {
        Some(f) => share(&f, new),
        None => new,
    }
}

#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let f = file(old);
    replace_target(old, new);
    let r = forward!(dup2: fn(c_int, c_int) -> c_int, -1, (old, new));
    match f {
        Some(f) if old != new => share(&f, r),
        _ => r,
    }
}

#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let f = file(old);
    if old != new {
        replace_target(old, new);
    }
    let r = forward!(dup3: fn(c_int, c_int, c_int) -> c_int, -1, (old, new, flags));
    match f {
        Some(f) => share(&f, r),
        None => r,
    }
}

/// `fcntl` on a store descriptor: duplication and descriptor flags go to the
/// kernel's placeholder, status flags are the file's, locks and the rest are
/// `ENOTSUP`.
unsafe fn fcntl_file(f: Arc<OpenFile>, fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    match cmd {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let new = forward!(fcntl: fn(c_int, c_int, c_ulong) -> c_int, -1, (fd, cmd, arg));
            share(&f, new)
        }
        libc::F_GETFD | libc::F_SETFD => forward!(fcntl: fn(c_int, c_int, c_ulong) -> c_int, -1, (fd, cmd, arg)),
        libc::F_GETFL => f.status_flags(),
        libc::F_SETFL => {
            f.set_status_flags(arg as c_int);
            0
        }
        _ => {
            set_errno(libc::ENOTSUP);
            -1
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    match file(fd) {
        // SAFETY: the caller's arguments.
        Some(f) => unsafe { fcntl_file(f, fd, cmd, arg) },
        None => forward!(fcntl: fn(c_int, c_int, c_ulong) -> c_int, -1, (fd, cmd, arg)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    match file(fd) {
        // SAFETY: the caller's arguments.
        Some(f) => unsafe { fcntl_file(f, fd, cmd, arg) },
        None => forward!(fcntl64: fn(c_int, c_int, c_ulong) -> c_int, -1, (fd, cmd, arg)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    match file(fd) {
        Some(f) => answer(-1, || {
            may_change()?;
            f.sync().map(|_| 0)
        }),
        None => forward!(fsync: fn(c_int) -> c_int, -1, (fd)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    match file(fd) {
        Some(f) => answer(-1, || {
            may_change()?;
            f.sync().map(|_| 0)
        }),
        None => forward!(fdatasync: fn(c_int) -> c_int, -1, (fd)),
    }
}

macro_rules! ftruncate {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, len: libc::off_t) -> c_int {
            match file(fd) {
                Some(f) => answer(-1, || {
                    may_change()?;
                    f.truncate(offset(len)?).map(|_| 0)
                }),
                None => forward!($name: fn(c_int, libc::off_t) -> c_int, -1, (fd, len)),
            }
        }
    };
}
ftruncate!(ftruncate);
ftruncate!(ftruncate64);

macro_rules! fadvise {
    ($name:ident) => {
        /// Advice is accepted and has no effect on store files.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, off: libc::off_t, len: libc::off_t, advice: c_int) -> c_int {
            match file(fd) {
                Some(_) => 0,
                None => forward!($name: fn(c_int, libc::off_t, libc::off_t, c_int) -> c_int, libc::ENOSYS, (fd, off, len, advice)),
            }
        }
    };
}
fadvise!(posix_fadvise);
fadvise!(posix_fadvise64);

#[no_mangle]
pub unsafe extern "C" fn isatty(fd: c_int) -> c_int {
    if file(fd).is_some() {
        set_errno(libc::ENOTTY);
        return 0;
    }
    forward!(isatty: fn(c_int) -> c_int, 0, (fd))
}

#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    if file(fd).is_some() {
        set_errno(libc::ENOTTY);
        return -1;
    }
    forward!(ioctl: fn(c_int, c_ulong, *mut c_void) -> c_int, -1, (fd, request, arg))
}

fn unsupported<T>(fail: T) -> T {
    set_errno(libc::ENOTSUP);
    fail
}

macro_rules! mmap {
    ($name:ident) => {
        /// Store files cannot be mapped (`ENOTSUP`): export a memfd instead.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            addr: *mut c_void,
            len: usize,
            prot: c_int,
            flags: c_int,
            fd: c_int,
            off: libc::off_t,
        ) -> *mut c_void {
            if flags & libc::MAP_ANONYMOUS == 0 && file(fd).is_some() {
                return unsupported(libc::MAP_FAILED);
            }
            forward!($name: fn(*mut c_void, usize, c_int, c_int, c_int, libc::off_t) -> *mut c_void, libc::MAP_FAILED, (addr, len, prot, flags, fd, off))
        }
    };
}
mmap!(mmap);
mmap!(mmap64);

macro_rules! sendfile {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(out: c_int, inp: c_int, off: *mut libc::off_t, count: usize) -> isize {
            if file(out).is_some() || file(inp).is_some() {
                return unsupported(-1);
            }
            forward!($name: fn(c_int, c_int, *mut libc::off_t, usize) -> isize, -1, (out, inp, off, count))
        }
    };
}
sendfile!(sendfile);
sendfile!(sendfile64);

#[no_mangle]
pub unsafe extern "C" fn copy_file_range(
    fd_in: c_int,
    off_in: *mut libc::off_t,
    fd_out: c_int,
    off_out: *mut libc::off_t,
    len: usize,
    flags: c_uint,
) -> isize {
    if file(fd_in).is_some() || file(fd_out).is_some() {
        return unsupported(-1);
    }
    forward!(copy_file_range: fn(c_int, *mut libc::off_t, c_int, *mut libc::off_t, usize, c_uint) -> isize, -1, (fd_in, off_in, fd_out, off_out, len, flags))
}

#[no_mangle]
pub unsafe extern "C" fn splice(
    fd_in: c_int,
    off_in: *mut libc::loff_t,
    fd_out: c_int,
    off_out: *mut libc::loff_t,
    len: usize,
    flags: c_uint,
) -> isize {
    if file(fd_in).is_some() || file(fd_out).is_some() {
        return unsupported(-1);
    }
    forward!(splice: fn(c_int, *mut libc::loff_t, c_int, *mut libc::loff_t, usize, c_uint) -> isize, -1, (fd_in, off_in, fd_out, off_out, len, flags))
}

#[no_mangle]
pub unsafe extern "C" fn fchdir(fd: c_int) -> c_int {
    if file(fd).is_some() {
        return unsupported(-1);
    }
    forward!(fchdir: fn(c_int) -> c_int, -1, (fd))
}

#[no_mangle]
pub unsafe extern "C" fn flock(fd: c_int, op: c_int) -> c_int {
    if file(fd).is_some() {
        return unsupported(-1);
    }
    forward!(flock: fn(c_int, c_int) -> c_int, -1, (fd, op))
}

macro_rules! fallocate {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, mode: c_int, off: libc::off_t, len: libc::off_t) -> c_int {
            if file(fd).is_some() {
                return unsupported(-1);
            }
            forward!($name: fn(c_int, c_int, libc::off_t, libc::off_t) -> c_int, -1, (fd, mode, off, len))
        }
    };
}
fallocate!(fallocate);
fallocate!(fallocate64);

macro_rules! posix_fallocate {
    ($name:ident) => {
        /// Returns the error number (`EOPNOTSUPP` for store files), as POSIX says.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, off: libc::off_t, len: libc::off_t) -> c_int {
            if file(fd).is_some() {
                return libc::EOPNOTSUPP;
            }
            forward!($name: fn(c_int, libc::off_t, libc::off_t) -> c_int, libc::ENOSYS, (fd, off, len))
        }
    };
}
posix_fallocate!(posix_fallocate);
posix_fallocate!(posix_fallocate64);
