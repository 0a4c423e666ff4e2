//! POSIX semantics of the library, on the memory backend and a real store.

use magicfs_core::{Ctx, Fs, FsConfig, RenameFlags, SetAttr};
use magicfs_types::noise::noise;
use magicfs_types::{FsError, ROOT_INO};

const CTX: Ctx = Ctx { uid: 0, gid: 0 };

fn file(fs: &Fs, name: &str, data: &[u8]) -> u64 {
    let (a, fh) = fs.create(ROOT_INO, name.as_bytes(), 0o644, libc::O_RDWR, CTX).unwrap();
    fs.write(a.ino, 0, data).unwrap();
    fs.release(fh).unwrap();
    a.ino
}

#[test]
fn reads_see_writes_before_and_after_commit() {
    let fs = Fs::memory(FsConfig::default());
    let (a, fh) = fs.create(ROOT_INO, b"f", 0o644, libc::O_RDWR, CTX).unwrap();
    let data = noise(300_000, 1);
    fs.write(a.ino, 0, &data).unwrap();
    assert_eq!(fs.read(a.ino, 0, 1 << 20).unwrap(), data);
    fs.flush(a.ino).unwrap();
    assert_eq!(fs.dirty_bytes(a.ino), 0);
    assert_eq!(fs.read(a.ino, 1000, 5000).unwrap(), data[1000..6000]);
    fs.write(a.ino, 100_000, b"patch").unwrap();
    let mut want = data.clone();
    want[100_000..100_005].copy_from_slice(b"patch");
    assert_eq!(fs.read(a.ino, 0, 1 << 20).unwrap(), want);
    fs.release(fh).unwrap();
    assert_eq!(fs.read(a.ino, 0, 1 << 20).unwrap(), want);
}

#[test]
fn a_small_overwrite_rewrites_one_or_two_chunks() {
    let fs = Fs::memory(FsConfig::default());
    let ino = file(&fs, "big", &noise(8 << 20, 2));
    let before = fs.status();
    fs.write(ino, 4 << 20, b"xyz").unwrap();
    fs.flush(ino).unwrap();
    let after = fs.status();
    assert!(after.chunks <= before.chunks + 2, "{} -> {}", before.chunks, after.chunks);
    assert!(after.stored_bytes < before.stored_bytes + (600 << 10));
    assert_eq!(fs.read(ino, 4 << 20, 3).unwrap(), b"xyz");
}

#[test]
fn identical_files_share_chunks() {
    let fs = Fs::memory(FsConfig::default());
    let data = noise(2 << 20, 3);
    file(&fs, "a", &data);
    let one = fs.status();
    file(&fs, "b", &data);
    let two = fs.status();
    assert_eq!(one.chunks, two.chunks);
    assert_eq!(one.stored_bytes, two.stored_bytes);
    assert!(two.dedup_ratio > 1.99);
}

#[test]
fn truncate_shrinks_and_grows_with_zeros() {
    let fs = Fs::memory(FsConfig::default());
    let ino = file(&fs, "t", &noise(200_000, 4));
    fs.setattr(ino, SetAttr { size: Some(1000), ..Default::default() }).unwrap();
    fs.setattr(ino, SetAttr { size: Some(5000), ..Default::default() }).unwrap();
    let d = fs.read(ino, 0, 10_000).unwrap();
    assert_eq!(d.len(), 5000);
    assert_eq!(&d[..1000], &noise(200_000, 4)[..1000]);
    assert!(d[1000..].iter().all(|b| *b == 0));
}

#[test]
fn sparse_files_past_4_gib_and_seek_data_hole() {
    let fs = Fs::memory(FsConfig::default());
    let (a, fh) = fs.create(ROOT_INO, b"s", 0o644, libc::O_RDWR, CTX).unwrap();
    let far = 5u64 << 30;
    fs.write(a.ino, far, b"tail").unwrap();
    fs.release(fh).unwrap();
    assert_eq!(fs.getattr(a.ino).unwrap().size, far + 4);
    assert_eq!(fs.read(a.ino, far - 2, 6).unwrap(), b"\0\0tail");
    assert_eq!(fs.lseek(a.ino, 0, libc::SEEK_HOLE).unwrap(), 0);
    let data = fs.lseek(a.ino, 0, libc::SEEK_DATA).unwrap();
    assert!(data <= far && data > far - (256 << 10));
    assert_eq!(fs.lseek(a.ino, far + 4, libc::SEEK_DATA), Err(FsError::NoData));
}

