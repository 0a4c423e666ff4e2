//! What each fuzz target checks, as plain functions: the `cargo fuzz`
//! targets in `fuzz_targets/` call them, and the workspace's regression test
//! (`crates/magicfs/tests/fuzz_regressions.rs`) replays every saved input
//! through them. Each one panics only when the code under test breaks a
//! promise: a panic inside the code, an answer that breaks its own rules,
//! or a wrong read.

use magicfs_core::{fsck, Fs, FsConfig, OpenOptions};
use magicfs_snapshot::FsTree;
use magicfs_store::disk::Disk;
use magicfs_store::sim_disk::SimDisk;
use magicfs_store::{Batch, Store};
use magicfs_types::noise::noise;
use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A small configuration: fuzzing runs many short-lived filesystems.
fn small() -> FsConfig {
    FsConfig { cache_bytes: 1 << 20, mutex_handles: true, ..FsConfig::default() }
}

/// Session transcripts (`sessions/<id>`): parsing, the history built from
/// them, and the role guard over the text cut into pieces anywhere.
pub fn transcript(data: &[u8]) {
    use magicfs_chat::transcript::{last_role, messages, parse, RoleGuard};
    if let Ok(turns) = parse(data) {
        for t in &turns {
            assert_eq!(t.text.trim_end(), t.text, "turn text keeps trailing whitespace");
        }
        let _ = messages(&turns, Some("be brief"));
        let _ = messages(&turns, None);
    }
    let _ = last_role(data, true);
    let _ = last_role(data, false);
    let text = String::from_utf8_lossy(data);
    let mut guard = RoleGuard::default();
    let mut out = String::new();
    let mut rest: &str = &text;
    let mut cut = data.first().copied().unwrap_or(1) as usize % 7 + 1;
    while !rest.is_empty() {
        let mut at = cut.min(rest.len());
        while !rest.is_char_boundary(at) {
            at += 1;
        }
        let (piece, tail) = rest.split_at(at);
        let (safe, ended) = guard.push(piece);
        out.push_str(&safe);
        if ended {
            break;
        }
        rest = tail;
        cut = cut * 3 % 11 + 1;
    }
    out.push_str(&guard.finish());
    assert!(text.starts_with(&out) || out.len() <= text.len(), "the guard wrote more than it was given");
}

/// Compute programs (`POST /compute`, `magicfs compute`): parsing,
/// validation against data, and running them equal the plain reference.
pub fn compute_json(data: &[u8]) {
    use magicfs_compute::ops::reference;
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(program) = magicfs_compute::parse(text) else { return };
    let buf = noise(4096, 11);
    let Ok(out) = magicfs_compute::execute(&buf, &program) else { return };
    assert_eq!(out.len(), program.len());
    for (o, ins) in out.iter().zip(&program) {
        let window = &buf[ins.offset as usize..(ins.offset + ins.length) as usize];
        assert_eq!(o.value, reference::eval(ins.op, ins.imm.unwrap_or(0), window), "{ins:?}");
    }
}

/// Snapshot documents (`magicfs import`): the whole check, then the import
/// into an empty filesystem in memory.
pub fn snapshot_import(data: &[u8]) {
    let _ = magicfs_snapshot::validate(data);
    let mut tree = FsTree::new(Fs::memory(small()));
    let _ = magicfs_snapshot::import(Cursor::new(data), &mut tree);
}

/// `Range` headers (`GET /files/…`): every range lies inside the file, and
/// no more are answered than the limit.
pub fn range_header(data: &[u8]) {
    use magicfs_http::range::{parse_range, Ranges, MAX_RANGES};
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap_or_default()) % (1 << 40);
    let header = String::from_utf8_lossy(&data[8..]);
    if let Ranges::Parts(parts) = parse_range(&header, size) {
        assert!(!parts.is_empty() && parts.len() <= MAX_RANGES, "{} ranges", parts.len());
        for r in parts {
            assert!(r.start() <= r.end() && *r.end() < size, "range {r:?} of a {size}-byte file");
        }
    }
}

