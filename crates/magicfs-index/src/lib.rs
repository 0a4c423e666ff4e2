//! Hybrid search for MagicFS: by meaning and by words.
//!
//! Files of the mount (re-indexed after they are closed) and of watched host
//! directories are turned into text ([`extract`]), cut into overlapping
//! passages of at most 256 tokens ([`passage`]), embedded with
//! all-MiniLM-L6-v2 ([`magicfs_embed`]) on one low-priority thread, and kept
//! behind the [`store::IndexStore`] trait: by default a persistent record set
//! ([`records`]: `search.redb` beside the store) and an in-memory matrix
//! scanned exactly on all cores ([`vectors`]); a cluster mount keeps the
//! volume's files in the store its mounts share and watched host files on
//! its own machine ([`split`]). The same passages are in a
//! BM25 index ([`lexical`], tantivy), and a query's two rankings are fused
//! ([`fusion`]). A file scores by its best passage. [`Index`] ties these
//! together; the FUSE layer shows its results as `search/<query>/`.

pub mod conformance;
pub mod extract;
pub mod fusion;
mod index;
pub mod lexical;
pub mod passage;
pub mod records;
pub mod split;
pub mod store;
pub mod vectors;
mod watch;
mod worker;

pub use index::{
    normalize_query, Hit, Index, IndexConfig, IndexStatus, Results, WatchState, DEFAULT_MIN_SCORE, DEFAULT_TOP_K,
    MAX_QUERY_BYTES, SESSIONS_PREFIX,
};
pub use worker::MAX_PASSAGES_PER_FILE;

use std::fmt;

/// Failures of the index's storage.
#[derive(Debug, Clone)]
pub enum IndexError {
    /// The record database failed.
    Store(String),
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::Store(m) => write!(f, "search index: {m}"),
        }
    }
}

impl std::error::Error for IndexError {}

/// Why a query has no results.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchError {
    /// The query is empty (after trimming whitespace).
    EmptyQuery,
    /// The model could not be loaded.
    Model(String),
    /// The index failed.
    Index(String),
}

impl fmt::Display for SearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SearchError::EmptyQuery => write!(f, "empty query"),
            SearchError::Model(m) => write!(f, "search model unavailable: {m}"),
            SearchError::Index(m) => write!(f, "search index: {m}"),
        }
    }
}

impl std::error::Error for SearchError {}
