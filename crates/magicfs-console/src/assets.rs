//! The console's page, script and style, compiled into the binary.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// (path, content type, content) of each static file.
const FILES: [(&str, &str, &str); 3] = [
    ("/console/index.html", "text/html; charset=utf-8", include_str!("../assets/index.html")),
    ("/console/assets/app.js", "text/javascript; charset=utf-8", include_str!("../assets/app.js")),
    ("/console/assets/app.css", "text/css; charset=utf-8", include_str!("../assets/app.css")),
];

/// The content type and content of the static file at `path`.
pub fn get(path: &str) -> Option<(&'static str, &'static str)> {
    FILES.iter().find(|(p, _, _)| *p == path).map(|(_, t, c)| (*t, *c))
}

/// The static file at `path`, or 404.
pub fn respond(path: &str) -> Response {
    match get(path) {
        Some((content_type, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            body,
        )
            .into_response(),
        None => crate::api::error(StatusCode::NOT_FOUND, "no such console file"),
    }
}
