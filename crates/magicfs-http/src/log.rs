//! Request logs: one `tracing` event per answer (tower-http's `TraceLayer`)
//! with the method, path, peer, status and time taken — at `info` for
//! successes, `warn` for 4xx and `error` for 5xx. Headers (the token among
//! them) and query strings are never logged.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use std::net::SocketAddr;
use std::time::Duration;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;
use tracing::Span;

type MakeSpan = fn(&Request<Body>) -> Span;
type OnResponse = fn(&Response<Body>, Duration, &Span);

/// The logging layer.
pub(crate) fn layer() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, MakeSpan, (), OnResponse, (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(span as MakeSpan)
        .on_request(())
        .on_response(answered as OnResponse)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

fn span(request: &Request<Body>) -> Span {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string()).unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        peer = %peer,
        version = ?request.version()
    )
}

fn answered(response: &Response<Body>, latency: Duration, _span: &Span) {
    let status = response.status().as_u16();
    let ms = (latency.as_secs_f64() * 1e4).round() / 10.0;
    if status >= 500 {
        tracing::error!(status, latency_ms = ms, "answered");
    } else if status >= 400 {
        tracing::warn!(status, latency_ms = ms, "answered");
    } else {
        tracing::info!(status, latency_ms = ms, "answered");
    }
}
