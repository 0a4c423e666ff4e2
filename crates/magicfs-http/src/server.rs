//! The router, the checks every request passes, and the listening loop.

use crate::auth::authorized;
use crate::compute::compute;
use crate::config::ServeConfig;
use crate::error::{json_error, HttpError, HttpResult};
use crate::files::file;
use crate::metrics::{route_label, Metrics};
use crate::roots::Roots;
use crate::transfer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The directories files are read from.
    pub(crate) roots: Arc<Roots>,
    /// The bearer token, if one is required.
    pub(crate) token: Option<Arc<str>>,
    /// Counters for `/metrics`.
    pub(crate) metrics: Arc<Metrics>,
    /// Largest request body accepted, in bytes.
    pub(crate) max_body: usize,
    /// How `http://` data sources are read.
    pub(crate) fetch: magicfs_remote::FetchConfig,
    /// Recipe transfer sessions and the chunk index.
    pub(crate) transfers: Arc<crate::transfer::Transfers>,
    /// Paths answered without the token besides `/health`.
    pub(crate) public: Option<fn(&str) -> bool>,
}

/// A server bound to its address, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    router: Router,
}

impl Server {
    /// Binds `config.listen` and prepares the routes. Must be called inside a
    /// Tokio runtime.
    pub async fn bind(config: ServeConfig) -> HttpResult<Server> {
        Server::bind_with(config, Router::new()).await
    }

    /// Like [`Server::bind`], with `extra` routes merged in behind the same
    /// checks (token, body limit, JSON errors, counting).
    pub async fn bind_with(config: ServeConfig, extra: Router) -> HttpResult<Server> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| HttpError::Io(format!("cannot listen on {}", config.listen), e))?;
        let addr = listener.local_addr().map_err(|e| HttpError::Io("cannot read the listening address".into(), e))?;
        let state = AppState {
            roots: Arc::new(Roots::new(config.roots)),
            token: config.token.map(Arc::from),
            metrics: Arc::new(Metrics::default()),
            max_body: config.max_body,
            fetch: magicfs_remote::FetchConfig {
                streams: config.streams,
                ..magicfs_remote::FetchConfig::new(magicfs_remote::Client::new(config.allow))
            },
            transfers: crate::transfer::new_state(),
            public: config.public,
        };
        Ok(Server { listener, addr, router: router(state, extra) })
    }

    /// The address the server listens on (the chosen port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> HttpResult<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| HttpError::Io("the server stopped".into(), e))
    }
}

/// Starts a runtime, binds, calls `on_listen` with the address, and serves
/// until SIGINT or SIGTERM.
pub fn run_until_signal(config: ServeConfig, on_listen: impl FnOnce(SocketAddr)) -> HttpResult<()> {
    run_until_signal_with(config, Router::new(), on_listen)
}

/// Like [`run_until_signal`], with `extra` routes merged in ([`Server::bind_with`]).
pub fn run_until_signal_with(config: ServeConfig, extra: Router, on_listen: impl FnOnce(SocketAddr)) -> HttpResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("magicfs-http")
        .build()
        .map_err(|e| HttpError::Io("cannot start the server's runtime".into(), e))?;
    runtime.block_on(async move {
        let server = Server::bind_with(config, extra).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| HttpError::Io("cannot watch for SIGTERM".into(), e))?;
        on_listen(server.local_addr());
        server
            .run(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await
    })
}

/// The routes, with the body limit and [`guard`] around them.
fn router(state: AppState, extra: Router) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/compute", post(compute))
        .route("/files/{*path}", get(file))
        .route("/metrics", get(metrics))
        .route("/probe", get(probe))
        .route("/transfer/offer", post(transfer::offer).layer(DefaultBodyLimit::max(transfer::TRANSFER_BODY)))
        .route("/transfer/{id}/chunks", post(transfer::chunks).layer(DefaultBodyLimit::max(transfer::TRANSFER_BODY)))
        .route("/transfer/{id}/commit", post(transfer::commit))
        .route("/transfer/recipe/{*path}", get(transfer::recipe))
        .route("/transfer/fetch", post(transfer::fetch))
        .with_state(state.clone())
        .merge(extra)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.max_body))
        .layer(middleware::from_fn_with_state(state, guard))
}

/// Around every request: checks the token (all routes but `/health`), runs
/// the handler on its own task so that a panic becomes a 500, turns any error
/// without a JSON body into one, and counts the answer.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = route_label(request.uri().path());
    let public = route == "/health" || state.public.is_some_and(|f| f(request.uri().path()));
    let allowed = public || state.token.as_deref().is_none_or(|t| authorized(request.headers(), t));
    let response = if !allowed {
        HttpError::Unauthorized.into_response()
    } else {
        match tokio::spawn(next.run(request)).await {
            Ok(response) => response,
            Err(e) => HttpError::Internal(format!("the request failed inside the server: {e}")).into_response(),
        }
    };
    let response = json_errors(response);
    state.metrics.request(route, response.status().as_u16());
    response
}

/// Gives an error response that has no JSON body (one written by the
/// framework, such as 405) the body `{"error":"…"}`, keeping its headers.
fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    let fresh = json_error(status, &reason);
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in fresh.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, fresh.into_body())
}

/// `GET /health`.
async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let roots: Vec<String> = state.roots.dirs().iter().map(|d| d.display().to_string()).collect();
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION"), "roots": roots }))
}

/// `GET /metrics`.
async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

/// `GET /probe`: counts zero bytes in a resident 32 MiB buffer and says how
/// long it took, so clients can weigh this server against others.
async fn probe() -> HttpResult<Json<serde_json::Value>> {
    static BUF: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    tokio::task::spawn_blocking(|| {
        let buf = BUF.get_or_init(|| (0..32u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect());
        let program = [magicfs_compute::Instruction::new(magicfs_compute::Op::Counteq, Some(0), 0, buf.len() as u64)];
        let started = std::time::Instant::now();
        let out = magicfs_compute::execute(buf, &program).map_err(|e| HttpError::Internal(e.to_string()))?;
        let secs = started.elapsed().as_secs_f64();
        Ok(Json(serde_json::json!({
            "bytes": buf.len(),
            "elapsed_ms": secs * 1e3,
            "gbps": buf.len() as f64 / secs.max(1e-9) / 1e9,
            "zeros": out[0].value,
        })))
    })
    .await
    .map_err(|e| HttpError::Internal(format!("the probe failed: {e}")))?
}

/// Any other path.
async fn not_found() -> HttpError {
    HttpError::NotFound(
        "no such route; the routes are GET /health, POST /compute, GET /files/PATH, GET /metrics, GET /probe, POST /transfer/offer, POST /transfer/ID/chunks, POST /transfer/ID/commit, GET /transfer/recipe/PATH, POST /transfer/fetch".into(),
    )
}
