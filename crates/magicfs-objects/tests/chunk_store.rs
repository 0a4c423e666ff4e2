//! The `ChunkStore` conformance suite: one template, a case per backend.
//! Every backend must pass every test: pack files, memory, and the object
//! store on memory, a local directory, SeaweedFS and moto (the real S3
//! services `scripts/cluster-up.sh` starts, each with its segments recorded
//! in a PostgreSQL database of its own, as on a cluster volume).

use magicfs_objects::{
    Backend, CacheConfig, Catalog, MemCatalog, ObjectChunks, Options, PgCatalog, S3Settings, StoreUrl,
};
use magicfs_pg::testing::{services, TestDb};
use magicfs_pg::{Pg, PgOptions};
use magicfs_store::{ChunkStore, FilePacks, Location, MemPacks};
use object_store::memory::InMemory;
use rstest::rstest;
use rstest_reuse::{apply, template};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A backend under test: `open()` gives a handle on the same stored data
/// (a reopened store, or another mount of it: a second process's view).
struct Case {
    open: Box<dyn Fn() -> Arc<dyn ChunkStore>>,
    /// Whether a reopened handle shares nothing cached with earlier ones
    /// (object stores: a fresh mount has a cold cache).
    remote: bool,
    _dir: Option<tempfile::TempDir>,
    _db: Option<TestDb>,
}

fn opts() -> Options {
    Options {
        cache: CacheConfig { dir: None, disk_bytes: 0, mem_bytes: 64 << 20 },
        segment_bytes: 1 << 20,
        stage_max: 64 << 10,
        seal_after: Duration::from_millis(300),
        adopt_after: Duration::from_secs(2),
        grace: Duration::ZERO,
        uploads: 2,
        readahead: 4,
        defer_staging: false,
    }
}

fn file_packs() -> Case {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().to_path_buf();
    // One handle at a time opens a pack directory: a reopen gets the same.
    let shared: Arc<dyn ChunkStore> = Arc::new(FilePacks::open(&path).unwrap());
    Case { open: Box::new(move || shared.clone()), remote: false, _dir: Some(d), _db: None }
}

fn mem_packs() -> Case {
    let shared: Arc<dyn ChunkStore> = Arc::new(MemPacks::default());
    Case { open: Box::new(move || shared.clone()), remote: false, _dir: None, _db: None }
}

fn objects(backend: Backend) -> Case {
    objects_with(backend, Arc::new(MemCatalog::default()))
}

fn objects_with(backend: Backend, catalog: Arc<dyn Catalog>) -> Case {
    Case {
        open: Box::new(move || {
            Arc::new(ObjectChunks::open(backend.clone(), catalog.clone(), "conformance", opts()).unwrap())
        }),
        remote: true,
        _dir: None,
        _db: None,
    }
}

fn objects_memory() -> Case {
    objects(Backend::memory(Arc::new(InMemory::new())))
}

fn objects_file() -> Case {
    let d = tempfile::tempdir().unwrap();
    let url = StoreUrl::parse(&format!("file://{}", d.path().display())).unwrap();
    magicfs_objects::format(&url).unwrap();
    let mut c = objects(Backend::open(&url).unwrap());
    c._dir = Some(d);
    c
}

