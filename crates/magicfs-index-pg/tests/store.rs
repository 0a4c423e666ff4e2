//! The index store conformance suite over PostgreSQL with pgvector (the
//! server of the test run: scripts/cluster-up.sh), each case on a database
//! of its own; `reopen` is a second handle, as another mount holds.

use magicfs_index::conformance::Harness;
use magicfs_index::store::IndexStore;
use magicfs_index_pg::PgIndexStore;
use magicfs_pg::testing::TestDb;
use magicfs_pg::{Pg, PgOptions, PgUrl};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Postgres {
    dbs: Mutex<Vec<(usize, PgUrl, TestDb)>>,
}

fn id(s: &Arc<dyn IndexStore>) -> usize {
    Arc::as_ptr(s) as *const u8 as usize
}

fn open(url: &PgUrl) -> Arc<dyn IndexStore> {
    let pg = Pg::connect(url, PgOptions { max_connections: 4, threads: 1, ..PgOptions::default() }).unwrap();
    Arc::new(PgIndexStore::open(pg).unwrap())
}

impl Harness for Postgres {
    fn fresh(&self) -> Arc<dyn IndexStore> {
        let db = TestDb::create().unwrap();
        let s = open(&db.url);
        self.dbs.lock().unwrap().push((id(&s), db.url.clone(), db));
        s
    }

    fn reopen(&self, store: &Arc<dyn IndexStore>) -> Option<Arc<dyn IndexStore>> {
        let url = self.dbs.lock().unwrap().iter().find(|d| d.0 == id(store))?.1.clone();
        Some(open(&url))
    }

    fn shared(&self) -> bool {
        true
    }
}

magicfs_index::store_conformance!(Postgres::default());
