//! The remote layer's error.

use std::fmt;

/// Why a remote read, job or transfer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// A URL that cannot be used (scheme, form).
    BadUrl(String),
    /// A host or address that is not on the allowlist, or never allowed.
    NotAllowed(String),
    /// A redirect to another origin, refused.
    Redirect(String),
    /// The connection failed or broke (worth retrying elsewhere).
    Connect(String),
    /// The origin answered with an error status.
    Origin {
        /// The status it answered with.
        status: u16,
        /// What was asked and what it said.
        message: String,
    },
    /// The origin's answer is not what HTTP or the protocol promises.
    Protocol(String),
    /// The origin does not serve byte ranges, so a partial read is impossible.
    NoRanges(String),
    /// The compute program does not fit the data.
    Compute(magicfs_compute::ComputeError),
    /// A local file could not be read or written.
    Io(String),
    /// A transferred chunk or file failed verification, or the transfer was refused.
    Transfer(String),
    /// A setting or registry entry that cannot be used.
    Config(String),
    /// A request larger than this reader handles at once.
    Limit(String),
    /// The TLS handshake failed (an untrusted or wrong certificate).
    Tls(String),
}

impl RemoteError {
    /// True for failures that another attempt (later, or on another
    /// endpoint) may not meet: broken connections, malformed answers, and
    /// origin statuses 408, 429 and 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            RemoteError::Connect(_) | RemoteError::Protocol(_) => true,
            RemoteError::Origin { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The HTTP status a server answers this error with when it met it on a
    /// client's behalf: 400 for bad input, 403 for refused addresses, 422 for
    /// failed verification, 502 when the origin failed.
    pub fn http_status(&self) -> u16 {
        match self {
            RemoteError::BadUrl(_) | RemoteError::NoRanges(_) | RemoteError::Compute(_) | RemoteError::Limit(_) => 400,
            RemoteError::NotAllowed(_) | RemoteError::Redirect(_) => 403,
            RemoteError::Transfer(_) => 422,
            RemoteError::Origin { status: 404, .. } => 404,
            RemoteError::Origin { status: 416, .. } => 400,
            RemoteError::Connect(_) | RemoteError::Protocol(_) | RemoteError::Origin { .. } | RemoteError::Tls(_) => {
                502
            }
            RemoteError::Io(_) | RemoteError::Config(_) => 500,
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::BadUrl(m)
            | RemoteError::NotAllowed(m)
            | RemoteError::Redirect(m)
            | RemoteError::Connect(m)
            | RemoteError::Protocol(m)
            | RemoteError::NoRanges(m)
            | RemoteError::Io(m)
            | RemoteError::Transfer(m)
            | RemoteError::Config(m)
            | RemoteError::Limit(m)
            | RemoteError::Tls(m) => f.write_str(m),
            RemoteError::Origin { message, .. } => f.write_str(message),
            RemoteError::Compute(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RemoteError {}

impl From<magicfs_compute::ComputeError> for RemoteError {
    fn from(e: magicfs_compute::ComputeError) -> RemoteError {
        RemoteError::Compute(e)
    }
}

impl From<magicfs_net::NetError> for RemoteError {
    fn from(e: magicfs_net::NetError) -> RemoteError {
        use magicfs_net::NetError as N;
        match e {
            N::BadUrl(m) => RemoteError::BadUrl(m),
            N::NotAllowed(m) => RemoteError::NotAllowed(m),
            N::Redirect(m) => RemoteError::Redirect(m),
            N::Connect(m) => RemoteError::Connect(m),
            N::Tls(m) => RemoteError::Tls(m),
            N::Status { status, message } => RemoteError::Origin { status, message },
            N::Protocol(m) | N::TooLarge(m) => RemoteError::Protocol(m),
            N::Config(m) => RemoteError::Config(m),
        }
    }
}

/// Result alias of the remote layer.
pub type RemoteResult<T> = Result<T, RemoteError>;
