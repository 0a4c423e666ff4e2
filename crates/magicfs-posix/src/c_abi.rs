//! What every C entry point of the bindings needs: `errno`, panics kept
//! from crossing into C, and the caller's strings and buffers.

use magicfs_types::{FsError, FsResult};
use std::ffi::{c_char, c_int, c_void, CStr};

/// Sets the calling thread's `errno`.
pub fn set_errno(e: c_int) {
    // SAFETY: errno is thread-local; the pointer is always valid.
    unsafe { *libc::__errno_location() = e };
}

/// Runs `f`; an error sets `errno` and returns `fail`; a panic is `EIO`.
pub fn answer<T>(fail: T, f: impl FnOnce() -> FsResult<T>) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_errno(e.errno());
            fail
        }
        Err(_) => {
            set_errno(libc::EIO);
            fail
        }
    }
}

/// The bytes of a C string, `None` for `NULL`.
///
/// # Safety
/// `p` is `NULL` or a valid NUL-terminated string that outlives `'a`.
pub unsafe fn c_str<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// A caller's buffer of `len` bytes to read from (`EFAULT` for `NULL` unless empty).
///
/// # Safety
/// `p` is valid for reading `len` bytes for `'a`.
pub unsafe fn c_slice<'a>(p: *const c_void, len: usize) -> FsResult<&'a [u8]> {
    match (p.is_null(), len) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(FsError::Fault),
        // SAFETY: per the contract.
        _ => Ok(unsafe { std::slice::from_raw_parts(p.cast(), len) }),
    }
}

/// A caller's buffer of `len` bytes to write into (`EFAULT` for `NULL` unless empty).
///
/// # Safety
/// `p` is valid for writing `len` bytes for `'a`, and nothing else uses it meanwhile.
pub unsafe fn c_slice_mut<'a>(p: *mut c_void, len: usize) -> FsResult<&'a mut [u8]> {
    match (p.is_null(), len) {
        (_, 0) => Ok(&mut []),
        (true, _) => Err(FsError::Fault),
        // SAFETY: per the contract.
        _ => Ok(unsafe { std::slice::from_raw_parts_mut(p.cast(), len) }),
    }
}
