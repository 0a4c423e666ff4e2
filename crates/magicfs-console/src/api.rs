//! The console's API: JSON in and out (`{"error":…}` with a 4xx/5xx status
//! on failure), raw bytes for upload and download, server-sent events for
//! chat replies. Volume calls run on blocking threads.

use crate::Console;
use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use magicfs_volume::{ComputeRequest, VPath, VolumeError, WriteMode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;

/// A JSON error answer.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn failed(e: VolumeError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "error": e.to_string(), "kind": e.kind() }))).into_response()
}

fn answer<T: serde::Serialize>(r: Result<T, VolumeError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => failed(e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, VolumeError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(VolumeError::Io(format!("the request failed: {e}"))))
}

/// The body as JSON, or a 400 that says what is wrong with it.
fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, Box<Response>> {
    b.map(|Json(v)| v).map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, &e.body_text())))
}

#[derive(Deserialize)]
pub(crate) struct PathQuery {
    #[serde(default)]
    path: Option<String>,
}

/// `GET /console/api/list?path=DIR`.
pub(crate) async fn list(State(c): State<Console>, Query(q): Query<PathQuery>) -> Response {
    c.stats.request();
    let path = q.path.unwrap_or_else(|| "/".into());
    answer(
        blocking(move || {
            let (entries, truncated) = c.vol.list(&path, false)?;
            Ok(json!({ "path": VPath::parse(&path)?.display(), "entries": entries, "truncated": truncated }))
        })
        .await,
    )
}

/// `GET /console/api/stat?path=P`.
pub(crate) async fn stat(State(c): State<Console>, Query(q): Query<PathQuery>) -> Response {
    c.stats.request();
    let path = q.path.unwrap_or_else(|| "/".into());
    answer(blocking(move || c.vol.stat(&path)).await)
}

/// `filename*` of Content-Disposition: every byte but letters, digits and `.-_` percent-encoded.
fn disposition(name: &str) -> String {
    let mut enc = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"download\"; filename*=UTF-8''{enc}")
}

