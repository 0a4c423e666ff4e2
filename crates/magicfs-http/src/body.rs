//! Reading request bodies: at most a limit, within the body timeout.
//!
//! Every request body, whichever route reads it (the API's or a merged
//! router's, such as the console's uploads), is a [`Deadline`] body that
//! fails once the body timeout has passed since the request arrived, so a
//! client that trickles a body holds nothing for longer.
//!
//! A body announced as too large is refused (413) before it is read; the
//! server first reads and discards what the client keeps sending, up to
//! [`LINGER_BYTES`] or [`LINGER_TIME`], so the client is reading when the
//! refusal comes rather than meeting a reset connection.

use crate::error::{HttpError, HttpResult};
use crate::server::AppState;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A request body that fails with [`BodyTimedOut`] once its time is up.
pub(crate) struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    after: Duration,
    fired: Arc<AtomicBool>,
}

impl Deadline {
    /// `body`, to arrive whole within `after` from now; the flag is set
    /// when it did not.
    pub(crate) fn wrap(body: Body, after: Duration) -> (Body, Arc<AtomicBool>) {
        let fired = Arc::new(AtomicBool::new(false));
        if body.is_end_stream() {
            return (body, fired);
        }
        let sleep = Box::pin(tokio::time::sleep(after));
        (Body::new(Deadline { inner: body, sleep, after, fired: fired.clone() }), fired)
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.fired.store(true, Ordering::Relaxed);
            let after = self.after;
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(after)))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that did not arrive within the body timeout.
#[derive(Debug)]
pub(crate) struct BodyTimedOut(Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {} s; send it without pauses", self.0.as_secs_f64())
    }
}

impl std::error::Error for BodyTimedOut {}

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
        Ok(Err(e)) if timed_out(&e) => Err(HttpError::Timeout(format!(
            "the request body did not arrive within {} s; send it without pauses",
            timeout.as_secs_f64()
        ))),
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

fn timed_out(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<BodyTimedOut>() {
            return true;
        }
        source = s.source();
    }
    false
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
