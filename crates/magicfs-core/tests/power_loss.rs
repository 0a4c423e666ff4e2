//! Power loss at random points of a mixed workload.
//!
//! The store runs on `SimDisk`, which records every write and sync of the
//! log, the packs and the redb image. Each round runs a seeded workload
//! (new files, overwrites, appends, truncations, renames, unlinks, mkdir,
//! rmdir, fsyncs and one checkpoint in the middle) until the disk loses
//! power at a random operation, then brings the disk back with everything
//! synced plus a random, possibly torn, part of the rest, and reopens it:
//! - `fsck` (every chunk hashed) is clean;
//! - the tree is exactly the state after some prefix of the workload's
//!   operations, no older than the last fsync that returned (nothing
//!   acknowledged by fsync is lost, nothing half-done is visible);
//! - the store takes new writes and keeps them across a clean reopen.
//!
//! `MAGICFS_POWER_CUTS` sets the number of cut points (default 240);
//! `MAGICFS_POWER_SEED` the first seed.

use magicfs_core::{fsck, Fs, FsConfig, OpenOptions, SetAttr};
use magicfs_store::sim_disk::SimDisk;
use magicfs_store::Store;
use magicfs_types::noise::{noise, XorShift64};
use magicfs_types::{FileKind, FsResult};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

const DATA: &str = "/data";

/// What the filesystem holds: file contents by path, and directories.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tree {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

fn open(disk: &SimDisk) -> Result<Fs, String> {
    let store = Store::open_on(Arc::new(disk.clone()), Path::new(DATA), true).map_err(|e| e.to_string())?;
    Fs::load(store, FsConfig::default()).map_err(|e| e.to_string())
}

/// The workload's progress: every state the store may come back in.
struct Run {
    fs: Arc<Fs>,
    model: Tree,
    /// States after each committing call, the first being the empty tree.
    states: Vec<Tree>,
    /// Index in `states` of the newest state an fsync acknowledged.
    synced: usize,
}

impl Run {
    /// Runs one committing call; on success the model becomes `after`. A
    /// failed call may still have committed: `after` stays a candidate.
    fn step(&mut self, after: Tree, call: impl FnOnce(&Arc<Fs>) -> FsResult<()>) -> Result<(), ()> {
        self.states.push(after.clone());
        match call(&self.fs) {
            Ok(()) => {
                self.model = after;
                Ok(())
            }
            Err(_) => Err(()),
        }
    }
}

fn write_at(fs: &Arc<Fs>, path: &str, at: u64, data: &[u8], create: bool) -> FsResult<()> {
    let mut f = fs.open_path(path, OpenOptions::new().write(true).create(create))?;
    f.seek(SeekFrom::Start(at)).map_err(|_| magicfs_types::FsError::Io)?;
    f.write_all(data).map_err(|_| magicfs_types::FsError::Io)?;
    f.close()
}

fn size_of(fs: &Arc<Fs>, path: &str) -> FsResult<u64> {
    Ok(fs.metadata_path(path)?.size)
}

