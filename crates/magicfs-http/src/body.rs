//! Reading request bodies: at most a limit, within the body timeout.
//!
//! A body announced as too large is refused (413) before it is read; the
//! server first reads and discards what the client keeps sending, up to
//! [`LINGER_BYTES`] or [`LINGER_TIME`], so the client is reading when the
//! refusal comes rather than meeting a reset connection.

use crate::error::{HttpError, HttpResult};
use crate::server::AppState;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;
use std::time::Duration;

/// Most bytes of a refused body read and discarded before answering.
pub(crate) const LINGER_BYTES: u64 = 64 << 20;
/// Longest time spent discarding a refused body.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);

/// The whole body, at most `limit` bytes; `hint` says what to send instead.
pub(crate) async fn read(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    hint: &str,
) -> HttpResult<Bytes> {
    let too_large = |size: String| {
        HttpError::TooLarge(format!(
            "the request body ({size}) is larger than this server accepts here ({limit} bytes); {hint}"
        ))
    };
    let announced =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = announced.filter(|&n| n > limit as u64) {
        discard(body).await;
        return Err(too_large(format!("{n} bytes")));
    }
    let timeout = state.limits.body_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_large(format!("over {limit} bytes"))),
        Ok(Err(e)) => Err(HttpError::BadRequest(format!("cannot read the request body: {e}"))),
        Err(_) => Err(HttpError::Timeout(format!(
            "the request body did not arrive within {} s; send it without pauses",
            timeout.as_secs_f64()
        ))),
    }
}

/// Reads and drops what arrives of `body`, within the linger bounds.
async fn discard(mut body: Body) {
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}
