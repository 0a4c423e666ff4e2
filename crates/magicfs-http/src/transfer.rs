//! Recipe transfers, the receiving and the serving side
//! ([`magicfs_remote::transfer`] describes the protocol):
//!
//! | route | what it does |
//! |---|---|
//! | `POST /transfer/offer` | `{"path","recipe"}` → `{"session","missing":[…],"reused"}`: chunks this server has are copied now |
//! | `POST /transfer/ID/chunks` | zstd frames of missing chunks, each checked against its BLAKE3 (a bad one ends the session: 422) |
//! | `POST /transfer/ID/commit` | whole-file BLAKE3 check, fsync, atomic rename onto the path |
//! | `GET /transfer/recipe/PATH` | the recipe of a file under the first root (for pull) |
//! | `POST /transfer/fetch` | `{"path","blake3","chunks":[…]}` → frames of those chunks (for pull) |
//!
//! Paths are relative to the first root and follow its rules; the routes
//! that write need the server's token (a server without one refuses them).
//! The chunk
//! index covers every file under the roots; it is kept in memory and brought
//! up to date (files whose size or mtime changed are re-chunked) at each
//! offer. Sessions idle for [`SESSION_TTL`] are dropped with their
//! temporary files.

use crate::error::{remote, HttpError, HttpResult};
use crate::roots::check_regular;
use crate::server::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use magicfs_remote::index::ChunkIndex;
use magicfs_remote::recipe::{hex, unhex, Recipe};
use magicfs_remote::transfer::{serve_chunks, Incoming};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Largest body of an offer or a chunk upload.
pub(crate) const TRANSFER_BODY: usize = 64 << 20;
/// Sessions idle this long are dropped.
pub const SESSION_TTL: Duration = Duration::from_secs(600);
/// Most chunks one fetch may ask for (at most 256 KiB each, so one answer
/// holds at most 64 MiB).
const MAX_FETCH: usize = magicfs_remote::transfer::FETCH_CHUNKS;

/// Transfer state shared by the handlers.
#[derive(Default)]
pub(crate) struct Transfers {
    index: Mutex<ChunkIndex>,
    sessions: Mutex<HashMap<String, Incoming>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn session_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(std::time::Instant::now());
    let b = RandomState::new().hash_one(std::process::id());
    format!("{a:016x}{b:016x}")
}

async fn read_body(state: &AppState, headers: &HeaderMap, body: Body, limit: usize) -> HttpResult<Bytes> {
    crate::body::read(state, headers, body, limit, "send fewer chunks per request").await
}

fn json_body(body: &[u8], what: &str) -> HttpResult<Value> {
    serde_json::from_slice(body).map_err(|e| HttpError::BadRequest(format!("the body is not a valid {what} ({e})")))
}

fn joined<T>(r: Result<HttpResult<T>, tokio::task::JoinError>) -> HttpResult<T> {
    r.map_err(|e| HttpError::Internal(format!("the transfer failed inside the server: {e}")))?
}

/// `POST /transfer/offer`.
pub(crate) async fn offer(State(state): State<AppState>, headers: HeaderMap, body: Body) -> HttpResult<Json<Value>> {
    let body = read_body(&state, &headers, body, TRANSFER_BODY).await?;
    let v = json_body(&body, "transfer offer; send {\"path\":\"rel/name\",\"recipe\":{…}}")?;
    let rel = v["path"].as_str().ok_or_else(|| HttpError::BadRequest("the offer has no \"path\"".into()))?;
    let recipe = Recipe::from_json(&v["recipe"]).map_err(remote)?;
    let dest = state.roots.resolve_new_in_first(rel)?;
    let st = state.clone();
    joined(
        tokio::task::spawn_blocking(move || {
            let chunks = recipe.chunks.len();
            lock(&st.transfers.sessions).retain(|_, s| s.started.elapsed() < SESSION_TTL);
            let (incoming, missing) = {
                let mut index = lock(&st.transfers.index);
                index.refresh(st.roots.dirs());
                Incoming::begin(dest, recipe, &index).map_err(remote)?
            };
            let id = session_id();
            lock(&st.transfers.sessions).insert(id.clone(), incoming);
            Ok(Json(json!({ "session": id, "missing": missing, "reused": chunks - missing.len() })))
        })
        .await,
    )
}