/// One random operation of the workload.
fn op(run: &mut Run, rng: &mut XorShift64, step_no: u64, checkpoint_at: u64) -> Result<(), ()> {
    const DIRS: [&str; 3] = ["a", "b", "a/c"];
    let files: Vec<String> = run.model.files.keys().cloned().collect();
    let pick_dir = |rng: &mut XorShift64, m: &Tree| -> String {
        let live: Vec<&str> = DIRS.iter().copied().filter(|d| m.dirs.contains(*d)).collect();
        if live.is_empty() || rng.below(4) == 0 {
            String::new()
        } else {
            format!("{}/", live[rng.below(live.len() as u64) as usize])
        }
    };
    if step_no == checkpoint_at {
        let m = run.model.clone();
        return run.step(m, |fs| fs.checkpoint());
    }
    // Keep a few files around to work on.
    let roll = if files.len() < 4 { rng.below(20) } else { rng.below(100) };
    let mut after = run.model.clone();
    match roll {
        // A new file: created empty, then written and closed.
        0..=19 => {
            let path = format!("{}f{}", pick_dir(rng, &run.model), rng.below(8));
            if run.model.files.contains_key(&path) || run.model.dirs.contains(&path) {
                return Ok(());
            }
            let len = [0, 100, 5000, 70_000, 300_000][rng.below(5) as usize] + rng.below(1000) as usize;
            let data = noise(len, rng.next_u64());
            after.files.insert(path.clone(), Vec::new());
            run.step(after.clone(), |fs| fs.open_path(&path, OpenOptions::new().write(true).create(true))?.close())?;
            after.files.insert(path.clone(), data.clone());
            run.step(after, |fs| write_at(fs, &path, 0, &data, false))
        }
        // Overwrite a range, or append.
        20..=44 if !files.is_empty() => {
            let path = files[rng.below(files.len() as u64) as usize].clone();
            let cur = &run.model.files[&path];
            let append = rng.below(3) == 0;
            let at = if append || cur.is_empty() { cur.len() as u64 } else { rng.below(cur.len() as u64) };
            let data = noise(1 + rng.below(90_000) as usize, rng.next_u64());
            let f = after.files.get_mut(&path).expect("listed");
            let end = at as usize + data.len();
            if f.len() < end {
                f.resize(end, 0);
            }
            f[at as usize..end].copy_from_slice(&data);
            run.step(after, |fs| write_at(fs, &path, at, &data, false))
        }
        // Truncate (shorter or longer).
        45..=54 if !files.is_empty() => {
            let path = files[rng.below(files.len() as u64) as usize].clone();
            let cur = run.model.files[&path].len() as u64;
            let size = rng.below(cur + 20_000);
            after.files.get_mut(&path).expect("listed").resize(size as usize, 0);
            run.step(after, |fs| {
                let ino = fs.metadata_path(&path)?.ino;
                fs.setattr(ino, SetAttr { size: Some(size), ..SetAttr::default() }).map(|_| ())
            })
        }
        // Rename, replacing a file of the same name.
        55..=66 if !files.is_empty() => {
            let from = files[rng.below(files.len() as u64) as usize].clone();
            let to = format!("{}f{}", pick_dir(rng, &run.model), rng.below(8));
            if from == to || run.model.dirs.contains(&to) {
                return Ok(());
            }
            let data = after.files.remove(&from).expect("listed");
            after.files.insert(to.clone(), data);
            run.step(after, |fs| fs.rename_path(&from, &to))
        }
        // Unlink.
        67..=76 if !files.is_empty() => {
            let path = files[rng.below(files.len() as u64) as usize].clone();
            after.files.remove(&path);
            run.step(after, |fs| fs.remove_path(&path))
        }
        // mkdir, or rmdir of an empty directory.
        77..=84 => {
            let d = DIRS[rng.below(DIRS.len() as u64) as usize];
            let parent_ok = d.rsplit_once('/').is_none_or(|(p, _)| run.model.dirs.contains(p));
            let empty = !run.model.files.keys().chain(run.model.dirs.iter()).any(|p| p.starts_with(&format!("{d}/")));
            if run.model.dirs.contains(d) {
                if !empty {
                    return Ok(());
                }
                after.dirs.remove(d);
                run.step(after, |fs| fs.remove_path(d))
            } else if parent_ok && !run.model.files.contains_key(d) {
                after.dirs.insert(d.to_string());
                run.step(after, |fs| fs.mkdir_path(d, 0o755).map(|_| ()))
            } else {
                Ok(())
            }
        }
        // fsync a file after writing to it.
        _ if !files.is_empty() => {
            let path = files[rng.below(files.len() as u64) as usize].clone();
            let data = noise(1 + rng.below(20_000) as usize, rng.next_u64());
            let at = run.model.files[&path].len() as u64;
            after.files.get_mut(&path).expect("listed").extend_from_slice(&data);
            let r = run.step(after, |fs| {
                let mut f = fs.open_path(&path, OpenOptions::new().write(true))?;
                f.seek(SeekFrom::Start(at)).map_err(|_| magicfs_types::FsError::Io)?;
                f.write_all(&data).map_err(|_| magicfs_types::FsError::Io)?;
                f.sync_all()?;
                f.close()
            });
            if r.is_ok() {
                run.synced = run.states.len() - 1;
            }
            r
        }
        _ => Ok(()),
    }
}

/// Runs workload `seed` for `steps` operations (or until the disk dies);
/// `None` if the disk died while the store was being made.
fn workload(disk: &SimDisk, seed: u64, steps: u64) -> Option<Run> {
    let fs = match open(disk) {
        Ok(fs) => Arc::new(fs),
        Err(e) if disk.is_dead() => {
            let _ = e;
            return None;
        }
        Err(e) => panic!("a new store does not open: {e}"),
    };
    let mut run = Run { fs, model: Tree::default(), states: vec![Tree::default()], synced: 0 };
    let mut rng = XorShift64::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for i in 0..steps {
        if op(&mut run, &mut rng, i, steps / 2).is_err() {
            break;
        }
    }
    Some(run)
}

