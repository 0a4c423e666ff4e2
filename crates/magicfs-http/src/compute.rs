//! `POST /compute`: a compute program over a file under a root.
//!
//! The body is `{"data_url":"file:///abs/path","instructions":[…]}` (the
//! instruction format of [`magicfs_compute::instr`]); the answer is
//! `{"results":[{"op","offset","length","value"}…],"timing":{"bytes_processed","elapsed_ms"}}`.
//! The program runs on a blocking thread over a read-only memory map, at
//! most [`crate::Limits::max_compute`] programs at once (others wait their
//! turn, up to [`crate::Limits::queue_wait`], then get a 503). An
//! `http(s)://` data URL is read with range requests through
//! [`magicfs_remote::HttpSource`] when its host is on the server's allowlist
//! (empty by default).

use crate::error::{HttpError, HttpResult};
use crate::roots::{io_error, open_regular};
use crate::server::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use magicfs_compute::{execute, instr, Output};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::path::Path;
use std::time::Instant;

/// What a request sends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComputeRequest {
    data_url: String,
    instructions: Box<RawValue>,
}

/// What a successful request gets back.
#[derive(Serialize)]
pub(crate) struct ComputeResponse {
    results: Vec<Output>,
    timing: Timing,
    /// Size of the data in bytes (an empty program asks just for this).
    size: u64,
    /// What fetching an `http://` source cost, for those.
    #[serde(skip_serializing_if = "Option::is_none")]
    fetch: Option<magicfs_remote::FetchStats>,
}

/// How much was read and how long it took.
#[derive(Serialize)]
struct Timing {
    bytes_processed: u64,
    elapsed_ms: f64,
}

/// The handler.
pub(crate) async fn compute(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<Json<ComputeResponse>> {
    let body = crate::body::read(&state, &headers, body, state.max_body, "send fewer instructions per request").await?;
    let request: ComputeRequest = serde_json::from_slice(&body).map_err(|e| {
        HttpError::BadRequest(format!(
            "the request body is not a valid compute request ({e}); send {{\"data_url\":\"file:///path\",\"instructions\":[…]}}"
        ))
    })?;
    let program = instr::parse(request.instructions.get()).map_err(bad_program)?;
    let wait = state.limits.queue_wait;
    let _slot = tokio::time::timeout(wait, state.compute_slots.clone().acquire_owned())
        .await
        .map_err(|_| {
            HttpError::Busy(format!(
                "every compute slot ({}) stayed busy for {} s; retry later",
                state.limits.max_compute,
                wait.as_secs()
            ))
        })?
        .map_err(|_| HttpError::Internal("the compute slots are closed".into()))?;
    let started = Instant::now();
    let shown = request.data_url;
    let (results, size, fetch) = if is_remote(&shown) {
        let cfg = state.fetch.clone();
        let (results, size, stats) = tokio::task::spawn_blocking(move || {
            let src = magicfs_remote::HttpSource::open(&shown, &cfg)?;
            let (results, stats) = src.execute(&program, &cfg)?;
            Ok::<_, magicfs_remote::RemoteError>((results, src.size(), stats))
        })
        .await
        .map_err(|e| HttpError::Internal(format!("the computation failed: {e}")))?
        .map_err(crate::error::remote)?;
        state.metrics.fetched(stats.bytes);
        (results, size, Some(stats))
    } else {
        let path = state.roots.resolve_data_url(&shown)?;
        let (results, size) = tokio::task::spawn_blocking(move || run(&path, &shown, &program))
            .await
            .map_err(|e| HttpError::Internal(format!("the computation failed: {e}")))??;
        (results, size, None)
    };
    let elapsed = started.elapsed();
    let bytes_processed = results.iter().fold(0u64, |t, o| t.saturating_add(o.length));
    state.metrics.compute(bytes_processed, elapsed);
    Ok(Json(ComputeResponse {
        results,
        timing: Timing { bytes_processed, elapsed_ms: elapsed.as_secs_f64() * 1e3 },
        size,
        fetch,
    }))
}

/// True for `http://` and `https://` data URLs.
/// (Their hosts are checked against the allowlist when they are read.)
fn is_remote(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Maps the file read-only and runs the program over it; also gives the file's size.
fn run(path: &Path, shown: &str, program: &[instr::Instruction]) -> HttpResult<(Vec<Output>, u64)> {
    let (file, meta) = open_regular(path, shown, |m| {
        HttpError::BadRequest(format!("{m}; compute reads the bytes of a regular file"))
    })?;
    if meta.len() == 0 {
        return Ok((execute(&[], program).map_err(bad_program)?, 0));
    }
    // SAFETY: the map is read-only and dropped when this request ends. A file
    // truncated by another process meanwhile raises SIGBUS on the lost pages,
    // as for any reader of a mapped file; the roots are meant to hold data
    // that is not rewritten in place while served.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| io_error(shown, &e))?;
    Ok((execute(&map, program).map_err(bad_program)?, meta.len()))
}

/// A program that does not fit the file is the client's error.
fn bad_program(e: magicfs_compute::ComputeError) -> HttpError {
    HttpError::BadRequest(e.to_string())
}
