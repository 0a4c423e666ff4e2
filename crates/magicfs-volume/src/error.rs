//! [`VolumeError`], the layer's one error type: what went wrong, said so
//! that an agent or a person knows what to do, with the HTTP status and the
//! errno-like kind each front end maps it to.

use magicfs_types::FsError;

/// Result of a volume operation.
pub type VResult<T> = Result<T, VolumeError>;

/// Why a volume operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeError {
    /// The arguments are wrong (a bad path, an unknown op, a negative size…).
    BadArgument(String),
    /// The path leads outside the volume (`..`, a symlink pointing out).
    Escape(String),
    /// Nothing at that path.
    NotFound(String),
    /// Something is already there.
    Exists(String),
    /// The volume is served read-only.
    ReadOnly,
    /// The request is over a size limit.
    TooLarge(String),
    /// The feature cannot answer here (no model, not a MagicFS mount, chat off…).
    Unavailable(String),
    /// The filesystem refused or failed.
    Io(String),
}

impl VolumeError {
    /// The HTTP status a server answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            VolumeError::BadArgument(_) => 400,
            VolumeError::Escape(_) | VolumeError::ReadOnly => 403,
            VolumeError::NotFound(_) => 404,
            VolumeError::Exists(_) => 409,
            VolumeError::TooLarge(_) => 413,
            VolumeError::Unavailable(_) => 503,
            VolumeError::Io(_) => 500,
        }
    }

    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            VolumeError::BadArgument(_) => "bad_argument",
            VolumeError::Escape(_) => "outside_volume",
            VolumeError::NotFound(_) => "not_found",
            VolumeError::Exists(_) => "exists",
            VolumeError::ReadOnly => "read_only",
            VolumeError::TooLarge(_) => "too_large",
            VolumeError::Unavailable(_) => "unavailable",
            VolumeError::Io(_) => "io",
        }
    }

    /// The error of filesystem call `what` on `path`.
    pub fn fs(e: FsError, path: &str) -> VolumeError {
        let shown = if path.is_empty() { "/".to_string() } else { format!("/{path}") };
        match e {
            FsError::NotFound => VolumeError::NotFound(format!("{shown}: no such file or directory")),
            FsError::Exists => VolumeError::Exists(format!("{shown}: already exists")),
            FsError::NotDir => VolumeError::BadArgument(format!("{shown}: a component of the path is not a directory")),
            FsError::IsDir => VolumeError::BadArgument(format!("{shown}: is a directory")),
            FsError::NotEmpty => {
                VolumeError::BadArgument(format!("{shown}: the directory is not empty (pass recursive to delete it)"))
            }
            FsError::NameTooLong => VolumeError::BadArgument(format!("{shown}: a name is longer than 255 bytes")),
            FsError::Invalid => VolumeError::BadArgument(format!("{shown}: invalid argument")),
            FsError::Access | FsError::Perm => VolumeError::Io(format!("{shown}: permission denied")),
            FsError::ReadOnly => VolumeError::ReadOnly,
            FsError::NoSpace => VolumeError::Io(format!("{shown}: no space left on the device")),
            FsError::FileTooBig => VolumeError::TooLarge(format!("{shown}: file too large")),
            other => VolumeError::Io(format!("{shown}: {other}")),
        }
    }

    /// The error of a host I/O call on `path` (shown relative to the volume).
    pub fn io(e: std::io::Error, path: &str) -> VolumeError {
        let fe = match e.raw_os_error() {
            Some(libc::ENOENT) => FsError::NotFound,
            Some(libc::EEXIST) => FsError::Exists,
            Some(libc::ENOTDIR) => FsError::NotDir,
            Some(libc::EISDIR) => FsError::IsDir,
            Some(libc::ENOTEMPTY) => FsError::NotEmpty,
            Some(libc::ENAMETOOLONG) => FsError::NameTooLong,
            Some(libc::EINVAL) => FsError::Invalid,
            Some(libc::EACCES) => FsError::Access,
            Some(libc::EPERM) => FsError::Perm,
            Some(libc::EROFS) => FsError::ReadOnly,
            Some(libc::ENOSPC) => FsError::NoSpace,
            Some(libc::EFBIG) => FsError::FileTooBig,
            _ => {
                let shown = if path.is_empty() { "/".to_string() } else { format!("/{path}") };
                return VolumeError::Io(format!("{shown}: {e}"));
            }
        };
        VolumeError::fs(fe, path)
    }
}

impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeError::BadArgument(m)
            | VolumeError::Escape(m)
            | VolumeError::NotFound(m)
            | VolumeError::Exists(m)
            | VolumeError::TooLarge(m)
            | VolumeError::Unavailable(m)
            | VolumeError::Io(m) => f.write_str(m),
            VolumeError::ReadOnly => {
                f.write_str("the volume is served read-only: nothing can be written, moved or deleted")
            }
        }
    }
}

impl std::error::Error for VolumeError {}
