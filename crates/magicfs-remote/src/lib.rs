//! MagicFS remote data: compute over data that lives elsewhere, spread over
//! several edge servers, and files moved as recipes of chunk hashes.
//!
//! | module | what it holds |
//! |---|---|
//! | [`magicfs_net`] (re-exported) | the HTTP client, URLs and the [`Allowlist`] of hosts remote reads may reach |
//! | [`planner`] | the range planner: windows widened to 1 MiB blocks, coalesced, cut into requests and bounded batches |
//! | [`fetch`] | range requests with a per-origin stream cap, retries with backoff, cache statistics |
//! | [`source`] | [`HttpSource`]: compute over an `http(s)://` object; `probe_asset` for `magicfs assets probe` |
//! | [`endpoints`] | the endpoint [`Registry`] (JSON file, budgets, probes, usage) |
//! | [`schedule`] | [`run_job`]: one job over several `magicfs serve` endpoints |
//! | [`recipe`], [`index`], [`transfer`] | recipe transfers: recipes, the chunk index, push, pull and the receiving side |
//!
//! Everything here is blocking; a server calls it from blocking threads.
#![warn(missing_docs)]

pub mod endpoints;
mod error;
pub mod fetch;
pub mod index;
pub mod planner;
pub mod recipe;
pub mod schedule;
pub mod source;
pub mod transfer;

pub use endpoints::{Endpoint, Registry};
pub use error::{RemoteError, RemoteResult};
pub use fetch::{FetchConfig, FetchStats};
pub use magicfs_net::{url, Allowlist, Client, HttpUrl};
pub use schedule::{run_job, JobOptions, JobReport};
pub use source::{execute_url, probe_asset, HttpSource};
