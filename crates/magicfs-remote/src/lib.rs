//! MagicFS remote data: compute over data that lives elsewhere, spread over
//! several edge servers, and files moved as recipes of chunk hashes.
//!
//! | module | what it holds |
//! |---|---|
//! | [`url`], [`client`] | a small blocking HTTP/1.1 client: one connection per request, every byte counted, redirects only within one origin |
//! | [`allow`] | the [`Allowlist`] of hosts remote reads may reach (default: loopback only; link-local never unless named exactly) |
//! | [`planner`] | the range planner: windows widened to 1 MiB blocks, coalesced, cut into requests and bounded batches |
//! | [`fetch`] | range requests with a per-origin stream cap, retries with backoff, cache statistics |
//! | [`source`] | [`HttpSource`]: compute over an `http://` object; `probe_asset` for `magicfs assets probe` |
//! | [`endpoints`] | the endpoint [`Registry`] (JSON file, budgets, probes, usage) |
//! | [`schedule`] | [`run_job`]: one job over several `magicfs serve` endpoints |
//! | [`recipe`], [`index`], [`transfer`] | recipe transfers: recipes, the chunk index, push, pull and the receiving side |
//!
//! Everything here is blocking; a server calls it from blocking threads.
#![warn(missing_docs)]

pub mod allow;
pub mod client;
pub mod endpoints;
mod error;
pub mod fetch;
pub mod index;
pub mod planner;
pub mod recipe;
pub mod schedule;
pub mod source;
pub mod transfer;
pub mod url;

pub use allow::Allowlist;
pub use client::Client;
pub use endpoints::{Endpoint, Registry};
pub use error::{RemoteError, RemoteResult};
pub use fetch::{FetchConfig, FetchStats};
pub use schedule::{run_job, JobOptions, JobReport};
pub use source::{execute_url, probe_asset, HttpSource};

/// Decodes `%XX` escapes; `None` for a malformed escape or bytes that are not UTF-8.
pub fn url_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
