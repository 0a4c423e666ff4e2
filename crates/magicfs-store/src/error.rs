//! The store-layer error.

use std::fmt;
use std::path::PathBuf;

/// Why the store could not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    /// An I/O failure, with what was being done.
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process holds the store.
    Locked {
        /// The data directory.
        path: PathBuf,
        /// Contents of the lock file (the holder's pid), if readable.
        holder: String,
    },
    /// The directory exists but holds something other than a MagicFS store.
    NotAStore(PathBuf),
    /// There is no store at the path.
    Missing(PathBuf),
    /// The database or log is damaged.
    Corrupt(String),
    /// A shared volume's change log no longer reaches back to what this
    /// mount applied last: its tables must be loaded again.
    Stale {
        /// The last change applied here.
        since: u64,
        /// The oldest change still in the log.
        oldest: u64,
    },
    /// The housekeeper removed this mount's session (it stopped heartbeating).
    SessionExpired(u64),
    /// A service (database, object store) failed or stayed unreachable;
    /// the message names it.
    Service(String),
    /// Something about the volume itself: none there, already formatted, …
    Volume(String),
}

impl StoreError {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Io { context: context.into(), source }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { context, source } => write!(f, "{context}: {source}"),
            StoreError::Locked { path, holder } => write!(
                f,
                "the store at {} is already in use (locked by process {holder}); unmount it first or use another --data directory",
                path.display()
            ),
            StoreError::NotAStore(p) if !p.is_dir() => {
                write!(f, "{} is not a directory; pass a new or empty directory to --data", p.display())
            }
            StoreError::NotAStore(p) => write!(
                f,
                "{} is not a MagicFS store (it is not empty and has no magicfs.redb); pass an empty or new directory to --data",
                p.display()
            ),
            StoreError::Missing(p) => write!(
                f,
                "no MagicFS store at {} (the directory does not exist or holds no magicfs.redb); mount it once with --data to create one",
                p.display()
            ),
            StoreError::Corrupt(m) => write!(f, "the store is damaged: {m}"),
            StoreError::Stale { since, oldest } => write!(
                f,
                "the change log starts at {oldest} but this mount applied only up to {since}; the tables are loaded again"
            ),
            StoreError::SessionExpired(id) => write!(
                f,
                "session {id} was removed after it stopped heartbeating; the mount loads the volume again"
            ),
            StoreError::Service(m) | StoreError::Volume(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result alias of the store layer.
pub type StoreResult<T> = Result<T, StoreError>;
