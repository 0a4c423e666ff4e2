//! The server's error: why it could not start, or why a request was refused.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt;

/// Why the server could not start or a request could not be answered. Each
/// request error becomes a response with its status and a JSON body
/// `{"error":"…"}`.
#[derive(Debug)]
pub enum HttpError {
    /// The request is malformed (400).
    BadRequest(String),
    /// No token, or the wrong one (401).
    Unauthorized,
    /// The request names something outside the roots (403).
    Forbidden(String),
    /// No such file or route (404).
    NotFound(String),
    /// The body is larger than the server accepts (413).
    TooLarge(String),
    /// The body did not arrive in time (408).
    Timeout(String),
    /// Every request or compute slot is taken (503, `Retry-After: 1`).
    Busy(String),
    /// No requested byte range lies inside the file (416).
    RangeNotSatisfiable {
        /// Size of the file in bytes.
        size: u64,
    },
    /// The request is well-formed but its content failed a check, such as a
    /// transferred chunk whose BLAKE3 does not match (422).
    Unprocessable(String),
    /// Something failed on the server's side (500).
    Internal(String),
    /// A remote source this request named failed (502).
    BadGateway(String),
    /// The settings cannot be used (at start).
    Config(String),
    /// The server could not listen or run (at start).
    Io(String, std::io::Error),
}

impl HttpError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Unauthorized => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            HttpError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            HttpError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            HttpError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            HttpError::Internal(_) | HttpError::Config(_) | HttpError::Io(..) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(m)
            | HttpError::Forbidden(m)
            | HttpError::NotFound(m)
            | HttpError::TooLarge(m)
            | HttpError::Timeout(m)
            | HttpError::Busy(m)
            | HttpError::Internal(m)
            | HttpError::Unprocessable(m)
            | HttpError::BadGateway(m)
            | HttpError::Config(m) => f.write_str(m),
            HttpError::Unauthorized => {
                f.write_str("missing or wrong token; send the header Authorization: Bearer TOKEN")
            }
            HttpError::RangeNotSatisfiable { size } => {
                write!(f, "no requested range lies inside the file ({size} bytes)")
            }
            HttpError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::Io(_, e) => Some(e),
            _ => None,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = json_error(self.status(), &self.to_string());
        let headers = response.headers_mut();
        match self {
            HttpError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            HttpError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            HttpError::Busy(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// A response with `status` and the body `{"error": message}`.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// The answer to a failure met while reading a remote source or a
/// transfer: its status as [`magicfs_remote::RemoteError::http_status`] says.
pub(crate) fn remote(e: magicfs_remote::RemoteError) -> HttpError {
    let msg = e.to_string();
    match e.http_status() {
        400 => HttpError::BadRequest(msg),
        403 => HttpError::Forbidden(msg),
        404 => HttpError::NotFound(msg),
        422 => HttpError::Unprocessable(msg),
        502 => HttpError::BadGateway(msg),
        _ => HttpError::Internal(msg),
    }
}

/// Result alias of the server.
pub type HttpResult<T> = Result<T, HttpError>;