/// `POST /transfer/ID/chunks`.
pub(crate) async fn chunks(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<Json<Value>> {
    if !lock(&state.transfers.sessions).contains_key(&id) {
        return Err(no_session(&id));
    }
    let body = read_body(&state, &headers, body, TRANSFER_BODY).await?;
    let st = state.clone();
    joined(
        tokio::task::spawn_blocking(move || {
            let mut incoming = take(&st, &id)?;
            // On failure `incoming` is dropped here, which removes its temporary file.
            let n = incoming.accept(&body).map_err(remote)?;
            st.metrics.transfer_received(n, body.len() as u64);
            let left = incoming.left();
            lock(&st.transfers.sessions).insert(id, incoming);
            Ok(Json(json!({ "accepted": n, "left": left })))
        })
        .await,
    )
}

/// `POST /transfer/ID/commit`.
pub(crate) async fn commit(State(state): State<AppState>, Path(id): Path<String>) -> HttpResult<Json<Value>> {
    let st = state.clone();
    joined(
        tokio::task::spawn_blocking(move || {
            let incoming = take(&st, &id)?;
            let (dest, recipe) = incoming.commit().map_err(remote)?;
            let answer = json!({ "size": recipe.size, "blake3": hex(&recipe.blake3), "chunks": recipe.chunks.len() });
            lock(&st.transfers.index).insert(&dest, recipe);
            Ok(Json(answer))
        })
        .await,
    )
}

fn take(st: &AppState, id: &str) -> HttpResult<Incoming> {
    lock(&st.transfers.sessions).remove(id).ok_or_else(|| no_session(id))
}

fn no_session(id: &str) -> HttpError {
    HttpError::NotFound(format!("no transfer session {id:?} (it ended, failed or expired); offer the file again"))
}

/// `GET /transfer/recipe/PATH`.
pub(crate) async fn recipe(State(state): State<AppState>, Path(rel): Path<String>) -> HttpResult<Json<Value>> {
    let path = state.roots.resolve_in_first(&rel)?;
    check_regular(&path, &rel, HttpError::NotFound)?;
    let st = state.clone();
    joined(
        tokio::task::spawn_blocking(move || {
            let r = lock(&st.transfers.index).recipe_for(&path).map_err(remote)?;
            Ok(Json(r.to_json()))
        })
        .await,
    )
}

/// `POST /transfer/fetch`.
pub(crate) async fn fetch(State(state): State<AppState>, headers: HeaderMap, body: Body) -> HttpResult<Response> {
    let body = read_body(&state, &headers, body, state.max_body).await?;
    let v = json_body(&body, "fetch request; send {\"path\",\"blake3\",\"chunks\":[…]}")?;
    let rel = v["path"].as_str().ok_or_else(|| HttpError::BadRequest("the request has no \"path\"".into()))?;
    let want = v["blake3"]
        .as_str()
        .and_then(unhex)
        .ok_or_else(|| HttpError::BadRequest("no \"blake3\" (64 hex digits)".into()))?;
    let wanted: Vec<u32> = v["chunks"]
        .as_array()
        .and_then(|a| a.iter().map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok())).collect::<Option<Vec<_>>>())
        .ok_or_else(|| HttpError::BadRequest("\"chunks\" must be a list of chunk indices".into()))?;
    if wanted.len() > MAX_FETCH {
        return Err(HttpError::BadRequest(format!("at most {MAX_FETCH} chunks per fetch")));
    }
    let path = state.roots.resolve_in_first(rel)?;
    check_regular(&path, rel, HttpError::NotFound)?;
    let st = state.clone();
    let frames = joined(
        tokio::task::spawn_blocking(move || {
            let r = lock(&st.transfers.index).recipe_for(&path).map_err(remote)?;
            if r.blake3 != want {
                return Err(HttpError::Unprocessable(
                    "the file changed since its recipe was sent; pull it again".into(),
                ));
            }
            serve_chunks(&path, &r, &wanted).map_err(remote)
        })
        .await,
    )?;
    let octets = HeaderValue::from_static("application/octet-stream");
    Ok(([(header::CONTENT_TYPE, octets)], frames).into_response())
}

/// The shared state's transfer part.
pub(crate) fn new_state() -> Arc<Transfers> {
    Arc::new(Transfers::default())
}