#[test]
fn rename_flags_and_unlinked_open_files() {
    let fs = Fs::memory(FsConfig::default());
    let a = file(&fs, "a", b"A");
    let b = file(&fs, "b", b"B");
    let noreplace = RenameFlags { noreplace: true, ..Default::default() };
    assert_eq!(fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", noreplace), Err(FsError::Exists));
    let exchange = RenameFlags { exchange: true, ..Default::default() };
    fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", exchange).unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"a").unwrap().ino, b);
    assert_eq!(fs.lookup(ROOT_INO, b"b").unwrap().ino, a);

    let fh = fs.open(a, libc::O_RDONLY).unwrap();
    fs.unlink(ROOT_INO, b"b").unwrap();
    assert_eq!(fs.read(a, 0, 10).unwrap(), b"A", "still readable while open");
    fs.release(fh).unwrap();
    assert_eq!(fs.getattr(a), Err(FsError::NotFound));
}

#[test]
fn a_store_keeps_everything_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(1 << 20, 5);
    {
        let fs = Fs::open_store(dir.path(), true, FsConfig::default()).unwrap();
        let d = fs.mkdir(ROOT_INO, b"d", 0o755, CTX).unwrap();
        let (a, fh) = fs.create(d.ino, b"f", 0o600, libc::O_RDWR, CTX).unwrap();
        fs.write(a.ino, 0, &data).unwrap();
        fs.setxattr(a.ino, b"user.k", b"v", 0).unwrap();
        fs.release(fh).unwrap();
        fs.symlink(ROOT_INO, b"l", b"d/f", CTX).unwrap();
    }
    let fs = Fs::open_store(dir.path(), false, FsConfig::default()).unwrap();
    let f = fs.resolve("d/f").unwrap();
    assert_eq!(f.perm, 0o600);
    assert_eq!(fs.read(f.ino, 0, 2 << 20).unwrap(), data);
    assert_eq!(fs.getxattr(f.ino, b"user.k").unwrap(), b"v");
    assert_eq!(fs.readlink(fs.resolve("l").unwrap().ino).unwrap(), b"d/f");
    drop(fs);
    let store = magicfs_store::Store::open(dir.path(), false).unwrap();
    let report = magicfs_core::fsck::check(&store, true).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}

/// Random writes, truncates and commits on one file, checked after every
/// step against a plain byte vector: whole reads, reads at odd offsets, and
/// the shared pieces (`read_parts`) joined. Covers raw and compressed chunks,
/// dirty pages over committed extents, holes, and the pack mappings of a
/// real store.
fn reads_match_a_model(fs: &Fs) {
    use magicfs_types::noise::XorShift64;
    let mut rng = XorShift64::new(77);
    let (a, fh) = fs.create(ROOT_INO, b"model", 0o644, libc::O_RDWR, CTX).unwrap();
    let mut model: Vec<u8> = Vec::new();
    for step in 0..120 {
        match rng.next_u64() % 8 {
            0..=2 => {
                let at = (rng.next_u64() % (3 << 20)) as usize;
                let len = 1 + (rng.next_u64() % 300_000) as usize;
                // Half of the writes are text (compressed chunks), half noise (raw chunks).
                let data = if rng.next_u64().is_multiple_of(2) {
                    noise(len, step)
                } else {
                    (0..len).map(|i| b"abcdefgh "[(i + step as usize) % 9]).collect()
                };
                fs.write(a.ino, at as u64, &data).unwrap();
                if model.len() < at + len {
                    model.resize(at + len, 0);
                }
                model[at..at + len].copy_from_slice(&data);
            }
            3 => {
                let size = (rng.next_u64() % (4 << 20)) as usize;
                fs.setattr(a.ino, SetAttr { size: Some(size as u64), ..Default::default() }).unwrap();
                model.resize(size, 0);
            }
            4 | 5 => fs.flush(a.ino).unwrap(),
            // Punch a hole (the size stays) or zero a range (it may grow).
            op => {
                let at = rng.next_u64() % (model.len() as u64 + 100_000);
                let len = 1 + rng.next_u64() % 400_000;
                let mode = if op == 6 {
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
                } else {
                    libc::FALLOC_FL_ZERO_RANGE
                };
                fs.fallocate(a.ino, at, len, mode).unwrap();
                let end = (at + len) as usize;
                if op == 7 && model.len() < end {
                    model.resize(end, 0);
                }
                let stop = end.min(model.len());
                if (at as usize) < stop {
                    model[at as usize..stop].fill(0);
                }
            }
        }
        assert_eq!(fs.read(a.ino, 0, 8 << 20).unwrap(), model, "step {step}");
        let off = rng.next_u64() % (model.len() as u64 + 10);
        let size = rng.next_u64() % (1 << 20);
        let want = &model[(off as usize).min(model.len())..((off + size) as usize).min(model.len())];
        let parts = fs.read_parts(a.ino, off, size).unwrap();
        let mut joined = Vec::new();
        parts.for_each_slice(|s| joined.extend_from_slice(s));
        assert_eq!(joined.len(), parts.len());
        assert!(joined == want, "step {step}: read_parts at {off} of {size}");
    }
    fs.release(fh).unwrap();
    assert_eq!(fs.read(a.ino, 0, 8 << 20).unwrap(), model);
}