/// A fresh prefix per test in a shared bucket (created if missing), and a
/// fresh PostgreSQL database for the segment catalog.
fn s3_case(settings: S3Settings) -> Case {
    static N: AtomicU32 = AtomicU32::new(0);
    let prefix = format!("conformance-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let bucket = "magicfs-conformance";
    let backend = Backend::s3(bucket, &prefix, settings).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(backend.ensure_bucket()).unwrap_or_else(|e| panic!("s3://{bucket}/{prefix}: {e}"));
    let db = TestDb::create().unwrap();
    let pg = Pg::connect(&db.url, PgOptions { max_connections: 4, ..PgOptions::default() }).unwrap();
    let mut c = objects_with(backend, Arc::new(PgCatalog::open(pg).unwrap()));
    c._db = Some(db);
    c
}

fn objects_seaweedfs() -> Case {
    let s = services();
    s3_case(S3Settings {
        endpoint: Some(s.s3_endpoint.clone()),
        region: s.s3_region.clone(),
        access_key: Some(s.s3_key.clone()),
        secret_key: Some(s.s3_secret.clone()),
        retry: magicfs_objects::DEFAULT_RETRY,
    })
}

fn objects_moto() -> Case {
    s3_case(S3Settings {
        endpoint: Some(services().moto_endpoint.clone()),
        region: "us-east-1".into(),
        access_key: Some("testing".into()),
        secret_key: Some("testing".into()),
        retry: magicfs_objects::DEFAULT_RETRY,
    })
}

#[template]
#[rstest]
#[case::file_packs(file_packs())]
#[case::mem_packs(mem_packs())]
#[case::objects_memory(objects_memory())]
#[case::objects_file(objects_file())]
#[case::objects_seaweedfs(objects_seaweedfs())]
#[case::objects_moto(objects_moto())]
fn backends(#[case] case: Case) {}

/// Deterministic bytes for chunk `i` of length `len`.
fn chunk(i: usize, len: usize) -> Vec<u8> {
    magicfs_types::noise::noise(len, i as u64 + 1)
}

const SIZES: [usize; 7] = [1, 4096, 100_000, 300_000, 7, 65_536, 200_000];

fn put_all(s: &dyn ChunkStore, from: usize, n: usize) -> Vec<(Location, Vec<u8>)> {
    (from..from + n)
        .map(|i| {
            let b = chunk(i, SIZES[i % SIZES.len()]);
            (s.put(&b).unwrap(), b)
        })
        .collect()
}

fn check_all(s: &dyn ChunkStore, put: &[(Location, Vec<u8>)]) {
    for (loc, b) in put {
        assert_eq!(loc.len as usize, b.len());
        assert_eq!(&*s.share(*loc).unwrap(), &b[..], "share {loc:?}");
        assert_eq!(s.read(*loc).unwrap(), *b, "read {loc:?}");
    }
}

#[apply(backends)]
fn put_then_read_back(case: Case) {
    let s = (case.open)();
    let put = put_all(&*s, 0, 40);
    check_all(&*s, &put);
    assert!(s.bytes() >= put.iter().map(|(_, b)| b.len() as u64).sum::<u64>());
}

#[apply(backends)]
fn persisted_chunks_are_readable_from_another_handle(case: Case) {
    let a = (case.open)();
    // A small commit (staged where the backend stages), then a large one.
    let small = put_all(&*a, 105, 2);
    a.persist().unwrap();
    let b = (case.open)();
    check_all(&*b, &small);
    let large = put_all(&*a, 200, 30);
    a.persist().unwrap();
    check_all(&*b, &large);
    // After the open segment is sealed, a third handle reads it all from
    // the stored objects.
    a.roll().unwrap();
    let c = (case.open)();
    check_all(&*c, &small);
    check_all(&*c, &large);
}

#[apply(backends)]
fn synced_chunks_survive_reopening(case: Case) {
    let put = {
        let s = (case.open)();
        let put = put_all(&*s, 300, 25);
        s.sync().unwrap();
        put
    };
    let s = (case.open)();
    check_all(&*s, &put);
}

#[apply(backends)]
fn concurrent_writers_and_readers_see_their_own_bytes(case: Case) {
    let s = (case.open)();
    let put: Vec<Vec<(Location, Vec<u8>)>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                sc.spawn(move || {
                    let put = put_all(&*s, 1000 * (t + 1), 20);
                    s.persist().unwrap();
                    check_all(&*s, &put);
                    put
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut locs: Vec<Location> = put.iter().flatten().map(|(l, _)| *l).collect();
    locs.sort_by_key(|l| (l.pack, l.offset));
    locs.dedup();
    assert_eq!(locs.len(), 80, "every put got its own location");
    let other = (case.open)();
    for p in &put {
        check_all(&*other, p);
    }
}

#[apply(backends)]
fn locality_is_reported_truthfully(case: Case) {
    let a = (case.open)();
    let put = put_all(&*a, 400, 12);
    assert!(put.iter().all(|(l, _)| a.is_local(*l)), "fresh puts are held here");
    a.roll().unwrap();
    let b = (case.open)();
    let (loc, bytes) = &put[3];
    if case.remote {
        assert!(!b.is_local(*loc), "a fresh mount has nothing cached");
        assert!(!b.always_local());
    }
    assert_eq!(&*b.share(*loc).unwrap(), &bytes[..]);
    assert!(b.is_local(*loc), "a chunk just read is cached");
}

#[apply(backends)]
fn retired_segments_go_only_after_reaping(case: Case) {
    let a = (case.open)();
    let old = put_all(&*a, 500, 10);
    a.roll().unwrap();
    let keep = put_all(&*a, 600, 10);
    a.roll().unwrap();
    a.sync().unwrap();
    let segs = a.segments().unwrap();
    let old_ids: std::collections::BTreeSet<u32> = old.iter().map(|(l, _)| l.pack).collect();
    let keep_ids: std::collections::BTreeSet<u32> = keep.iter().map(|(l, _)| l.pack).collect();
    let listed: Vec<u32> = segs.iter().map(|(id, _)| *id).collect();
    if segs.is_empty() {
        // Memory chunks are freed one by one, never compacted.
        a.free(old[0].0);
        return check_all(&*a, &keep);
    }
    for id in old_ids.iter().chain(&keep_ids) {
        assert!(listed.contains(id), "segment {id} is listed: {segs:?}");
    }
    for id in old_ids.difference(&keep_ids) {
        a.retire(*id).unwrap();
    }
    a.reap().unwrap();
    // Another mount (cold cache) finds the retired segments gone, the
    // others intact.
    let b = (case.open)();
    check_all(&*b, &keep);
    for (loc, _) in old.iter().filter(|(l, _)| !keep_ids.contains(&l.pack)) {
        assert!(b.share(*loc).is_err(), "{loc:?} was reaped");
    }
}
