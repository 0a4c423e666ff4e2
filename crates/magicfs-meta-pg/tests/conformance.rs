//! The metadata engine conformance suite over a real PostgreSQL server (the
//! test run's, see `magicfs_pg::testing`), one fresh database per test.

use magicfs_meta_pg::PgMeta;
use magicfs_pg::testing::TestDb;
use magicfs_pg::PgOptions;
use magicfs_store::conformance::Fixture;
use magicfs_store::MetaEngine;
use std::sync::Arc;
use std::time::Duration;

struct Postgres(TestDb);

fn opts() -> PgOptions {
    PgOptions { retry_for: Duration::from_secs(10), max_connections: 4, ..PgOptions::default() }
}

impl Postgres {
    fn new() -> Postgres {
        let db = TestDb::create().expect("test database");
        PgMeta::format(&db.url, "file:///nowhere", opts()).expect("format");
        Postgres(db)
    }
}

impl Fixture for Postgres {
    fn engine(&self) -> Arc<dyn MetaEngine> {
        Arc::new(PgMeta::open(&self.0.url, opts()).expect("open"))
    }

    fn another(&self) -> Option<Arc<dyn MetaEngine>> {
        Some(self.engine())
    }

    fn reopen(&self) -> Option<Arc<dyn MetaEngine>> {
        Some(self.engine())
    }
}

magicfs_store::meta_engine_conformance!(Postgres::new());
