//! `GET /files/PATH`: a file under the first root, whole or in byte ranges.
//!
//! Answers carry `Accept-Ranges: bytes`, a strong `ETag` (size and
//! modification time in nanoseconds) and `Last-Modified`. `Range` gives 206
//! with one part, or `multipart/byteranges` for several (overlapping and
//! adjacent ranges merged, at most [`crate::range::MAX_PARTS`] parts, else
//! one part spanning them all); a range past the end gives 416; a matching
//! `If-None-Match` gives 304. The bytes are served from a read-only memory
//! map without copying, streamed in pieces of at most [`PIECE`] bytes, so
//! an answer holds no more memory than its socket buffers whatever it spans.
//! Only regular files are served (see [`crate::roots`]).

use crate::error::{HttpError, HttpResult};
use crate::range::{etag, none_match, parse_range, Ranges};
use crate::roots::{io_error, open_regular};
use crate::server::AppState;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use memmap2::Mmap;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::hash::{BuildHasher, RandomState};
use std::time::SystemTime;

/// Largest piece of a body handed to the connection at once.
pub(crate) const PIECE: usize = 256 << 10;

/// A file opened for serving.
struct Served {
    bytes: Bytes,
    size: u64,
    modified: SystemTime,
}

/// The handler.
pub(crate) async fn file(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let Path(rel) = path.map_err(|e| HttpError::BadRequest(format!("malformed file path: {}", e.body_text())))?;
    let resolved = state.roots.resolve_in_first(&rel)?;
    let served = tokio::task::spawn_blocking(move || open(&resolved, &rel))
        .await
        .map_err(|e| HttpError::Internal(format!("reading the file failed: {e}")))??;
    let (response, sent) = respond(&served, &headers)?;
    state.metrics.files_sent(sent);
    Ok(response)
}

/// Opens and maps a regular file.
fn open(path: &std::path::Path, shown: &str) -> HttpResult<Served> {
    let (file, meta) = open_regular(path, shown, HttpError::NotFound)?;
    let modified = meta.modified().map_err(|e| io_error(shown, &e))?;
    let size = meta.len();
    let bytes = if size == 0 {
        Bytes::new()
    } else {
        // SAFETY: read-only map, released when the last response body using it
        // is dropped. A file truncated meanwhile by another process raises
        // SIGBUS on the lost pages, as for any reader of a mapped file; the
        // roots are meant to hold data that is not rewritten in place.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io_error(shown, &e))?;
        Bytes::from_owner(map)
    };
    Ok(Served { bytes, size, modified })
}

/// Builds the answer to a GET of `f` with the request's `headers`, and
/// says how many body bytes it sends.
fn respond(f: &Served, headers: &HeaderMap) -> HttpResult<(Response, u64)> {
    let tag = etag(f.size, f.modified);
    let mut common = HeaderMap::new();
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    common.insert(header::ETAG, header_value(&tag)?);
    common.insert(header::LAST_MODIFIED, header_value(&httpdate::fmt_http_date(f.modified))?);

    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(inm) = text(header::IF_NONE_MATCH) {
        if none_match(inm, &tag) {
            return Ok(((StatusCode::NOT_MODIFIED, common).into_response(), 0));
        }
    } else if let Some(since) = text(header::IF_MODIFIED_SINCE).and_then(|v| httpdate::parse_http_date(v).ok()) {
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if secs(f.modified) <= secs(since) {
            return Ok(((StatusCode::NOT_MODIFIED, common).into_response(), 0));
        }
    }

    // If-Range: ranges only while the client's copy is current.
    let range = match (text(header::RANGE), text(header::IF_RANGE)) {
        (Some(r), None) => Some(r),
        (Some(r), Some(if_range)) if if_range.trim() == tag => Some(r),
        _ => None,
    };
    let ranges = range.map_or(Ranges::Whole, |r| parse_range(r, f.size));
    let octets = HeaderValue::from_static("application/octet-stream");
    match ranges {
        Ranges::Whole => {
            common.insert(header::CONTENT_TYPE, octets);
            common.insert(header::CONTENT_LENGTH, HeaderValue::from(f.size));
            Ok(((StatusCode::OK, common, stream(vec![f.bytes.clone()])).into_response(), f.size))
        }
        Ranges::Unsatisfiable => Err(HttpError::RangeNotSatisfiable { size: f.size }),
        Ranges::Parts(parts) if parts.len() == 1 => {
            let r = &parts[0];
            let len = r.end() - r.start() + 1;
            common.insert(header::CONTENT_TYPE, octets);
            common.insert(header::CONTENT_RANGE, header_value(&format!("bytes {}-{}/{}", r.start(), r.end(), f.size))?);
            common.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            let body = f.bytes.slice(*r.start() as usize..=*r.end() as usize);
            Ok(((StatusCode::PARTIAL_CONTENT, common, stream(vec![body])).into_response(), len))
        }
        Ranges::Parts(parts) => {
            let boundary = format!("magicfs-{:016x}", RandomState::new().hash_one(&tag));
            let mut pieces = Vec::with_capacity(parts.len() * 2 + 1);
            let mut sent = 0u64;
            for r in &parts {
                let head = format!(
                    "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {}-{}/{}\r\n\r\n",
                    r.start(),
                    r.end(),
                    f.size
                );
                pieces.push(Bytes::from(head));
                pieces.push(f.bytes.slice(*r.start() as usize..=*r.end() as usize));
                sent += r.end() - r.start() + 1;
            }
            pieces.push(Bytes::from(format!("\r\n--{boundary}--\r\n")));
            let length: usize = pieces.iter().map(Bytes::len).sum();
            common.insert(header::CONTENT_TYPE, header_value(&format!("multipart/byteranges; boundary={boundary}"))?);
            common.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            Ok(((StatusCode::PARTIAL_CONTENT, common, stream(pieces)).into_response(), sent))
        }
    }
}

/// A body streamed from `pieces` (views of the memory map and part heads),
/// handed out at most [`PIECE`] bytes at a time.
fn stream(pieces: Vec<Bytes>) -> Body {
    Body::from_stream(futures_util::stream::iter(Pieces(pieces.into()).map(Ok::<Bytes, Infallible>)))
}

/// Splits the front piece when it is larger than [`PIECE`].
struct Pieces(VecDeque<Bytes>);

impl Iterator for Pieces {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let front = self.0.front_mut()?;
        if front.len() > PIECE {
            return Some(front.split_to(PIECE));
        }
        self.0.pop_front()
    }
}

/// A header value from text the server wrote.
fn header_value(s: &str) -> HttpResult<HeaderValue> {
    HeaderValue::from_str(s).map_err(|e| HttpError::Internal(format!("cannot write header value {s:?}: {e}")))
}