/// `GET /console/api/file?path=P`: the whole file, streamed in pieces of the read cap.
pub(crate) async fn download(State(c): State<Console>, Query(q): Query<PathQuery>) -> Response {
    c.stats.request();
    let path = q.path.unwrap_or_default();
    let vol = c.vol.clone();
    let p = path.clone();
    let first = match blocking(move || vol.read(&p, Some(0), None)).await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let (size, name) = (first.size, VPath::parse(&path).map(|p| p.name().to_string()).unwrap_or_default());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let (vol, stats) = (c.vol.clone(), c.stats.clone());
    tokio::task::spawn_blocking(move || {
        let mut at = first.data.len() as u64;
        stats.downloaded(at);
        if tx.blocking_send(Ok(Bytes::from(first.data))).is_err() {
            return;
        }
        while at < size {
            match vol.read(&path, Some(at), None) {
                Ok(r) if !r.data.is_empty() => {
                    at += r.data.len() as u64;
                    stats.downloaded(r.data.len() as u64);
                    if tx.blocking_send(Ok(Bytes::from(r.data))).is_err() {
                        return;
                    }
                }
                Ok(_) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut r = Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = HeaderValue::from_str(&disposition(&name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    r
}

#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    path: String,
    #[serde(default)]
    replace: bool,
}

/// `PUT /console/api/file?path=P[&replace=true]` with the file as the body.
pub(crate) async fn upload(State(c): State<Console>, Query(q): Query<UploadQuery>, data: Bytes) -> Response {
    c.stats.request();
    let mode = if q.replace { WriteMode::Overwrite } else { WriteMode::CreateNew };
    let n = data.len() as u64;
    let r = blocking(move || c.vol.write(&q.path, &data, mode, false)).await;
    if r.is_ok() {
        c.stats.uploaded(n);
    }
    answer(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MkdirBody {
    path: String,
    #[serde(default)]
    parents: bool,
}

/// `POST /console/api/mkdir`.
pub(crate) async fn mkdir(State(c): State<Console>, b: Result<Json<MkdirBody>, JsonRejection>) -> Response {
    c.stats.request();
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    answer(blocking(move || c.vol.mkdir(&b.path, b.parents)).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoveBody {
    from: String,
    to: String,
    #[serde(default)]
    overwrite: bool,
}

/// `POST /console/api/move`.
pub(crate) async fn rename(State(c): State<Console>, b: Result<Json<MoveBody>, JsonRejection>) -> Response {
    c.stats.request();
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    answer(blocking(move || c.vol.rename(&b.from, &b.to, b.overwrite)).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteBody {
    path: String,
    #[serde(default)]
    recursive: bool,
}

/// `POST /console/api/delete`.
pub(crate) async fn delete(State(c): State<Console>, b: Result<Json<DeleteBody>, JsonRejection>) -> Response {
    c.stats.request();
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    answer(blocking(move || c.vol.delete(&b.path, b.recursive).map(|n| json!({ "entries_removed": n }))).await)
}

#[derive(Deserialize)]
pub(crate) struct SearchQuery {
    q: String,
    #[serde(default)]
    k: Option<usize>,
}

/// `GET /console/api/search?q=TEXT[&k=N]`.
pub(crate) async fn search(State(c): State<Console>, Query(q): Query<SearchQuery>) -> Response {
    c.stats.request();
    answer(
        blocking(move || {
            let hits = c.vol.search(&q.q, q.k.unwrap_or(10))?;
            Ok(json!({ "query": q.q.trim(), "results": hits }))
        })
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChatBody {
    session: String,
    message: String,
}

/// `POST /console/api/chat`: the reply as server-sent events — `piece`
/// events (`{"text"}`) as it is written, then `done` (`{"reply"}`) or `error`.
pub(crate) async fn chat(State(c): State<Console>, b: Result<Json<ChatBody>, JsonRejection>) -> Response {
    c.stats.request();
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if c.vol.limits().read_only {
        return failed(VolumeError::ReadOnly);
    }
    if let Err(e) = magicfs_volume::check_session_id(&b.session) {
        return failed(e);
    }
    if b.message.trim().is_empty() {
        return failed(VolumeError::BadArgument("the message is empty: say something".into()));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    tokio::task::spawn_blocking(move || {
        let piece_tx = tx.clone();
        let r = c.vol.chat(&b.session, &b.message, &mut |piece| {
            let _ = piece_tx.send(Event::default().event("piece").data(json!({ "text": piece }).to_string()));
        });
        let last = match r {
            Ok(reply) => Event::default().event("done").data(json!({ "reply": reply }).to_string()),
            Err(e) => {
                Event::default().event("error").data(json!({ "error": e.to_string(), "kind": e.kind() }).to_string())
            }
        };
        let _ = tx.send(last);
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GenerateBody {
    prompt: String,
    path: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    fill: bool,
}

/// `POST /console/api/generate`: `kind` `file` (default) or `tree`.
pub(crate) async fn generate(State(c): State<Console>, b: Result<Json<GenerateBody>, JsonRejection>) -> Response {
    c.stats.request();
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    answer(
        blocking(move || match b.kind.as_deref().unwrap_or("file") {
            "file" => c.vol.generate_file(&b.path, &b.prompt).map(|e| json!({ "file": e })),
            "tree" => {
                let files = c.vol.generate_tree(&b.path, &b.prompt, b.fill, &mut |_, _, _| {})?;
                Ok(json!({ "dir": VPath::parse(&b.path)?.display(), "files": files }))
            }
            other => Err(VolumeError::BadArgument(format!("kind {other:?}: use file or tree"))),
        })
        .await,
    )
}

/// A size: a number of bytes, or text such as `64KiB`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Size {
    Bytes(u64),
    Text(String),
}

fn size(s: Option<Size>, what: &str) -> Result<Option<u64>, VolumeError> {
    match s {
        None => Ok(None),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(Size::Text(t)) => magicfs_compute::parse_size(t.trim())
            .map(Some)
            .map_err(|e| VolumeError::BadArgument(format!("{what}: {e}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ComputeBody {
    path: String,
    op: String,
    #[serde(default)]
    imm: Option<u8>,
    #[serde(default)]
    offset: Option<Size>,
    #[serde(default)]
    length: Option<Size>,
    #[serde(default)]
    window: Option<Size>,
}

/// `POST /console/api/compute`.
pub(crate) async fn compute(State(c): State<Console>, b: Result<Json<ComputeBody>, JsonRejection>) -> Response {
    c.stats.request();
    let b = match body(b) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let stats = c.stats.clone();
    let r = blocking(move || {
        let req = ComputeRequest {
            op: b.op,
            imm: b.imm,
            offset: size(b.offset, "offset")?,
            length: size(b.length, "length")?,
            window: size(b.window, "window")?,
        };
        c.vol.compute(&b.path, &req)
    })
    .await;
    if let Ok(out) = &r {
        stats.computed(out.bytes);
    }
    answer(r)
}

/// `GET /console/api/status`: the volume's status and the console's counters.
pub(crate) async fn status(State(c): State<Console>) -> Response {
    let stats = c.stats.json();
    answer(
        blocking(move || {
            let mut v: Value = c.vol.status()?;
            v["console"] = stats;
            Ok(v)
        })
        .await,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn dispositions_are_encoded() {
        let d = super::disposition("<img src=x onerror=alert(1)>\"\r\n");
        assert!(d.is_ascii() && !d.contains('<') && !d.contains('\r'), "{d}");
        assert!(d.ends_with("%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%22%0D%0A"), "{d}");
    }
}
