//! The one HTTP client of MagicFS, used by the language-model backend,
//! remote data sources, compute endpoints and push/pull.
//!
//! | module | what it holds |
//! |---|---|
//! | [`url`] | [`HttpUrl`]: `http://` and `https://` URLs, origins, `Location` joins, path encoding |
//! | [`allow`] | the [`Allowlist`] of hosts requests may reach, resolved once and pinned |
//! | [`tls`] | trust roots: the system's certificates plus a CA file (`--ca-file`) |
//! | [`client`] | [`Client`]: pooled connections (ureq over rustls), timeouts, proxies from the environment, same-origin redirects, size limits, bytes on the wire |
//! | [`sse`] | server-sent events, multi-line `data:` fields included |
//!
//! Everything here is blocking; a server calls it from blocking threads.
#![warn(missing_docs)]

pub mod allow;
pub mod client;
mod connect;
mod error;
pub mod sse;
pub mod tls;
pub mod url;

pub use allow::Allowlist;
pub use client::{Client, Response, Timeouts};
pub use error::{NetError, NetResult};
pub use url::HttpUrl;
