//! Several filesystems mounting one shared volume: what one commits, the
//! others see; mutations stay atomic and counts exact across mounts;
//! unlinked files stay readable where they are open. Run over a shared
//! memory volume here, and over PostgreSQL by the engine's own tests
//! (`magicfs-meta-pg`), through the same functions in `cluster_suite`.

mod cluster_suite;

use cluster_suite::Volume;
use magicfs_core::{Fs, FsConfig};
use magicfs_store::{MemPacks, MemVolume, Store};
use std::sync::Arc;

struct Memory {
    meta: Arc<MemVolume>,
    chunks: Arc<MemPacks>,
}

impl Volume for Memory {
    fn store(&self) -> Store {
        Store::new(Arc::new(self.meta.session()), self.chunks.clone())
    }

    fn idle_mount(&self) -> Arc<Fs> {
        Arc::new(Fs::load_with(self.store(), FsConfig::default(), cluster_suite::fast()).expect("load"))
    }
}

fn volume() -> Memory {
    Memory { meta: MemVolume::new(), chunks: Arc::new(MemPacks::default()) }
}

cluster_suite::cluster_tests!(volume());