/// Tree plans (the model's JSON answer to `user.magic.generate`): the files
/// kept have safe, distinct paths, and creating them works.
pub fn tree_plan(data: &[u8]) {
    use magicfs_gen::tree::{apply, parse, MAX_FILES};
    let text = String::from_utf8_lossy(data);
    let Ok(files) = parse(&text) else { return };
    assert!(!files.is_empty() && files.len() <= MAX_FILES * 2);
    for (i, f) in files.iter().enumerate() {
        assert!(
            f.path.split('/').all(|p| !p.is_empty() && p != "." && p != ".." && p.len() <= 255 && !p.contains('\0')),
            "unsafe path {:?}",
            f.path
        );
        for g in &files[..i] {
            assert!(g.path != f.path && !f.path.starts_with(&format!("{}/", g.path)), "{:?} vs {:?}", g.path, f.path);
        }
    }
    let fs = Fs::memory(small());
    let ctx = magicfs_core::Ctx::default();
    if let Ok(done) = apply(&fs, magicfs_types::ROOT_INO, "p", &text, &files, ctx) {
        for p in &done.created {
            assert!(fs.resolve(p).is_ok(), "{p} was reported created");
        }
    }
}

/// Search directory names (`search/<query>/` and its entries): query
/// decoding, and entry names that are unique, non-empty, at most 255 bytes
/// and without `/` or NUL whatever the paths and scores of the hits.
pub fn search_names(data: &[u8]) {
    use magicfs_index::{Hit, Results};
    let _ = magicfs_fuse::decode_query(data);
    let _ = magicfs_fuse::query_name_ok(data);
    let text = String::from_utf8_lossy(data);
    let hits: Vec<Hit> = text
        .split('\n')
        .enumerate()
        .map(|(i, p)| Hit {
            path: p.to_string(),
            in_mount: i % 2 == 0,
            score: f32::from_bits((i as u32).wrapping_mul(0x9E37_79B9)),
            passage: String::new(),
            similarity: None,
            bm25: 0.0,
        })
        .collect();
    let names = magicfs_fuse::entry_names(&Results { query: String::new(), hits, generation: 0 });
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        assert!(!n.is_empty() && n.len() <= 255 && !n.contains('/') && !n.contains('\0'), "bad entry name {n:?}");
        assert!(seen.insert(n.clone()), "entry name {n:?} is given twice");
    }
}

const DATA: &str = "/data";

fn open_fs(disk: &SimDisk) -> Option<Fs> {
    let store = Store::open_on(Arc::new(disk.clone()), Path::new(DATA), false).ok()?;
    // fsck must answer (clean or not), never panic.
    let _ = fsck::check(&store, true);
    Fs::load(store, small()).ok()
}

/// Logged batches (`wal/*.wal`), framed with valid checksums so their
/// contents reach the image: opening must give an error or a filesystem,
/// never a panic, and fsck must answer.
pub fn wal_records(data: &[u8]) {
    let disk = empty_store().copy();
    let mut seg = Vec::new();
    for (i, body) in data.split(|b| *b == 0xA5).enumerate() {
        // Most inputs are batches; the fuzzer finds the encoding through Batch::decode.
        let seq = i as u64 + 1;
        let mut rec = seq.to_le_bytes().to_vec();
        rec.extend_from_slice(body);
        let len = rec.len() as u32;
        seg.extend_from_slice(&len.to_le_bytes());
        seg.extend_from_slice(&crc32fast::hash(&rec).to_le_bytes());
        seg.extend_from_slice(&rec);
        let _ = Batch::decode(body);
    }
    let path = PathBuf::from(DATA).join("wal").join(format!("{:016x}.wal", 1));
    let Ok(f) = disk.open(&path, true) else { return };
    if f.write_all_at(&seg, 0).is_err() {
        return;
    }
    if let Some(fs) = open_fs(&disk) {
        let fs = Arc::new(fs);
        let mut todo = vec![String::new()];
        let mut seen = 0;
        while let Some(d) = todo.pop() {
            let Ok(list) = fs.read_dir_path(&d) else { continue };
            for e in list {
                seen += 1;
                if seen > 10_000 {
                    return;
                }
                let p = format!("{d}/{}", String::from_utf8_lossy(&e.name));
                if e.kind == magicfs_types::FileKind::Dir {
                    todo.push(p);
                } else if let Ok(mut f) = fs.open_path(&p, &OpenOptions::new()) {
                    let _ = f.read(&mut [0u8; 4096]);
                }
            }
        }
    }
}

