//! The index's tables, as migrations of the `search` component.

use magicfs_pg::Migration;

/// Passages from which queries go through an HNSW index instead of an
/// exact scan (below it an exact scan answers in a few milliseconds).
pub const HNSW_FROM: usize = 50_000;

/// Memory for building the HNSW index (the graph of a million passages fits).
pub const HNSW_MEMORY: &str = "SET maintenance_work_mem = '2GB'";

/// The HNSW index's settings: pgvector's graph degree `m` and build-time
/// candidate list `ef_construction`, and the query-time candidate list
/// `hnsw.ef_search`. The defaults are measured at a million passages
/// (BENCHMARKS.md, "Search at scale").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hnsw {
    /// Neighbours per node.
    pub m: u32,
    /// Candidates kept while inserting a node.
    pub ef_construction: u32,
    /// Candidates kept while answering a query.
    pub ef_search: u32,
}

/// The settings a cluster volume uses.
pub const DEFAULT_HNSW: Hnsw = Hnsw { m: 16, ef_construction: 64, ef_search: 200 };

impl Hnsw {
    /// The statement that builds the index (cosine distance). Built
    /// without blocking writers; a second mount asking for it finds it there.
    pub fn create_sql(&self) -> String {
        format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS search_passages_hnsw
                ON search_passages USING hnsw (embedding vector_cosine_ops)
                WITH (m = {}, ef_construction = {})",
            self.m, self.ef_construction
        )
    }

    /// The session settings of a query: `ef_search` candidates, and an
    /// iterative scan that goes on when a filter (another model's passages)
    /// drops some of them.
    pub fn session_sql(&self) -> String {
        format!("SET hnsw.ef_search = {}; SET hnsw.iterative_scan = relaxed_order", self.ef_search)
    }
}

/// The schema steps, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "001-tables",
    sql: "CREATE EXTENSION IF NOT EXISTS vector;
        CREATE SEQUENCE IF NOT EXISTS search_seq;
        CREATE TABLE IF NOT EXISTS search_docs (
            key text PRIMARY KEY,
            seq bigint NOT NULL,
            removed boolean NOT NULL DEFAULT false,
            removed_at timestamptz,
            record jsonb NOT NULL,
            size bigint NOT NULL,
            mtime_ns bigint NOT NULL);
        CREATE INDEX IF NOT EXISTS search_docs_seq ON search_docs (seq);
        CREATE TABLE IF NOT EXISTS search_passages (
            key text NOT NULL,
            idx int NOT NULL,
            hash bytea NOT NULL,
            text text NOT NULL,
            model text NOT NULL,
            chunker text NOT NULL,
            embedding vector(384) NOT NULL,
            PRIMARY KEY (key, idx));
        CREATE TABLE IF NOT EXISTS search_claims (
            key text PRIMARY KEY,
            version text NOT NULL,
            holder text NOT NULL,
            until timestamptz NOT NULL,
            done boolean NOT NULL DEFAULT false);
        CREATE TABLE IF NOT EXISTS search_counts (docs bigint NOT NULL, passages bigint NOT NULL);
        INSERT INTO search_counts SELECT 0, 0 WHERE NOT EXISTS (SELECT 1 FROM search_counts);",
}];
