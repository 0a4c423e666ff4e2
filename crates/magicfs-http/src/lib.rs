//! MagicFS edge server: near-data compute and ranged file reads over HTTP
//! or HTTPS.
//!
//! [`Server`] answers on one address for a set of root directories
//! ([`ServeConfig`]):
//!
//! | route | what it does |
//! |---|---|
//! | `GET /health` | `{"status":"ok","version":…}`, plus `"roots"` for a request with the token; needs no token |
//! | `POST /compute` | runs a [`magicfs_compute`] program over a memory map of a file under a root |
//! | `GET /files/PATH` | the file `PATH` under the first root, with `Range`, `ETag` and `If-None-Match` |
//! | `GET /metrics` | request, connection and compute counts in the Prometheus text format |
//! | `GET /probe` | a local compute-rate measurement, for endpoint weighting |
//! | `/transfer/…` | recipe transfers: receive a file as a recipe plus missing chunks, or serve one (see `transfer.rs`) |
//!
//! A compute request's `data_url` may also be `http(s)://…` on a host on the
//! server's allowlist (`ServeConfig::allow`, empty by default); it is read
//! with range requests (`magicfs_remote`).
//!
//! With a token configured, every route but `/health` needs
//! `Authorization: Bearer TOKEN`; without one, the routes that write are
//! refused. Every error is a JSON object `{"error":"…"}` with a 4xx or 5xx
//! status ([`HttpError`]). [`Limits`] bounds connections, requests, compute
//! programs and the time each step of a request may take; [`app`] builds the
//! router so that other routes can be served behind the same checks.
//!
//! | module | what it holds |
//! |---|---|
//! | `server.rs` | [`AppState`], [`routes`], [`app`] (the layers), [`Server`], [`run_until_signal`] |
//! | `listen.rs` | the accept loop: connection slots, TLS handshakes, hyper (HTTP/1.1 and HTTP/2), timeouts, graceful stop |
//! | `conns.rs` | the connection cap: the longest-idle connection makes room |
//! | `tls.rs` | rustls settings from PEM files (ALPN `h2`, `http/1.1`) |
//! | `log.rs` | request logs through `tracing` (tower-http's `TraceLayer`) |
//! | `body.rs` | request bodies: a size limit and a time limit |
//! | `files.rs`, `range.rs` | `GET /files`: merged, capped, streamed ranges; entity tags |
//! | `roots.rs` | what lies under the roots, and regular files only |
//! | `compute.rs`, `transfer.rs`, `metrics.rs`, `auth.rs` | the other routes and the token check |
#![warn(missing_docs)]

mod auth;
mod body;
mod compute;
mod config;
mod conns;
mod error;
mod files;
mod listen;
mod log;
mod metrics;
pub mod range;
mod roots;
mod server;
mod tls;
mod transfer;

pub use auth::authorized;
pub use config::{Limits, ServeConfig, TlsFiles, DEFAULT_MAX_BODY};
pub use error::{HttpError, HttpResult};
pub use roots::Roots;
pub use server::{app, routes, run_until_signal, run_until_signal_with, AppState, Server};
