//! The metadata engine conformance suite over the engines of this crate:
//! memory, a memory volume shared by two sessions, and redb.

use magicfs_store::conformance::Fixture;
use magicfs_store::{Embedded, MemEngine, MemVolume, MetaEngine};
use std::sync::Arc;

/// The memory engine of one filesystem.
struct Memory;

impl Fixture for Memory {
    fn engine(&self) -> Arc<dyn MetaEngine> {
        Arc::new(MemEngine::new())
    }
}

/// A memory volume with several sessions.
struct Shared(Arc<MemVolume>);

impl Fixture for Shared {
    fn engine(&self) -> Arc<dyn MetaEngine> {
        Arc::new(self.0.session())
    }

    fn another(&self) -> Option<Arc<dyn MetaEngine>> {
        Some(Arc::new(self.0.session()))
    }
}

/// The redb image and write-ahead log in a temporary directory.
struct Redb(tempfile::TempDir);

impl Fixture for Redb {
    fn engine(&self) -> Arc<dyn MetaEngine> {
        Arc::new(Embedded::open(self.0.path()).expect("open"))
    }

    fn reopen(&self) -> Option<Arc<dyn MetaEngine>> {
        Some(self.engine())
    }
}

mod memory {
    magicfs_store::meta_engine_conformance!(super::Memory);
}

mod shared_memory {
    magicfs_store::meta_engine_conformance!(super::Shared(magicfs_store::MemVolume::new()));
}

mod redb {
    magicfs_store::meta_engine_conformance!(super::Redb(tempfile::tempdir().expect("tempdir")));
}
