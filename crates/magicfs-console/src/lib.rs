//! The MagicFS web console: a file browser with upload and download, search,
//! a chat panel that streams replies, a tree generator, a compute panel and a
//! live status page, over one [`magicfs_volume::Volume`].
//!
//! [`router`] is an axum `Router` that `magicfs serve --console` merges into
//! its own, under the same bearer token. The page and its script and style
//! ([`assets`]) are plain files compiled into the binary (no build step, no
//! network) and need no token ([`is_public`]); every `/console/api/` route
//! does. The script keeps the token in the tab's session storage and sends
//! it as `Authorization: Bearer`; no cookie is ever set, so another site
//! cannot make the browser act with it (no CSRF), and state-changing
//! requests from a foreign `Origin` are refused besides. Every response
//! carries a strict Content-Security-Policy (scripts and styles from this
//! server only, no inline code) and the usual hardening headers; the script
//! shows file names and model output with `textContent`, never as HTML.
#![warn(missing_docs)]

mod api;
pub mod assets;
mod stats;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use magicfs_volume::Volume;
use std::sync::Arc;

/// Where the console lives.
pub const PREFIX: &str = "/console";

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Console {
    pub(crate) vol: Arc<Volume>,
    pub(crate) stats: Arc<stats::Stats>,
}

/// True for the paths served without a token: the page and its static files.
pub fn is_public(path: &str) -> bool {
    path == PREFIX || path == "/console/" || assets::get(path).is_some()
}

/// The console's routes over `vol`. `token` is checked on every API route
/// here too (defence in depth: `serve` checks it as well).
pub fn router(vol: Arc<Volume>, token: &str) -> Router {
    let upload_limit = usize::try_from(vol.limits().max_write).unwrap_or(usize::MAX).saturating_add(64 << 10);
    let state = Console { vol, stats: Arc::new(stats::Stats::default()) };
    let api = Router::new()
        .route("/list", get(api::list))
        .route("/stat", get(api::stat))
        .route("/file", get(api::download).put(api::upload).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/mkdir", post(api::mkdir))
        .route("/move", post(api::rename))
        .route("/delete", post(api::delete))
        .route("/search", get(api::search))
        .route("/chat", post(api::chat))
        .route("/generate", post(api::generate))
        .route("/compute", post(api::compute))
        .route("/status", get(api::status))
        .fallback(|| async { api::error(StatusCode::NOT_FOUND, "no such console route") })
        .layer(middleware::from_fn_with_state(Arc::<str>::from(token), guard))
        .with_state(state);
    Router::new()
        .route(PREFIX, get(|| async { axum::response::Redirect::permanent("/console/") }))
        .route("/console/", get(|| async { assets::respond("/console/index.html") }))
        .route("/console/assets/{name}", get(|uri: axum::http::Uri| async move { assets::respond(uri.path()) }))
        .nest("/console/api", api)
        .layer(middleware::from_fn(headers))
}

/// Checks the token and, for changes, the origin of API requests.
async fn guard(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    if !magicfs_http::authorized(request.headers(), &token) {
        return api::error(StatusCode::UNAUTHORIZED, "missing or wrong token: log in with the server's token");
    }
    if request.method() != Method::GET && !same_origin(request.headers()) {
        return api::error(StatusCode::FORBIDDEN, "request from another origin refused");
    }
    next.run(request).await
}

/// True when the request has no `Origin` or one naming the `Host` it was sent to.
fn same_origin(h: &HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
    !host.is_empty() && authority == host
}

/// The hardening headers on every console response.
async fn headers(request: Request, next: Next) -> Response {
    let mut r = next.run(request).await;
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h));
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8811"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8811"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&h));
        assert!(is_public("/console/"));
        assert!(is_public("/console/assets/app.js"));
        assert!(!is_public("/console/api/list"));
        assert!(!is_public("/console/assets/../api/list"));
    }
}
