//! `fopen`, `fopen64` and `fdopen` of store files: the C library's own
//! streams read through its internal calls, which the shim cannot see, so a
//! store file's `FILE *` is made with `fopencookie` over the shim's `read`,
//! `write`, `lseek` and `close` (its `fileno` is -1).

use crate::state::{answer, file, install, may_change, posix, route, set_errno, Route};
use magicfs_posix::FsError;
use std::ffi::{c_char, c_int, c_void};

type File = *mut libc::FILE;

#[repr(C)]
struct CookieIo {
    read: Option<unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> isize>,
    write: Option<unsafe extern "C" fn(*mut c_void, *const c_char, usize) -> isize>,
    seek: Option<unsafe extern "C" fn(*mut c_void, *mut i64, c_int) -> c_int>,
    close: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
}

extern "C" {
    fn fopencookie(cookie: *mut c_void, mode: *const c_char, io: CookieIo) -> File;
}

fn fd_of(cookie: *mut c_void) -> c_int {
    cookie as usize as c_int
}

unsafe extern "C" fn cookie_read(cookie: *mut c_void, buf: *mut c_char, size: usize) -> isize {
    // SAFETY: stdio's buffer of `size` bytes.
    unsafe { crate::fd_calls::read(fd_of(cookie), buf.cast(), size) }
}

unsafe extern "C" fn cookie_write(cookie: *mut c_void, buf: *const c_char, size: usize) -> isize {
    // SAFETY: stdio's buffer of `size` bytes.
    let n = unsafe { crate::fd_calls::write(fd_of(cookie), buf.cast(), size) };
    // stdio reads 0 as an error; -1 works too, but 0 keeps errno as set.
    n.max(0)
}

unsafe extern "C" fn cookie_seek(cookie: *mut c_void, off: *mut i64, whence: c_int) -> c_int {
    // SAFETY: stdio passes a valid pointer.
    let Some(off) = (unsafe { off.as_mut() }) else { return -1 };
    // SAFETY: a plain call on our descriptor.
    let r = unsafe { crate::fd_calls::lseek(fd_of(cookie), *off, whence) };
    if r < 0 {
        return -1;
    }
    *off = r;
    0
}

unsafe extern "C" fn cookie_close(cookie: *mut c_void) -> c_int {
    // SAFETY: a plain call on our descriptor.
    unsafe { crate::fd_calls::close(fd_of(cookie)) }
}

/// A stream over store descriptor `fd` (closing the stream closes it).
fn stream(fd: c_int, mode: *const c_char) -> File {
    let io = CookieIo {
        read: Some(cookie_read),
        write: Some(cookie_write),
        seek: Some(cookie_seek),
        close: Some(cookie_close),
    };
    // SAFETY: the cookie is a descriptor number, the functions match fopencookie's contract.
    unsafe { fopencookie(fd as usize as *mut c_void, mode, io) }
}

/// `fopen`'s mode string as `open` flags.
fn flags_of(mode: &[u8]) -> Option<c_int> {
    let plus = mode.contains(&b'+');
    let mut f = match (mode.first()?, plus) {
        (b'r', false) => libc::O_RDONLY,
        (b'r', true) => libc::O_RDWR,
        (b'w', p) => libc::O_CREAT | libc::O_TRUNC | if p { libc::O_RDWR } else { libc::O_WRONLY },
        (b'a', p) => libc::O_CREAT | libc::O_APPEND | if p { libc::O_RDWR } else { libc::O_WRONLY },
        _ => return None,
    };
    if mode.contains(&b'x') {
        f |= libc::O_EXCL;
    }
    if mode.contains(&b'e') {
        f |= libc::O_CLOEXEC;
    }
    Some(f)
}

macro_rules! fopen_fn {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, mode: *const c_char) -> File {
            // SAFETY: the caller's path.
            match unsafe { route(libc::AT_FDCWD, path) } {
                Route::Store { base, path } => answer(std::ptr::null_mut(), || {
                    // SAFETY: the caller's mode string.
                    let m = unsafe { crate::state::c_bytes(mode)? };
                    let flags = flags_of(m).ok_or(FsError::Invalid)?;
                    if flags & (libc::O_CREAT | libc::O_TRUNC) != 0 {
                        may_change()?;
                    }
                    let f = posix()?.open(base, &path, flags, 0o666)?;
                    let fd = install(f, flags & libc::O_CLOEXEC != 0)?;
                    let s = stream(fd, mode);
                    if s.is_null() {
                        // SAFETY: closing the descriptor just made.
                        unsafe { crate::fd_calls::close(fd) };
                        return Err(FsError::NoSpace);
                    }
                    Ok(s)
                }),
                Route::Host => forward!($name: fn(*const c_char, *const c_char) -> File, std::ptr::null_mut(), (path, mode)),
            }
        }
    };
}
fopen_fn!(fopen);
fopen_fn!(fopen64);

#[no_mangle]
pub unsafe extern "C" fn fdopen(fd: c_int, mode: *const c_char) -> File {
    if file(fd).is_some() {
        let s = stream(fd, mode);
        if s.is_null() {
            set_errno(libc::ENOMEM);
        }
        return s;
    }
    forward!(fdopen: fn(c_int, *const c_char) -> File, std::ptr::null_mut(), (fd, mode))
}

/// Reopening a stream onto a store file is not supported (`ENOTSUP`).
#[no_mangle]
pub unsafe extern "C" fn freopen(path: *const c_char, mode: *const c_char, f: File) -> File {
    // SAFETY: the caller's path.
    if let Route::Store { .. } = unsafe { route(libc::AT_FDCWD, path) } {
        set_errno(libc::ENOTSUP);
        return std::ptr::null_mut();
    }
    forward!(freopen: fn(*const c_char, *const c_char, File) -> File, std::ptr::null_mut(), (path, mode, f))
}
