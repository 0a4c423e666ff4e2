//! MagicFS edge server: near-data compute and ranged file reads over HTTP.
//!
//! [`Server`] answers on one address for a set of root directories
//! ([`ServeConfig`]):
//!
//! | route | what it does |
//! |---|---|
//! | `GET /health` | `{"status":"ok","version":…,"roots":[…]}`; needs no token |
//! | `POST /compute` | runs a [`magicfs_compute`] program over a memory map of a file under a root |
//! | `GET /files/PATH` | the file `PATH` under the first root, with `Range`, `ETag` and `If-None-Match` |
//! | `GET /metrics` | request counts and compute totals in the Prometheus text format |
//! | `GET /probe` | a local compute-rate measurement, for endpoint weighting |
//! | `/transfer/…` | recipe transfers: receive a file as a recipe plus missing chunks, or serve one (see `transfer.rs`) |
//!
//! A compute request's `data_url` may also be `http://…` on a host on the
//! server's allowlist (`ServeConfig::allow`, loopback by default); it is read
//! with range requests (`magicfs_remote`).
//!
//! With a token configured, every route but `/health` needs
//! `Authorization: Bearer TOKEN`. Every error is a JSON object
//! `{"error":"…"}` with a 4xx or 5xx status ([`HttpError`]).
#![warn(missing_docs)]

mod auth;
mod compute;
mod config;
mod error;
mod files;
mod metrics;
pub mod range;
mod roots;
mod server;
mod transfer;

pub use auth::authorized;
pub use config::{ServeConfig, DEFAULT_MAX_BODY};
pub use error::{HttpError, HttpResult};
pub use roots::Roots;
pub use server::{run_until_signal, run_until_signal_with, Server};
