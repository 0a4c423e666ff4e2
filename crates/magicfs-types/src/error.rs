//! The filesystem-layer error: one variant per POSIX errno the filesystem
//! returns, plus `Io` for failures of the store underneath.

use std::fmt;

/// Result alias for filesystem operations.
pub type FsResult<T> = Result<T, FsError>;

/// A POSIX-named error of a filesystem operation. `Copy`, protocol-free: the
/// FUSE layer maps it to an errno with [`FsError::errno`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    /// No such file or directory.
    NotFound,
    /// File exists.
    Exists,
    /// Not a directory.
    NotDir,
    /// Is a directory.
    IsDir,
    /// Directory not empty.
    NotEmpty,
    /// Name longer than 255 bytes.
    NameTooLong,
    /// Invalid argument.
    Invalid,
    /// Permission denied (file mode).
    Access,
    /// Operation not permitted (ownership).
    Perm,
    /// No such extended attribute.
    NoAttr,
    /// Value too large for the caller's buffer.
    Range,
    /// Argument list (xattr value) too long.
    TooBig,
    /// File too large.
    FileTooBig,
    /// Too many links.
    TooManyLinks,
    /// Bad file handle.
    BadHandle,
    /// Operation not supported.
    NotSupported,
    /// Cross-device link or rename.
    CrossDevice,
    /// Resource busy.
    Busy,
    /// Read-only file system.
    ReadOnly,
    /// No space left on device.
    NoSpace,
    /// Try again (a non-blocking caller would wait).
    Again,
    /// No data at or after the offset (lseek SEEK_DATA).
    NoData,
    /// Input/output error in the store underneath.
    Io,
    /// Operation interrupted or cancelled.
    Interrupted,
    /// Function not implemented.
    NoSys,
    /// Too many levels of symbolic links.
    Loop,
    /// Bad address (a null buffer handed to a C call).
    Fault,
    /// Too many open files.
    TooManyFiles,
}

impl FsError {
    /// The Linux errno for this error.
    pub fn errno(self) -> i32 {
        use FsError::*;
        match self {
            NotFound => libc::ENOENT,
            Exists => libc::EEXIST,
            NotDir => libc::ENOTDIR,
            IsDir => libc::EISDIR,
            NotEmpty => libc::ENOTEMPTY,
            NameTooLong => libc::ENAMETOOLONG,
            Invalid => libc::EINVAL,
            Access => libc::EACCES,
            Perm => libc::EPERM,
            NoAttr => libc::ENODATA,
            Range => libc::ERANGE,
            TooBig => libc::E2BIG,
            FileTooBig => libc::EFBIG,
            TooManyLinks => libc::EMLINK,
            BadHandle => libc::EBADF,
            NotSupported => libc::EOPNOTSUPP,
            CrossDevice => libc::EXDEV,
            Busy => libc::EBUSY,
            ReadOnly => libc::EROFS,
            NoSpace => libc::ENOSPC,
            Again => libc::EAGAIN,
            NoData => libc::ENXIO,
            Io => libc::EIO,
            Interrupted => libc::EINTR,
            NoSys => libc::ENOSYS,
            Loop => libc::ELOOP,
            Fault => libc::EFAULT,
            TooManyFiles => libc::EMFILE,
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = std::io::Error::from_raw_os_error(self.errno());
        write!(f, "{msg}")
    }
}

impl std::error::Error for FsError {}

impl From<FsError> for std::io::Error {
    fn from(e: FsError) -> Self {
        std::io::Error::from_raw_os_error(e.errno())
    }
}