/// A store with nothing in it, made once.
fn empty_store() -> &'static SimDisk {
    static EMPTY: OnceLock<SimDisk> = OnceLock::new();
    EMPTY.get_or_init(|| {
        let disk = SimDisk::new();
        let store = Store::open_on(Arc::new(disk.clone()), Path::new(DATA), true).expect("a new store");
        drop(Fs::load(store, FsConfig::default()).expect("an empty store loads"));
        disk
    })
}

/// A store with files in its image and more in its log, and every content
/// each file had along the way.
struct Reference {
    disk: SimDisk,
    /// Path → every content it had (`None`: absent).
    history: HashMap<String, Vec<Option<Vec<u8>>>>,
}

fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let disk = SimDisk::new();
        let store = Store::open_on(Arc::new(disk.clone()), Path::new(DATA), true).expect("a new store");
        let fs = Arc::new(Fs::load(store, FsConfig::default()).expect("a new store loads"));
        let mut history: HashMap<String, Vec<Option<Vec<u8>>>> = HashMap::new();
        let mut put = |path: &str, data: Vec<u8>| {
            let mut f = fs.open_path(path, OpenOptions::new().write(true).create(true).truncate(true)).expect("create");
            f.write_all(&data).expect("write");
            f.close().expect("close");
            let h = history.entry(path.to_string()).or_insert_with(|| vec![None]);
            h.push(Some(Vec::new()));
            h.push(Some(data));
        };
        fs.mkdir_path("d", 0o755).expect("mkdir");
        put("a", b"hello".to_vec());
        put("d/b", noise(70_000, 3));
        put("c", vec![b'z'; 40_000]);
        fs.checkpoint().expect("checkpoint");
        // After the checkpoint: in the log only.
        put("a", noise(3000, 4));
        put("d/e", b"in the log".to_vec());
        fs.remove_path("c").expect("unlink");
        history.get_mut("c").expect("c").push(None);
        let f = fs.open_path("a", &OpenOptions::new()).expect("open");
        f.sync_all().expect("fsync");
        drop(f);
        disk.cut_now();
        let disk = disk.copy();
        drop(fs);
        Reference { disk, history }
    })
}

/// The redb image and the log segments of a store, their bytes changed as
/// `data` says (5 bytes each: which file, where, and the bits to flip):
/// opening gives an error or a filesystem whose every read is right (the
/// file's content at some point, or an error), never a panic.
pub fn store_image(data: &[u8]) {
    let r = reference();
    let disk = r.disk.copy();
    let mut files = vec![PathBuf::from(DATA).join(magicfs_store::DB_FILE)];
    let wal = PathBuf::from(DATA).join("wal");
    files.extend(disk.list(&wal).unwrap_or_default().into_iter().map(|n| wal.join(n)));
    for op in data.chunks_exact(6) {
        let path = &files[op[0] as usize % files.len()];
        let Ok(f) = disk.open(path, false) else { continue };
        let len = f.len().unwrap_or(0);
        if len == 0 {
            continue;
        }
        let at = u32::from_le_bytes([op[1], op[2], op[3], op[4]]) as u64 % len;
        let mut b = [0u8];
        if f.read_exact_at(&mut b, at).is_ok() {
            let _ = f.write_all_at(&[b[0] ^ op[5].max(1)], at);
        }
    }
    let Some(fs) = open_fs(&disk) else { return };
    let fs = Arc::new(fs);
    for (path, states) in &r.history {
        if let Ok(mut f) = fs.open_path(path, &OpenOptions::new()) {
            let mut got = Vec::new();
            if f.read_to_end(&mut got).is_ok() {
                assert!(states.contains(&Some(got.clone())), "{path}: a wrong read ({} bytes)", got.len());
            }
        }
    }
}
