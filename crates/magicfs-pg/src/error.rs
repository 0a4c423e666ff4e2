//! The layer's one error type, and how driver errors are sorted into it.

use std::fmt;
use std::time::Duration;

/// Why a PostgreSQL operation failed. Every variant names the service
/// (`PostgreSQL at HOST:PORT`) and never carries a password.
#[derive(Debug)]
pub enum PgError {
    /// The URL could not be used.
    BadUrl(String),
    /// The server could not be reached (or kept failing) for as long as we retried.
    Unreachable {
        /// `PostgreSQL at HOST:PORT`.
        service: String,
        /// How long we kept trying.
        tried_for: Duration,
        /// The last failure.
        cause: String,
    },
    /// The server refused the login.
    Auth {
        /// `PostgreSQL at HOST:PORT`.
        service: String,
        /// The user name.
        user: String,
        /// The server's words.
        cause: String,
    },
    /// The database does not exist.
    MissingDatabase {
        /// `PostgreSQL at HOST:PORT`.
        service: String,
        /// The database name.
        database: String,
    },
    /// A statement failed for a reason retrying cannot fix.
    Query {
        /// `PostgreSQL at HOST:PORT`.
        service: String,
        /// The SQLSTATE code, when the server gave one.
        code: Option<String>,
        /// The server's (or driver's) words.
        message: String,
    },
}

impl PgError {
    /// True when the service could not be reached in time (as opposed to a
    /// refusal or a failed statement).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, PgError::Unreachable { .. })
    }

    /// The SQLSTATE code of a failed statement.
    pub fn code(&self) -> Option<&str> {
        match self {
            PgError::Query { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::BadUrl(m) => write!(f, "bad PostgreSQL URL: {m}"),
            PgError::Unreachable { service, tried_for, cause } => {
                write!(f, "{service} is unreachable (tried for {:.0} s): {cause}", tried_for.as_secs_f64())
            }
            PgError::Auth { service, user, cause } => {
                write!(f, "{service} refused the login of user {user:?} ({cause}); check the user and password")
            }
            PgError::MissingDatabase { service, database } => {
                write!(f, "{service} has no database {database:?}; create it first (for example: createdb {database})")
            }
            PgError::Query { service, code: Some(code), message } => {
                write!(f, "{service}: {message} (SQLSTATE {code})")
            }
            PgError::Query { service, code: None, message } => write!(f, "{service}: {message}"),
        }
    }
}

impl std::error::Error for PgError {}

/// How a driver failure should be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Worth trying again: the connection, the server's state or a serialisation conflict.
    Transient,
    /// The login was refused.
    Auth,
    /// The database does not exist.
    MissingDatabase,
    /// Anything else: retrying cannot help.
    Fatal,
}

/// Sorts a driver error.
pub(crate) fn kind_of(e: &tokio_postgres::Error) -> Kind {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return match code {
            "28P01" | "28000" => Kind::Auth,
            "3D000" => Kind::MissingDatabase,
            "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "55P03" => Kind::Transient,
            c if c.starts_with("08") => Kind::Transient,
            _ => Kind::Fatal,
        };
    }
    // No server error. Only a failed or broken connection (refused, reset,
    // DNS, timeout, closed) is worth retrying; a client-side failure (a
    // value that does not convert, a bad parameter count) never heals.
    if e.is_closed() || has_io_source(e) {
        return Kind::Transient;
    }
    let text = e.to_string();
    if text.starts_with("error connecting to server") || text.contains("timeout") || text.contains("timed out") {
        Kind::Transient
    } else {
        Kind::Fatal
    }
}

/// True when an I/O error is somewhere in `e`'s cause chain.
fn has_io_source(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut src = e.source();
    while let Some(inner) = src {
        if inner.is::<std::io::Error>() {
            return true;
        }
        src = inner.source();
    }
    false
}

/// Words for a driver error, with its cause chain (the driver's top-level
/// text is often just "error connecting to server").
pub fn words(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}
