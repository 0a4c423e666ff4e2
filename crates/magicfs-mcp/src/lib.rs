//! The MagicFS MCP server: one volume ([`magicfs_volume::Volume`]) as Model
//! Context Protocol tools and resources, written with the official Rust SDK
//! (`rmcp`).
//!
//! - Tools: `list`, `read`, `write`, `mkdir`, `move`, `delete`, `stat`,
//!   `search`, `chat`, `generate`, `compute`, `status` ([`server`]), each
//!   with a JSON schema ([`args`]).
//! - Resources: every file as `magicfs:///PATH`, and `magicfs:///.magic/status`.
//! - Transports: stdio ([`serve_stdio`]) or streamable HTTP behind a bearer
//!   token ([`serve_http`]).
#![warn(missing_docs)]

pub mod args;
pub mod server;

pub use server::{McpServer, STATUS_URI, WRITING_TOOLS};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use magicfs_volume::Volume;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// Serves `vol` over `input` and `output` (standard input and output for a
/// local agent) until the client closes them.
pub async fn serve_stdio<R, W>(vol: Arc<Volume>, input: R, output: W) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
    W: tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = McpServer::new(vol)
        .serve((input, output))
        .await
        .map_err(|e| std::io::Error::other(format!("the MCP session did not start: {e}")))?;
    service.waiting().await.map_err(|e| std::io::Error::other(format!("the MCP session failed: {e}")))?;
    Ok(())
}

/// The path the MCP endpoint answers on.
pub const HTTP_PATH: &str = "/mcp";

/// The HTTP router of the MCP endpoint: `POST/GET/DELETE /mcp`, every
/// request checked for `Authorization: Bearer <token>`.
pub fn http_router(vol: Arc<Volume>, token: &str, listen: SocketAddr) -> axum::Router {
    // Host checks stop DNS rebinding against a loopback server; a server
    // listening elsewhere is reached by names only its operator knows, and
    // the token guards it either way.
    let config = if listen.ip().is_loopback() {
        StreamableHttpServerConfig::default()
    } else {
        StreamableHttpServerConfig::default().disable_allowed_hosts()
    }
    .with_sse_keep_alive(Some(std::time::Duration::from_secs(15)));
    let service = StreamableHttpService::new(
        move || Ok(McpServer::new(vol.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let token: Arc<str> = Arc::from(token);
    axum::Router::new()
        .nest_service(HTTP_PATH, service)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route; the MCP endpoint is /mcp") })
        .layer(middleware::from_fn_with_state(token, guard))
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

async fn guard(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    if !magicfs_http::authorized(request.headers(), &token) {
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer TOKEN)");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    next.run(request).await
}

/// Serves `vol` over streamable HTTP on `listen` until `shutdown` completes;
/// `on_listen` hears the bound address (port 0 picks one).
pub async fn serve_http(
    vol: Arc<Volume>,
    listen: SocketAddr,
    token: &str,
    on_listen: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if token.is_empty() {
        return Err(std::io::Error::other("the HTTP transport needs a token (--token or MAGICFS_TOKEN)"));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::other(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr()?;
    let router = http_router(vol, token, addr);
    on_listen(addr);
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