#[test]
fn reads_match_a_model_in_memory() {
    reads_match_a_model(&Fs::memory(FsConfig::default()));
}

#[test]
fn reads_match_a_model_on_a_store() {
    let dir = tempfile::tempdir().unwrap();
    reads_match_a_model(&Fs::open_store(dir.path(), true, FsConfig::default()).unwrap());
    // Chunks shared by the two halves of a punched extent are counted right.
    let store = magicfs_store::Store::open(dir.path(), false).unwrap();
    let report = magicfs_core::fsck::check(&store, true).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}

#[test]
fn punched_holes_read_zeros_and_hold_no_data() {
    let fs = Fs::memory(FsConfig::default());
    let data = noise(1 << 20, 9);
    let ino = file(&fs, "f", &data);
    let keep = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    let blocks = fs.getattr(ino).unwrap().blocks;
    fs.fallocate(ino, 256 << 10, 512 << 10, keep).unwrap();
    let mut want = data.clone();
    want[256 << 10..768 << 10].fill(0);
    assert_eq!(fs.read(ino, 0, 2 << 20).unwrap(), want);
    let at = fs.getattr(ino).unwrap();
    assert_eq!(at.size, 1 << 20);
    assert!(at.blocks < blocks * 3 / 4, "{} blocks after punching half of {blocks}", at.blocks);
    assert_eq!(fs.lseek(ino, 256 << 10, libc::SEEK_DATA).unwrap(), 768 << 10);
    assert_eq!(fs.lseek(ino, 0, libc::SEEK_HOLE).unwrap(), 256 << 10);
    // A punch needs KEEP_SIZE; a zeroed range past the end grows the file.
    assert_eq!(fs.fallocate(ino, 0, 10, libc::FALLOC_FL_PUNCH_HOLE), Err(FsError::NotSupported));
    fs.fallocate(ino, 1 << 20, 4096, libc::FALLOC_FL_ZERO_RANGE).unwrap();
    assert_eq!(fs.getattr(ino).unwrap().size, (1 << 20) + 4096);
    // The whole file punched frees every chunk.
    fs.fallocate(ino, 0, 2 << 20, keep).unwrap();
    assert_eq!(fs.read(ino, 0, 2 << 20).unwrap(), vec![0; (1 << 20) + 4096]);
    assert_eq!(fs.getattr(ino).unwrap().blocks, 0);
}

/// Entry names a directory handle lists from `offset` on.
fn listed(fs: &Fs, fh: u64, offset: usize) -> Vec<String> {
    let mut v = Vec::new();
    fs.readdir(fh, offset, |_, e| {
        v.push(String::from_utf8_lossy(&e.name).into_owned());
        false
    })
    .unwrap();
    v
}

#[test]
fn rewinddir_lists_entries_made_since_opendir() {
    let fs = Fs::memory(FsConfig::default());
    file(&fs, "a", b"1");
    let fh = fs.opendir(ROOT_INO).unwrap();
    assert_eq!(listed(&fs, fh, 0), [".", "..", "a"]);
    file(&fs, "b", b"2");
    // Reading on from where the listing was keeps its snapshot ...
    assert!(listed(&fs, fh, 3).is_empty());
    // ... reading from the start again (rewinddir) takes a fresh one.
    assert_eq!(listed(&fs, fh, 0), [".", "..", "a", "b"]);
    fs.releasedir(fh).unwrap();
}