/// Everything the filesystem holds.
fn read_tree(fs: &Arc<Fs>) -> Result<Tree, String> {
    let mut t = Tree::default();
    let mut todo = vec![String::new()];
    while let Some(dir) = todo.pop() {
        for e in fs.read_dir_path(&dir).map_err(|e| format!("listing {dir:?}: {e:?}"))? {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let path = if dir.is_empty() { name } else { format!("{dir}/{name}") };
            match e.kind {
                FileKind::Dir => {
                    t.dirs.insert(path.clone());
                    todo.push(path);
                }
                _ => {
                    let mut f = fs.open_path(&path, &OpenOptions::new()).map_err(|e| format!("open {path}: {e:?}"))?;
                    let mut data = Vec::new();
                    f.read_to_end(&mut data).map_err(|e| format!("read {path}: {e}"))?;
                    if data.len() as u64 != size_of(fs, &path).map_err(|e| format!("{e:?}"))? {
                        return Err(format!("{path}: read {} bytes, size says otherwise", data.len()));
                    }
                    t.files.insert(path, data);
                }
            }
        }
    }
    Ok(t)
}

fn describe(t: &Tree) -> String {
    let files: Vec<String> = t.files.iter().map(|(p, d)| format!("{p}({})", d.len())).collect();
    format!("dirs {:?} files {:?}", t.dirs, files)
}

/// One cut: the workload dies at disk operation `cut`; the disk comes back
/// per `seed`. Returns what went wrong, if anything.
fn round(workload_seed: u64, steps: u64, cut: u64, seed: u64) -> Result<(), String> {
    let disk = SimDisk::new();
    disk.cut_after(cut);
    let (states, synced) = match workload(&disk, workload_seed, steps) {
        Some(run) => {
            disk.cut_now();
            drop(run.fs);
            (run.states, run.synced)
        }
        None => (vec![Tree::default()], 0),
    };
    let back = disk.after_power_loss(seed);
    let store = Store::open_on(Arc::new(back.clone()), Path::new(DATA), true)
        .map_err(|e| format!("reopening after the power loss: {e}"))?;
    let report = fsck::check(&store, true).map_err(|e| format!("fsck: {e}"))?;
    if !report.is_clean() {
        return Err(format!("fsck: {:?}", report.errors));
    }
    let fs = Arc::new(Fs::load(store, FsConfig::default()).map_err(|e| format!("loading: {e}"))?);
    let tree = read_tree(&fs)?;
    let Some(k) = states.iter().rposition(|s| *s == tree) else {
        return Err(format!(
            "the tree is no state the workload passed through: {}\nlast acknowledged by fsync: {}",
            describe(&tree),
            describe(&states[synced])
        ));
    };
    if k < synced {
        return Err(format!("state {k} came back, older than state {synced} that an fsync acknowledged"));
    }
    // The store takes new work and keeps it.
    write_at(&fs, "after", 0, b"written after the power loss", true).map_err(|e| format!("new write: {e:?}"))?;
    fs.shutdown().map_err(|e| format!("clean close: {e:?}"))?;
    drop(fs);
    let fs = Arc::new(open(&back)?);
    let mut again = read_tree(&fs)?;
    if again.files.remove("after").as_deref() != Some(&b"written after the power loss"[..]) || again != tree {
        return Err("a clean reopen after recovery lost or changed data".into());
    }
    Ok(())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn power_loss_at_random_points_keeps_every_fsynced_byte() {
    let cuts = env_u64("MAGICFS_POWER_CUTS", 240);
    let first_seed = env_u64("MAGICFS_POWER_SEED", 1);
    const WORKLOADS: u64 = 6;
    const STEPS: u64 = 80;
    // Disk operations of each full workload, to draw cut points from.
    let totals: Vec<u64> = (0..WORKLOADS)
        .map(|w| {
            let disk = SimDisk::new();
            let run = workload(&disk, 1000 + w, STEPS);
            let n = disk.ops();
            drop(run);
            n
        })
        .collect();
    let mut rng = XorShift64::new(first_seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let mut failures = Vec::new();
    for i in 0..cuts {
        let w = i % WORKLOADS;
        let cut = 1 + rng.below(totals[w as usize]);
        let seed = first_seed + i;
        if let Err(mut e) = round(1000 + w, STEPS, cut, seed) {
            e.truncate(e.char_indices().nth(400).map_or(e.len(), |(i, _)| i));
            failures.push(format!("workload {w}, cut at disk operation {cut}, seed {seed}: {e}"));
        }
    }
    eprintln!(
        "power loss: {cuts} cut points over {WORKLOADS} workloads of {STEPS} operations ({totals:?} disk operations each), {} failed",
        failures.len()
    );
    failures.truncate(20);
    assert!(failures.is_empty(), "cut points failed, the first:\n{}", failures.join("\n"));
}
