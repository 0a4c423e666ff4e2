//! The index store conformance suite over PostgreSQL with pgvector (the
//! server of the test run: scripts/cluster-up.sh), each case on a database
//! of its own; `reopen` is a second handle, as another mount holds. The
//! suite runs twice: over the PostgreSQL store alone, and over a cluster
//! mount's split (the volume's files in PostgreSQL, watched host files in
//! a redb file of the mount's machine).

use magicfs_index::conformance::Harness;
use magicfs_index::split::SplitStore;
use magicfs_index::store::{EmbeddedStore, IndexStore};
use magicfs_index_pg::PgIndexStore;
use magicfs_pg::testing::TestDb;
use magicfs_pg::{Pg, PgOptions, PgUrl};
use std::sync::{Arc, Mutex};

/// The databases of a harness, by the store opened on each (with its local store when split).
#[derive(Default)]
struct Dbs(Mutex<Vec<Opened>>);

/// A store's id, its database, its local store when split, and the database's guard.
type Opened = (usize, PgUrl, Option<Arc<dyn IndexStore>>, TestDb);

fn id(s: &Arc<dyn IndexStore>) -> usize {
    Arc::as_ptr(s) as *const u8 as usize
}

fn open(url: &PgUrl) -> Arc<dyn IndexStore> {
    let pg = Pg::connect(url, PgOptions { max_connections: 4, threads: 1, ..PgOptions::default() }).unwrap();
    Arc::new(PgIndexStore::open(pg).unwrap())
}

impl Dbs {
    fn fresh(&self, local: Option<Arc<dyn IndexStore>>) -> Arc<dyn IndexStore> {
        let db = TestDb::create().unwrap();
        let s = match &local {
            Some(l) => Arc::new(SplitStore::new(open(&db.url), l.clone())),
            None => open(&db.url),
        };
        self.0.lock().unwrap().push((id(&s), db.url.clone(), local, db));
        s
    }

    /// A second handle on the same database (and, split, the same machine's store).
    fn reopen(&self, store: &Arc<dyn IndexStore>) -> Option<Arc<dyn IndexStore>> {
        let (url, local) = {
            let dbs = self.0.lock().unwrap();
            let d = dbs.iter().find(|d| d.0 == id(store))?;
            (d.1.clone(), d.2.clone())
        };
        let s = match &local {
            Some(l) => Arc::new(SplitStore::new(open(&url), l.clone())),
            None => open(&url),
        };
        Some(s)
    }
}

#[derive(Default)]
struct Postgres(Dbs);

impl Harness for Postgres {
    fn fresh(&self) -> Arc<dyn IndexStore> {
        self.0.fresh(None)
    }

    fn reopen(&self, store: &Arc<dyn IndexStore>) -> Option<Arc<dyn IndexStore>> {
        self.0.reopen(store)
    }

    fn shared(&self) -> bool {
        true
    }
}

/// PostgreSQL for the volume's files, a redb file for the host's.
struct Split {
    dbs: Dbs,
    dir: tempfile::TempDir,
}

impl Harness for Split {
    fn fresh(&self) -> Arc<dyn IndexStore> {
        let n = self.dbs.0.lock().unwrap().len();
        let local = EmbeddedStore::open(&self.dir.path().join(format!("search-{n}.redb"))).unwrap();
        self.dbs.fresh(Some(Arc::new(local)))
    }

    fn reopen(&self, store: &Arc<dyn IndexStore>) -> Option<Arc<dyn IndexStore>> {
        self.dbs.reopen(store)
    }

    fn shared(&self) -> bool {
        true
    }
}

mod postgres {
    magicfs_index::store_conformance!(super::Postgres::default());
}

mod split {
    magicfs_index::store_conformance!(super::Split { dbs: super::Dbs::default(), dir: tempfile::tempdir().unwrap() });
}
