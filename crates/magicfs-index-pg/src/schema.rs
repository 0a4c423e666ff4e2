//! The index's tables, as migrations of the `search` component.

use magicfs_pg::Migration;

/// Passages from which queries go through an HNSW index instead of an
/// exact scan (below it an exact scan answers in a few milliseconds).
pub const HNSW_FROM: usize = 50_000;

/// Memory for building the HNSW index (the graph of a million passages fits).
pub const HNSW_MEMORY: &str = "SET maintenance_work_mem = '2GB'";

/// The HNSW index on the passage vectors (cosine distance, pgvector's
/// default graph size). Built without blocking writers; a second mount
/// asking for it finds it there.
pub const HNSW_SQL: &str = "CREATE INDEX CONCURRENTLY IF NOT EXISTS search_passages_hnsw
    ON search_passages USING hnsw (embedding vector_cosine_ops)";

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
        INSERT INTO search_counts SELECT 0, 0 WHERE NOT EXISTS (SELECT 1 FROM search_counts);
        -- An HNSW scan returns ef_search candidates: enough for 20 files of
        -- several passages each, and more when a filter drops some.
        DO $$ BEGIN
            EXECUTE format('ALTER DATABASE %I SET hnsw.ef_search = 200', current_database());
            EXECUTE format('ALTER DATABASE %I SET hnsw.iterative_scan = relaxed_order', current_database());
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'not the owner of the database: HNSW scans keep their defaults';
        END $$;",
}];
