//! The index store conformance suite over the embedded stores: records in
//! a redb file (reopened as after a restart), in memory, and split in two
//! as a cluster mount splits them.

use magicfs_index::conformance::Harness;
use magicfs_index::split::SplitStore;
use magicfs_index::store::{EmbeddedStore, IndexStore};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Stores in `search.redb` files of a temporary directory.
struct Redb {
    dir: tempfile::TempDir,
    paths: Mutex<Vec<(usize, PathBuf)>>,
}

impl Redb {
    fn new() -> Redb {
        Redb { dir: tempfile::tempdir().unwrap(), paths: Mutex::default() }
    }
}

fn id(s: &Arc<dyn IndexStore>) -> usize {
    Arc::as_ptr(s) as *const u8 as usize
}

impl Harness for Redb {
    fn fresh(&self) -> Arc<dyn IndexStore> {
        let mut paths = self.paths.lock().unwrap();
        let p = self.dir.path().join(format!("search-{}.redb", paths.len()));
        let s: Arc<dyn IndexStore> = Arc::new(EmbeddedStore::open(&p).unwrap());
        paths.push((id(&s), p));
        s
    }

    fn reopen(&self, store: &Arc<dyn IndexStore>) -> Option<Arc<dyn IndexStore>> {
        let p = self.paths.lock().unwrap().iter().find(|(i, _)| *i == id(store))?.1.clone();
        store.sync().unwrap();
        // One process holds a redb file at a time: the old handle is closed
        // when the test drops it; reopen from a copy taken now.
        let copy = p.with_extension(format!("reopened-{}", self.paths.lock().unwrap().len()));
        std::fs::copy(&p, &copy).unwrap();
        let s: Arc<dyn IndexStore> = Arc::new(EmbeddedStore::open(&copy).unwrap());
        self.paths.lock().unwrap().push((id(&s), copy));
        Some(s)
    }

    fn shared(&self) -> bool {
        false
    }
}

struct Memory;

impl Harness for Memory {
    fn fresh(&self) -> Arc<dyn IndexStore> {
        Arc::new(EmbeddedStore::memory())
    }

    fn reopen(&self, _: &Arc<dyn IndexStore>) -> Option<Arc<dyn IndexStore>> {
        None
    }

    fn shared(&self) -> bool {
        false
    }
}

/// A cluster mount's split: mount files in one store, host files in another.
struct Split;

impl Harness for Split {
    fn fresh(&self) -> Arc<dyn IndexStore> {
        Arc::new(SplitStore::new(Arc::new(EmbeddedStore::memory()), Arc::new(EmbeddedStore::memory())))
    }

    fn reopen(&self, _: &Arc<dyn IndexStore>) -> Option<Arc<dyn IndexStore>> {
        None
    }

    fn shared(&self) -> bool {
        false
    }
}

mod redb {
    magicfs_index::store_conformance!(super::Redb::new());
}

mod memory {
    magicfs_index::store_conformance!(super::Memory);
}

mod split {
    magicfs_index::store_conformance!(super::Split);
}