#[test]
fn a_removed_directory_open_in_a_handle_has_no_links() {
    let fs = Fs::memory(FsConfig::default());
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, CTX).unwrap();
    let fh = fs.opendir(d.ino).unwrap();
    fs.rmdir(ROOT_INO, b"d").unwrap();
    assert_eq!(fs.getattr(d.ino).unwrap().nlink, 0, "fstat of the open handle");
    assert_eq!(fs.mkdir(d.ino, b"x", 0o755, CTX).unwrap_err(), FsError::NotFound, "no new entries");
    fs.releasedir(fh).unwrap();
    assert_eq!(fs.getattr(d.ino).unwrap_err(), FsError::NotFound, "freed at the last close");
    // Renamed over while open, the same.
    let (a, b) = (fs.mkdir(ROOT_INO, b"a", 0o755, CTX).unwrap(), fs.mkdir(ROOT_INO, b"b", 0o755, CTX).unwrap());
    let fh = fs.opendir(b.ino).unwrap();
    fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", RenameFlags::default()).unwrap();
    assert_eq!(fs.getattr(b.ino).unwrap().nlink, 0);
    assert_eq!(fs.lookup(ROOT_INO, b"b").unwrap().ino, a.ino);
    fs.releasedir(fh).unwrap();
}

#[test]
fn blocks_count_data_not_holes() {
    let fs = Fs::memory(FsConfig::default());
    let (a, fh) = fs.create(ROOT_INO, b"sparse", 0o644, libc::O_RDWR, CTX).unwrap();
    fs.write(a.ino, 1_638_400, &noise(51_200, 5)).unwrap();
    let dirty = fs.getattr(a.ino).unwrap();
    fs.release(fh).unwrap();
    let kept = fs.getattr(a.ino).unwrap();
    for at in [dirty, kept] {
        assert_eq!(at.size, 1_638_400 + 51_200);
        assert!(at.blocks * 512 < 256 << 10, "{} blocks for 50 KB of data in a 1.6 MB file", at.blocks);
        assert!(at.blocks * 512 >= 51_200);
    }
}

#[test]
fn nonsense_magic_attributes_are_refused() {
    let fs = Fs::memory(FsConfig::default());
    let ino = file(&fs, "s", b"");
    for (n, v) in [
        ("user.magic.codec", "bogus"),
        ("user.magic.temperature", "NaN"),
        ("user.magic.temperature", "9"),
        ("user.magic.max_tokens", "-1"),
        ("user.magic.max_tokens", "0"),
    ] {
        assert_eq!(fs.setxattr(ino, n.as_bytes(), v.as_bytes(), 0), Err(FsError::Invalid), "{n}={v}");
    }
    for (n, v) in [("user.magic.codec", "gzip"), ("user.magic.temperature", "0.2"), ("user.magic.max_tokens", "64")] {
        fs.setxattr(ino, n.as_bytes(), v.as_bytes(), 0).unwrap();
    }
}

#[test]
fn a_read_only_filesystem_refuses_changes() {
    let fs = Fs::memory(FsConfig { read_only: true, ..FsConfig::default() });
    assert_eq!(fs.mkdir(ROOT_INO, b"d", 0o755, CTX).unwrap_err(), FsError::ReadOnly);
    assert_eq!(fs.create(ROOT_INO, b"f", 0o644, libc::O_RDWR, CTX).unwrap_err(), FsError::ReadOnly);
}

#[test]
fn chown_and_unprivileged_writes_clear_set_id_bits() {
    let fs = Fs::memory(FsConfig::default());
    let ino = file(&fs, "f", b"x");
    let mode = |fs: &Fs| fs.getattr(ino).unwrap().perm;
    let chmod = |m: u32| fs.setattr(ino, SetAttr { mode: Some(m), ..Default::default() }).unwrap();
    // chown, even by root: setuid goes, setgid only when group-executable.
    chmod(0o6644);
    fs.setattr(ino, SetAttr { uid: Some(1000), ..Default::default() }).unwrap();
    assert_eq!(mode(&fs), 0o2644);
    chmod(0o6754);
    fs.setattr(ino, SetAttr { gid: Some(1000), ..Default::default() }).unwrap();
    assert_eq!(mode(&fs), 0o0754);
    // A write by root keeps them; by anyone else, as chown.
    chmod(0o6754);
    assert_eq!(fs.kill_privs(ino, true, &|_| true).unwrap(), None);
    assert_eq!(fs.kill_privs(ino, false, &|_| true).unwrap().map(|a| a.perm), Some(0o0754));
    assert_eq!(fs.kill_privs(ino, false, &|_| true).unwrap(), None);
}

