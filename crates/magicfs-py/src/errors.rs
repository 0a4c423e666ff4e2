//! Errors as Python exceptions: a filesystem error is the `OSError`
//! subclass of its errno (`FileNotFoundError`, `IsADirectoryError`, …) with
//! the path as `filename`; generation failures are `GenerationError` (an
//! `OSError`); a bad snapshot document is `ValueError`.

use magicfs_core::OpenError;
use magicfs_gen::GenError;
use magicfs_posix::FsError;
use magicfs_snapshot::SnapshotError;
use pyo3::exceptions::{PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    _magicfs,
    GenerationError,
    PyOSError,
    "Content could not be generated (no model, the model failed, no prompt). `errno` is EIO, or ENODATA when nothing says what to generate."
);

fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    // "No such file or directory (os error 2)" → "No such file or directory"
    s.split(" (os error").next().unwrap_or(&s).to_string()
}

/// `OSError(errno, strerror, path)`, which Python turns into the matching subclass.
pub fn os_error(e: FsError, path: &str) -> PyErr {
    let errno = e.errno();
    PyOSError::new_err((errno, strerror(errno), path.to_string()))
}

/// `OSError(errno, strerror, src, None, dst)` for calls with two paths.
pub fn os_error2(e: FsError, src: &str, dst: &str) -> PyErr {
    let errno = e.errno();
    PyOSError::new_err((errno, strerror(errno), src.to_string(), Option::<i32>::None, dst.to_string()))
}

/// An `OSError` with errno `errno` and a message of our own.
pub fn os_error_msg(errno: i32, msg: String, path: &str) -> PyErr {
    PyOSError::new_err((errno, msg, path.to_string()))
}

/// A failed call on a host file (a snapshot document): `what` it was doing.
pub fn host_error(e: std::io::Error, what: &str, path: &str) -> PyErr {
    os_error_msg(e.raw_os_error().unwrap_or(libc::EIO), format!("{what} {path}: {e}"), path)
}

/// Why a store could not be opened.
pub fn open_error(e: OpenError, path: &str) -> PyErr {
    let errno = match &e {
        OpenError::Locked { .. } => libc::EBUSY,
        OpenError::Missing(_) => libc::ENOENT,
        OpenError::NotAStore(_) => libc::ENOTDIR,
        OpenError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        _ => libc::EIO,
    };
    os_error_msg(errno, e.to_string(), path)
}

/// A generation failure for `path`.
pub fn gen_error(e: GenError, path: &str) -> PyErr {
    match e {
        GenError::Fs(f) => os_error(f, path),
        e => GenerationError::new_err((e.errno(), format!("generating {path}: {e}"), path.to_string())),
    }
}

/// A failed export or import.
pub fn snapshot_error(e: SnapshotError, path: &str) -> PyErr {
    let msg = e.to_string();
    let errno = match &e {
        SnapshotError::Invalid { .. } | SnapshotError::Unsupported { .. } => {
            return PyValueError::new_err(format!("{path}: {msg}"))
        }
        SnapshotError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        SnapshotError::NotEmpty(_) => libc::EEXIST,
        SnapshotError::InUse { .. } => libc::EBUSY,
        _ => libc::EIO,
    };
    os_error_msg(errno, msg, path)
}

/// The index did not become current in time.
pub fn index_timeout(secs: f64) -> PyErr {
    PyTimeoutError::new_err(format!("the search index was still being built after {secs:.0} s; try again later"))
}
