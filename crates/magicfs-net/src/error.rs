//! The network layer's error.

use std::fmt;

/// Why a request could not be made or its answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// A URL that cannot be used (scheme, form).
    BadUrl(String),
    /// A host or address the allowlist refuses.
    NotAllowed(String),
    /// A redirect to another origin, or too many redirects.
    Redirect(String),
    /// The connection failed, broke or timed out (worth retrying).
    Connect(String),
    /// The TLS handshake failed: an untrusted or wrong certificate, a
    /// server that does not speak TLS.
    Tls(String),
    /// The peer answered with an error status ([`crate::Response::success`]).
    Status {
        /// The status it answered with.
        status: u16,
        /// What was asked and what it said.
        message: String,
    },
    /// The answer is not what HTTP or the protocol promises.
    Protocol(String),
    /// The answer is longer than the caller accepts.
    TooLarge(String),
    /// A setting that cannot be used (a CA file, a proxy variable).
    Config(String),
}

impl NetError {
    /// True for failures another attempt may not meet: broken connections,
    /// malformed answers, and statuses 408, 429 and 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            NetError::Connect(_) | NetError::Protocol(_) => true,
            NetError::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::BadUrl(m)
            | NetError::NotAllowed(m)
            | NetError::Redirect(m)
            | NetError::Connect(m)
            | NetError::Tls(m)
            | NetError::Protocol(m)
            | NetError::TooLarge(m)
            | NetError::Config(m) => f.write_str(m),
            NetError::Status { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for NetError {}

/// Result alias of the network layer.
pub type NetResult<T> = Result<T, NetError>;
