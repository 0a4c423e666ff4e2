//! The router, the checks every request passes, and starting and stopping.
//!
//! [`app`] builds the whole service: the API's routes ([`routes`]) merged
//! with any other router (a console, say), behind the same layers — request
//! logging, the token, the request limit, JSON errors. [`Server`] serves it
//! on a listening socket ([`crate::listen`]).

use crate::auth::authorized;
use crate::compute::compute;
use crate::config::{Limits, ServeConfig};
use crate::conns::Conns;
use crate::error::{json_error, HttpError, HttpResult};
use crate::files::file;
use crate::metrics::{route_label, Metrics};
use crate::roots::Roots;
use crate::transfer;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// What every handler shares. A router merged in with [`app`] may use it
/// (the token check, the roots).
#[derive(Clone)]
pub struct AppState {
    /// The directories files are read from.
    pub(crate) roots: Arc<Roots>,
    /// The bearer token, if one is required.
    pub(crate) token: Option<Arc<str>>,
    /// Counters for `/metrics`.
    pub(crate) metrics: Arc<Metrics>,
    /// Largest request body accepted, in bytes.
    pub(crate) max_body: usize,
    /// How `http(s)://` data sources are read.
    pub(crate) fetch: magicfs_remote::FetchConfig,
    /// Recipe transfer sessions and the chunk index.
    pub(crate) transfers: Arc<crate::transfer::Transfers>,
    /// Connection, request and time limits.
    pub(crate) limits: Arc<Limits>,
    /// Requests being handled (`/health` aside).
    pub(crate) requests: Arc<Semaphore>,
    /// Compute programs running.
    pub(crate) compute_slots: Arc<Semaphore>,
    /// The open connections.
    pub(crate) conns: Arc<Conns>,
    /// Paths answered without the token besides `/health`.
    pub(crate) public: Option<fn(&str) -> bool>,
}

impl AppState {
    /// The shared state for `config`.
    pub fn new(config: &ServeConfig) -> AppState {
        let limits = config.limits.clone();
        AppState {
            roots: Arc::new(Roots::new(config.roots.clone())),
            token: config.token.as_deref().map(Arc::from),
            metrics: Arc::new(Metrics::default()),
            max_body: config.max_body,
            fetch: magicfs_remote::FetchConfig {
                streams: config.streams,
                ..magicfs_remote::FetchConfig::new(magicfs_remote::Client::new(config.allow.clone()))
            },
            transfers: crate::transfer::new_state(),
            requests: Arc::new(Semaphore::new(limits.max_requests.max(1))),
            compute_slots: Arc::new(Semaphore::new(limits.max_compute.max(1))),
            conns: Conns::new(limits.max_connections),
            limits: Arc::new(limits),
            public: config.public,
        }
    }

    /// True when the server requires no token, or `headers` carry it.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        self.token.as_deref().is_none_or(|t| authorized(headers, t))
    }

    /// True when the server requires a token and `headers` carry it.
    pub fn token_given(&self, headers: &HeaderMap) -> bool {
        self.token.as_deref().is_some_and(|t| authorized(headers, t))
    }

    /// The directories files are read from.
    pub fn roots(&self) -> &Roots {
        &self.roots
    }
}

/// A server bound to its address, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: AppState,
    router: Router,
}

impl Server {
    /// Binds `config.listen` (with TLS when `config.tls` names files) and
    /// prepares the routes. Must be called inside a Tokio runtime.
    pub async fn bind(config: ServeConfig) -> HttpResult<Server> {
        Server::bind_with(config, Router::new()).await
    }

    /// [`Server::bind`] with more routes (a console, say), served behind the
    /// same TLS, limits, logs and token as the API.
    pub async fn bind_with(config: ServeConfig, extra: Router) -> HttpResult<Server> {
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let listener =
            listen(config.listen).map_err(|e| HttpError::Io(format!("cannot listen on {}", config.listen), e))?;
        let addr = listener.local_addr().map_err(|e| HttpError::Io("cannot read the listening address".into(), e))?;
        let state = AppState::new(&config);
        let router = app(&state, extra);
        Ok(Server { listener, addr, tls, state, router })
    }

    /// The address the server listens on (the chosen port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// True when the server speaks `https://`.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes, then gives the requests in flight
    /// [`Limits::shutdown_grace`] to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> HttpResult<()> {
        crate::listen::serve(self.listener, self.tls, self.state, self.router, shutdown).await;
        Ok(())
    }
}

