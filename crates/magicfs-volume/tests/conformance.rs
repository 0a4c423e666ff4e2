//! Both backends pass the conformance suite: a host directory through
//! [`MountBackend`] and an in-memory store through [`StoreBackend`] (the
//! FUSE mount and an on-disk store run it in `crates/magicfs/tests/agents.rs`).

use magicfs_core::{Fs, FsConfig};
use magicfs_volume::{conformance, Limits, MountBackend, StoreBackend, StoreParts, Volume, VolumeError};
use std::sync::Arc;

fn limits() -> Limits {
    Limits { max_read: 64 << 10, max_write: 1 << 20, ..Limits::default() }
}

#[test]
fn host_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let b = MountBackend::open(tmp.path()).unwrap();
    assert!(!b.is_magicfs());
    let vol = Volume::new(Arc::new(b), limits());
    let root = tmp.path().to_path_buf();
    conformance::run(&vol, &|p, t| std::os::unix::fs::symlink(t, root.join(p)).unwrap());
    // The MagicFS features say why they cannot answer here.
    assert!(matches!(vol.search("disks", 5), Err(VolumeError::Unavailable(_))));
    assert!(matches!(vol.chat("s", "hi", &mut |_| {}), Err(VolumeError::Unavailable(_))));
    std::fs::write(root.join("f"), "x").unwrap();
    let ro = Volume::new(vol.backend().clone(), Limits { read_only: true, ..limits() });
    conformance::read_only(&ro, "f");
}

#[test]
fn memory_store() {
    let fs = Arc::new(Fs::memory(FsConfig::default()));
    let parts = StoreParts { fs: fs.clone(), data_dir: "memory".into(), index: None, sessions: None, engine: None };
    let vol = Volume::new(Arc::new(StoreBackend::new(parts)), limits());
    conformance::run(&vol, &|p, t| {
        fs.symlink_path(t, p).unwrap();
    });
    assert!(matches!(vol.search("disks", 5), Err(VolumeError::Unavailable(_))));
    // The names a mount shows as virtual directories are reserved.
    assert!(matches!(vol.mkdir("search", false), Err(VolumeError::BadArgument(_))));
    assert!(matches!(
        vol.write(".magic", b"x", magicfs_volume::WriteMode::Overwrite, false),
        Err(VolumeError::BadArgument(_))
    ));
    let st = vol.status().unwrap();
    assert_eq!(st["volume"]["kind"], "store");
    assert!(st["files"].is_u64(), "{st}");
}
