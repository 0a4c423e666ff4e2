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
mod range;
mod roots;
mod server;

pub use config::{ServeConfig, DEFAULT_MAX_BODY};
pub use error::{HttpError, HttpResult};
pub use roots::Roots;
pub use server::{run_until_signal, Server};
