//! Several filesystems mounting one PostgreSQL volume in one process (the
//! cross-mount suite of `magicfs-core`, over the real server).

#[path = "../../magicfs-core/tests/cluster_suite/mod.rs"]
mod cluster_suite;

use cluster_suite::Volume;
use magicfs_core::{Fs, FsConfig};
use magicfs_meta_pg::PgMeta;
use magicfs_pg::testing::TestDb;
use magicfs_pg::PgOptions;
use magicfs_store::{MemPacks, Store};
use std::sync::Arc;
use std::time::Duration;

struct Postgres {
    db: TestDb,
    chunks: Arc<MemPacks>,
}

fn opts() -> PgOptions {
    PgOptions { retry_for: Duration::from_secs(10), max_connections: 4, ..PgOptions::default() }
}

impl Volume for Postgres {
    fn store(&self) -> Store {
        Store::new(Arc::new(PgMeta::open(&self.db.url, opts()).expect("open")), self.chunks.clone())
    }

    fn idle_mount(&self) -> Arc<Fs> {
        Arc::new(Fs::load_with(self.store(), FsConfig::default(), cluster_suite::fast()).expect("load"))
    }
}

fn volume() -> Postgres {
    let db = TestDb::create().expect("test database");
    PgMeta::format(&db.url, "file:///nowhere", opts()).expect("format");
    Postgres { db, chunks: Arc::new(MemPacks::default()) }
}

cluster_suite::cluster_tests!(volume());
