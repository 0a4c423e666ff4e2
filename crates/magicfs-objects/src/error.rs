//! The object-store layer's error.

use std::fmt;
use std::io;

/// Why the object store could not do what was asked.
#[derive(Debug)]
pub enum ObjectsError {
    /// A store URL that cannot be used.
    BadUrl(String),
    /// The service failed (after bounded retries where that can help).
    Service {
        /// The service, e.g. "S3 at http://127.0.0.1:8333 (bucket b)".
        service: String,
        /// What was being done.
        what: String,
        /// The underlying error.
        detail: String,
    },
    /// The bucket does not exist.
    NoBucket {
        /// The service.
        service: String,
        /// The bucket.
        bucket: String,
    },
    /// The service refused the credentials.
    Credentials {
        /// The service.
        service: String,
        /// What it said.
        detail: String,
    },
    /// The segment catalog (PostgreSQL) failed.
    Catalog(String),
    /// Stored bytes are not what was recorded.
    Corrupt(String),
    /// A local cache file could not be used.
    Io(io::Error),
}

impl fmt::Display for ObjectsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectsError::BadUrl(m) => write!(f, "bad store URL {m}"),
            ObjectsError::Service { service, what, detail } => write!(f, "{service}: {what}: {detail}"),
            ObjectsError::NoBucket { service, bucket } => write!(
                f,
                "{service}: the bucket {bucket} does not exist; `magicfs format` creates it (check AWS_ENDPOINT_URL and the store URL)"
            ),
            ObjectsError::Credentials { service, detail } => write!(
                f,
                "{service} refused the credentials: {detail}; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ),
            ObjectsError::Catalog(m) => write!(f, "{m}"),
            ObjectsError::Corrupt(m) => write!(f, "the object store is damaged: {m}"),
            ObjectsError::Io(e) => write!(f, "local chunk cache: {e}"),
        }
    }
}

impl std::error::Error for ObjectsError {}

impl From<ObjectsError> for io::Error {
    fn from(e: ObjectsError) -> io::Error {
        let kind = match &e {
            ObjectsError::BadUrl(_) => io::ErrorKind::InvalidInput,
            ObjectsError::NoBucket { .. } => io::ErrorKind::NotFound,
            ObjectsError::Credentials { .. } => io::ErrorKind::PermissionDenied,
            ObjectsError::Corrupt(_) => io::ErrorKind::InvalidData,
            ObjectsError::Io(e) => e.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Result alias of the layer.
pub type ObjectsResult<T> = Result<T, ObjectsError>;