#[test]
fn a_damaged_pack_file_reads_as_an_error_never_as_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    let (noisy, text) = (noise(1 << 20, 11), b"compressible text ".repeat(40_000));
    {
        let fs = Fs::open_store(dir.path(), true, FsConfig::default()).unwrap();
        file(&fs, "raw", &noisy);
        file(&fs, "zstd", &text);
    }
    // One flipped bit in the middle of each stored file's bytes.
    let pack = std::fs::read_dir(dir.path().join("packs")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&pack).unwrap();
    let zstd_len = bytes.len() - noisy.len();
    for at in [noisy.len() / 2, noisy.len() + zstd_len / 2] {
        bytes[at] ^= 0x10;
    }
    std::fs::write(&pack, bytes).unwrap();
    let fs = Fs::open_store(dir.path(), false, FsConfig::default()).unwrap();
    for (name, want) in [("raw", &noisy[..]), ("zstd", &text[..])] {
        let ino = fs.resolve(name).unwrap().ino;
        match fs.read(ino, 0, 2 << 20) {
            Err(e) => assert_eq!(e, FsError::Io, "{name}"),
            Ok(got) => panic!("{name}: read {} bytes, {}", got.len(), if got == want { "unchanged" } else { "wrong" }),
        }
    }
}

/// Commits of one file overlap (one installs while the next chunks): random
/// writes, truncates and punched holes go on while three threads keep
/// committing; every read matches the model, and after a reopen the store
/// holds exactly the model and passes fsck.
#[test]
fn overlapping_commits_lose_nothing() {
    use magicfs_types::noise::XorShift64;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let cfg = FsConfig { spill_bytes: 256 << 10, ..FsConfig::default() };
    let model = {
        let fs = Arc::new(Fs::open_store(dir.path(), true, cfg.clone()).unwrap());
        let (a, fh) = fs.create(ROOT_INO, b"busy", 0o644, libc::O_RDWR, CTX).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let committers: Vec<_> = (0..3)
            .map(|_| {
                let (fs, stop) = (fs.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        fs.flush(a.ino).unwrap();
                    }
                })
            })
            .collect();
        let mut rng = XorShift64::new(91);
        let mut model: Vec<u8> = Vec::new();
        for step in 0..400u64 {
            match rng.next_u64() % 10 {
                0..=6 => {
                    // Mostly appends (a growing file), some overwrites.
                    let at = match rng.next_u64() % 3 {
                        0 => (rng.next_u64() % (model.len() as u64 + 1)) as usize,
                        _ => model.len(),
                    };
                    let len = 1 + (rng.next_u64() % 200_000) as usize;
                    let data = noise(len, step);
                    if fs.write(a.ino, at as u64, &data).unwrap() && step % 2 == 0 {
                        fs.flush(a.ino).unwrap();
                    }
                    model.resize(model.len().max(at + len), 0);
                    model[at..at + len].copy_from_slice(&data);
                }
                7 => {
                    let size = (rng.next_u64() % (model.len() as u64 + 1)) as usize;
                    fs.setattr(a.ino, SetAttr { size: Some(size as u64), ..Default::default() }).unwrap();
                    model.resize(size, 0);
                }
                8 => {
                    let at = rng.next_u64() % (model.len() as u64 + 1);
                    let len = 1 + rng.next_u64() % 300_000;
                    fs.fallocate(a.ino, at, len, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE).unwrap();
                    let stop = ((at + len) as usize).min(model.len());
                    if (at as usize) < stop {
                        model[at as usize..stop].fill(0);
                    }
                }
                _ => fs.flush(a.ino).unwrap(),
            }
            if step % 8 == 0 {
                assert!(fs.read(a.ino, 0, 64 << 20).unwrap() == model, "step {step}");
            }
        }
        stop.store(true, Ordering::Relaxed);
        committers.into_iter().for_each(|t| t.join().unwrap());
        fs.flush(a.ino).unwrap();
        assert_eq!(fs.dirty_bytes(a.ino), 0, "every page is committed");
        assert!(fs.read(a.ino, 0, 64 << 20).unwrap() == model);
        fs.release(fh).unwrap();
        model
    };
    let fs = Fs::open_store(dir.path(), false, cfg).unwrap();
    let f = fs.resolve("busy").unwrap();
    assert_eq!(f.size, model.len() as u64);
    assert!(fs.read(f.ino, 0, 64 << 20).unwrap() == model, "the store holds the model after a reopen");
    drop(fs);
    let store = magicfs_store::Store::open(dir.path(), false).unwrap();
    let report = magicfs_core::fsck::check(&store, true).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}
