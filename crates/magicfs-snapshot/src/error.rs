//! The snapshot-layer error.

use magicfs_core::OpenError;
use std::fmt;
use std::path::PathBuf;

/// Why an export or import could not be done.
#[derive(Debug)]
pub enum SnapshotError {
    /// Reading or writing a tree, the document or the output failed.
    Io {
        /// What was being done, with the path involved.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The document is not valid JSON or breaks the snapshot schema.
    Invalid {
        /// Line of the problem in the document (1-based).
        line: usize,
        /// Column of the problem in that line (1-based).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The import destination already holds entries.
    NotEmpty(String),
    /// Something in the source tree cannot be written as a snapshot.
    Unsupported {
        /// The entry's path, relative to the tree's root (lossy for display).
        path: String,
        /// What cannot be represented.
        reason: String,
    },
    /// The store is held by a running mount (or another process).
    InUse {
        /// The data directory.
        path: PathBuf,
        /// The lock holder's process id, as written in the lock file.
        holder: String,
    },
    /// A MagicFS store could not be opened.
    Store(OpenError),
}

impl SnapshotError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> SnapshotError {
        SnapshotError::Io { context: context.into(), source }
    }

    /// Turns a `serde_json` error met while reading a document into an
    /// [`SnapshotError::Invalid`] with its position (or an I/O error when
    /// reading the input itself failed).
    pub fn from_json(e: serde_json::Error) -> SnapshotError {
        if e.is_io() {
            return SnapshotError::io("reading the snapshot", std::io::Error::from(e));
        }
        let (line, column) = (e.line(), e.column());
        let text = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = text.strip_suffix(&suffix).unwrap_or(&text).to_string();
        SnapshotError::Invalid { line, column, message }
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io { context, source } => write!(f, "{context}: {source}"),
            SnapshotError::Invalid { line, column, message } => {
                write!(f, "invalid snapshot at line {line} column {column}: {message}")
            }
            SnapshotError::NotEmpty(dest) => write!(
                f,
                "{dest} is not empty; import only into an empty directory, a new store or an empty mount"
            ),
            SnapshotError::Unsupported { path, reason } => write!(f, "cannot export {path:?}: {reason}"),
            SnapshotError::InUse { path, holder } => write!(
                f,
                "store is in use, export through its mount point ({} is locked by process {holder}; imports go through the mount point too)",
                path.display()
            ),
            SnapshotError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Io { source, .. } => Some(source),
            SnapshotError::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// Result alias of the snapshot layer.
pub type SnapshotResult<T> = Result<T, SnapshotError>;