/// A listening socket with a long accept queue (4096, or the system's
/// `somaxconn`), so bursts of connections wait in the kernel instead of
/// having their SYNs dropped.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Starts a runtime, binds, calls `on_listen` with the address, and serves
/// until SIGINT or SIGTERM. Work still running on blocking threads after
/// the grace period is abandoned, so the process stops promptly.
pub fn run_until_signal(config: ServeConfig, on_listen: impl FnOnce(SocketAddr)) -> HttpResult<()> {
    run_until_signal_with(config, Router::new(), on_listen)
}

/// [`run_until_signal`] with `extra` routes merged in ([`Server::bind_with`]).
pub fn run_until_signal_with(config: ServeConfig, extra: Router, on_listen: impl FnOnce(SocketAddr)) -> HttpResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("magicfs-http")
        .build()
        .map_err(|e| HttpError::Io("cannot start the server's runtime".into(), e))?;
    let result = runtime.block_on(async move {
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
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// The API's routes, with the state applied and no layers.
pub fn routes(state: &AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/compute", post(compute))
        .route("/files/{*path}", get(file))
        .route("/metrics", get(metrics))
        .route("/probe", get(probe))
        .route("/transfer/offer", post(transfer::offer))
        .route("/transfer/{id}/chunks", post(transfer::chunks))
        .route("/transfer/{id}/commit", post(transfer::commit))
        .route("/transfer/recipe/{*path}", get(transfer::recipe))
        .route("/transfer/fetch", post(transfer::fetch))
        .with_state(state.clone())
}

/// The whole service: the API's routes and `extra` behind request logging
/// and [`guard`].
pub fn app(state: &AppState, extra: Router) -> Router {
    routes(state)
        .merge(extra)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(crate::log::layer())
}

/// True for routes that write files.
fn writes(method: &Method, path: &str) -> bool {
    method == Method::POST && path.starts_with("/transfer/") && path != "/transfer/fetch"
}

/// Around every request: checks the token (all routes but `/health` and the
/// public paths of a merged router), refuses
/// writes on a server without a token, holds one of the request slots (a
/// 503 when none is free), runs the handler on its own task so that a panic
/// becomes a 500, turns any error without a JSON body into one, and counts
/// the answer.
async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    host_from_authority(&mut request);
    let body_timeout = state.limits.body_timeout;
    let (body, timed_out) = crate::body::Deadline::wrap(std::mem::take(request.body_mut()), body_timeout);
    *request.body_mut() = body;
    let path = request.uri().path().to_string();
    let route = route_label(&path);
    let public = state.public.is_some_and(|f| f(&path));
    let response = if route == "/health" {
        run(next, request).await
    } else if !public && !state.authorized(request.headers()) {
        HttpError::Unauthorized.into_response()
    } else if writes(request.method(), &path) && state.token.is_none() {
        HttpError::Forbidden(
            "this server accepts no writes: it has no token; start it with --token (or MAGICFS_TOKEN) to receive files"
                .into(),
        )
        .into_response()
    } else {
        match state.requests.clone().try_acquire_owned() {
            Ok(permit) => {
                let response = run(next, request).await;
                drop(permit);
                response
            }
            Err(_) => HttpError::Busy(format!(
                "the server is handling {} requests, its limit; retry shortly",
                state.limits.max_requests
            ))
            .into_response(),
        }
    };
    // A body that ran out of time fails whichever way the route read it: 408.
    let response = if timed_out.load(std::sync::atomic::Ordering::Relaxed) && response.status().is_client_error() {
        HttpError::Timeout(format!(
            "the request body did not arrive within {} s; send it without pauses",
            body_timeout.as_secs_f64()
        ))
        .into_response()
    } else {
        json_errors(response)
    };
    state.metrics.request(route, response.status().as_u16());
    response
}

/// An HTTP/2 request names its host in `:authority`, not in `Host`; the
/// routes merged in (the console's same-origin check, the MCP endpoint's
/// host check) read `Host`, so it is filled in from the authority.
fn host_from_authority(request: &mut Request) {
    if request.headers().contains_key(header::HOST) {
        return;
    }
    let Some(value) = request.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) else {
        return;
    };
    request.headers_mut().insert(header::HOST, value);
}

/// Runs the rest of the stack on its own task: a panic becomes a 500.
async fn run(next: Next, request: Request) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(e) => HttpError::Internal(format!("the request failed inside the server: {e}")).into_response(),
    }
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

/// `GET /health`: `ok` and the version; the roots too for a request that
/// carries the server's token.
async fn health(State(state): State<AppState>, headers: HeaderMap) -> Json<serde_json::Value> {
    let mut answer = serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") });
    if state.token_given(&headers) {
        let roots: Vec<String> = state.roots.dirs().iter().map(|d| d.display().to_string()).collect();
        answer["roots"] = roots.into();
    }
    Json(answer)
}

/// `GET /metrics`.
async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render(state.conns.counts())).into_response()
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
