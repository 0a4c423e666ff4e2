//! The object chunk store beyond the conformance suite: small commits
//! staged and sealed into few objects, segments of stopped writers sealed
//! by another mount, the local cache and read-ahead, and failures of the
//! object store (bounded errors naming the service, recovery without
//! reopening, clear messages for a missing bucket or refused credentials).

mod support;

use magicfs_objects::{Backend, CacheConfig, Catalog, MemCatalog, ObjectChunks, Options, S3Settings, SegState};
use magicfs_pg::testing::services;
use magicfs_store::{ChunkStore, Location};
use object_store::memory::InMemory;
use object_store::ObjectStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn opts() -> Options {
    Options {
        cache: CacheConfig { dir: None, disk_bytes: 0, mem_bytes: 64 << 20 },
        seal_after: Duration::from_millis(500),
        adopt_after: Duration::from_secs(1),
        grace: Duration::ZERO,
        ..Options::default()
    }
}

fn bytes(i: u32, len: usize) -> Vec<u8> {
    magicfs_types::noise::noise(len, u64::from(i) + 1)
}

fn objects_in(mem: &InMemory) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        use futures_util::StreamExt;
        mem.list(None).collect::<Vec<_>>().await.len()
    })
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn five_hundred_small_commits_make_few_objects() {
    let mem = Arc::new(InMemory::new());
    let catalog = Arc::new(MemCatalog::default());
    let a = ObjectChunks::open(Backend::memory(mem.clone()), catalog.clone(), "v", opts()).unwrap();
    let mut put = Vec::new();
    for i in 0..500 {
        let b = bytes(i, 4096);
        put.push((a.put(&b).unwrap(), b));
        a.persist().unwrap();
    }
    // Each commit was made readable by a staged row, not an object.
    assert_eq!(a.stats().staged, 500);
    a.seal_now().unwrap();
    let objects = objects_in(&mem);
    assert!(objects <= 50, "{objects} objects for 500 small commits");
    assert!(catalog.list().unwrap().iter().all(|s| matches!(s.state, SegState::Sealed(_))));
    let b = ObjectChunks::open(Backend::memory(mem), catalog, "v", opts()).unwrap();
    for (loc, data) in &put {
        assert_eq!(&*b.share(*loc).unwrap(), &data[..]);
    }
    // 500 × 4 KiB fit in one block: one GET.
    assert_eq!(b.stats().fetches, 1);
}

#[test]
fn staged_bytes_are_read_by_others_then_sealed_in_the_background() {
    let mem = Arc::new(InMemory::new());
    let catalog = Arc::new(MemCatalog::default());
    let a = ObjectChunks::open(Backend::memory(mem.clone()), catalog.clone(), "v", opts()).unwrap();
    let data = bytes(7, 5000);
    let loc = a.put(&data).unwrap();
    a.persist().unwrap();
    assert_eq!(catalog.state(loc.pack).unwrap(), SegState::Open);
    let b = ObjectChunks::open(Backend::memory(mem.clone()), catalog.clone(), "v", opts()).unwrap();
    assert_eq!(&*b.share(loc).unwrap(), &data[..]);
    assert_eq!(b.stats().staged_reads, 1);
    wait_until("the sealer seals the segment", Duration::from_secs(10), || {
        matches!(catalog.state(loc.pack).unwrap(), SegState::Sealed(_))
    });
    assert!(catalog.staged(loc.pack, loc.offset, loc.len).unwrap().is_none(), "staged rows dropped");
    let c = ObjectChunks::open(Backend::memory(mem), catalog, "v", opts()).unwrap();
    assert_eq!(&*c.share(loc).unwrap(), &data[..]);
    assert_eq!(c.stats().fetches, 1);
}

#[test]
fn a_stopped_writers_segment_is_sealed_by_another_mount() {
    let mem = Arc::new(InMemory::new());
    let catalog = Arc::new(MemCatalog::default());
    let slow = Options { seal_after: Duration::from_secs(3600), ..opts() };
    let a = ObjectChunks::open(Backend::memory(mem.clone()), catalog.clone(), "v", slow).unwrap();
    let put: Vec<(Location, Vec<u8>)> = (0..3)
        .map(|i| {
            let b = bytes(100 + i, 3000);
            let l = a.put(&b).unwrap();
            a.persist().unwrap();
            (l, b)
        })
        .collect();
    // Put but never persisted: no commit refers to it, it may be lost.
    a.put(&bytes(999, 100)).unwrap();
    a.abandon();
    let seg = put[0].0.pack;
    let b = ObjectChunks::open(Backend::memory(mem.clone()), catalog.clone(), "v", opts()).unwrap();
    wait_until("another mount seals the abandoned segment", Duration::from_secs(15), || {
        catalog.state(seg).unwrap() == SegState::Sealed(9000)
    });
    drop(b);
    let c = ObjectChunks::open(Backend::memory(mem), catalog, "v", opts()).unwrap();
    for (loc, data) in &put {
        assert_eq!(&*c.share(*loc).unwrap(), &data[..]);
    }
}

fn big_file(a: &ObjectChunks, mib: usize) -> Vec<(Location, Vec<u8>)> {
    let put: Vec<(Location, Vec<u8>)> = (0..mib * 4)
        .map(|i| {
            let b = bytes(5000 + i as u32, 256 << 10);
            (a.put(&b).unwrap(), b)
        })
        .collect();
    a.persist().unwrap();
    put
}

#[test]
fn sequential_reads_fetch_ahead_and_the_disk_cache_outlives_a_restart() {
    let mem = Arc::new(InMemory::new());
    let catalog = Arc::new(MemCatalog::default());
    let small = Options { segment_bytes: 8 << 20, ..opts() };
    let a = ObjectChunks::open(Backend::memory(mem.clone()), catalog.clone(), "v", small).unwrap();
    let put = big_file(&a, 40);
    drop(a);
    let dir = tempfile::tempdir().unwrap();
    let cached = Options {
        cache: CacheConfig { dir: Some(dir.path().to_path_buf()), disk_bytes: 1 << 30, mem_bytes: 32 << 20 },
        ..opts()
    };
    let b = ObjectChunks::open(Backend::memory(mem.clone()), catalog.clone(), "v", cached.clone()).unwrap();
    let mut waited = 0;
    for (loc, data) in &put {
        if !b.is_local(*loc) {
            waited += 1;
        }
        assert_eq!(&*b.share(*loc).unwrap(), &data[..]);
    }
    // 5 segments of 2 blocks: each block fetched once, most of them ahead
    // of the reader, who finds the rest of its reads local.
    let s = b.stats();
    assert_eq!(s.fetches, 10, "{s:?}");
    assert!(s.prefetches >= 6, "read-ahead fetched blocks: {s:?}");
    assert!(waited <= 20, "a sequential reader of 160 chunks waited on the network {waited} times: {s:?}");
    wait_until("blocks reach the disk cache", Duration::from_secs(10), || b.cache_usage().1 >= 40 << 20);
    drop(b);
    let c = ObjectChunks::open(Backend::memory(mem), catalog, "v", cached).unwrap();
    assert!(put.iter().all(|(l, _)| c.is_local(*l)), "a restart finds the blocks on disk");
    for (loc, data) in &put {
        assert_eq!(&*c.share(*loc).unwrap(), &data[..]);
    }
    assert_eq!(c.stats().fetches, 0, "all reads came from the disk cache");
}

fn settings(endpoint: &str, retry: Duration) -> S3Settings {
    S3Settings {
        endpoint: Some(endpoint.to_string()),
        region: "us-east-1".into(),
        access_key: Some("testing".into()),
        secret_key: Some("testing".into()),
        retry,
    }
}

#[test]
fn an_unreachable_object_store_fails_in_bounded_time_naming_it() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let backend = Backend::s3("bucket", "p", settings(&endpoint, Duration::from_secs(2))).unwrap();
    let t = Instant::now();
    let e = ObjectChunks::open(backend, Arc::new(MemCatalog::default()), "v", opts()).err().unwrap().to_string();
    assert!(t.elapsed() < Duration::from_secs(15), "failed after {:?}", t.elapsed());
    assert!(e.contains(&format!("S3 at {endpoint} (bucket bucket)")), "{e}");
}

/// A proxy in front of moto goes down and comes back while a writer commits.
#[test]
fn writes_fail_during_an_outage_and_carry_on_after_it_without_reopening() {
    let mut proxy = support::Proxy::start(&services().moto_endpoint);
    let retry = Duration::from_secs(2);
    let prefix = format!("outage-{}", std::process::id());
    let backend = Backend::s3("magicfs-outage", &prefix, settings(&proxy.url(), retry)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(backend.ensure_bucket()).unwrap();
    let catalog = Arc::new(MemCatalog::default());
    let a = ObjectChunks::open(backend.clone(), catalog.clone(), "v", opts()).unwrap();
    let before = big_file(&a, 2);
    proxy.down();
    let during = big_file_fallible(&a);
    let t = Instant::now();
    let e = a.persist().expect_err("a commit during the outage fails").to_string();
    assert!(t.elapsed() < Duration::from_secs(30), "bounded: {:?}", t.elapsed());
    assert!(e.contains(&format!("S3 at {}", proxy.url())), "{e}");
    // While the background sealer keeps trying the failed segment again,
    // a second commit still fails in bounded time instead of waiting on
    // those tries for ever.
    // Two segments failing out of step keep one of them trying at any time.
    std::thread::sleep(Duration::from_millis(1300));
    let during2 = big_file_fallible(&a);
    let t = Instant::now();
    let e = a.persist().expect_err("a commit while the outage lasts fails").to_string();
    assert!(t.elapsed() < Duration::from_secs(30), "bounded while retried in the background: {:?}", t.elapsed());
    assert!(e.contains(&format!("S3 at {}", proxy.url())), "{e}");
    proxy.up();
    // The same store, not reopened, commits again: the failed segment is
    // written now.
    a.persist().unwrap();
    a.seal_now().unwrap();
    let b = ObjectChunks::open(backend, catalog, "v", opts()).unwrap();
    for (loc, data) in before.iter().chain(&during).chain(&during2) {
        assert_eq!(&*b.share(*loc).unwrap(), &data[..]);
    }
}

fn big_file_fallible(a: &ObjectChunks) -> Vec<(Location, Vec<u8>)> {
    (0..8)
        .map(|i| {
            let b = bytes(9000 + i, 256 << 10);
            (a.put(&b).unwrap(), b)
        })
        .collect()
}

/// SeaweedFS checks credentials.
#[test]
fn a_missing_bucket_and_refused_credentials_are_explained() {
    let svc = services();
    let s = S3Settings {
        endpoint: Some(svc.s3_endpoint.clone()),
        region: svc.s3_region.clone(),
        access_key: Some(svc.s3_key.clone()),
        secret_key: Some(svc.s3_secret.clone()),
        retry: magicfs_objects::DEFAULT_RETRY,
    };
    let missing = Backend::s3("magicfs-no-such-bucket", "p", s.clone()).unwrap();
    let e = ObjectChunks::open(missing, Arc::new(MemCatalog::default()), "v", opts()).err().unwrap().to_string();
    assert!(e.contains("the bucket magicfs-no-such-bucket does not exist"), "{e}");
    // The bucket exists (made with the right keys); the wrong secret is refused.
    let good = Backend::s3("magicfs-conformance", "p", s.clone()).unwrap();
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(good.ensure_bucket()).unwrap();
    let wrong = S3Settings { secret_key: Some("not-the-secret".into()), ..s };
    let bad = Backend::s3("magicfs-conformance", "p", wrong).unwrap();
    let e = ObjectChunks::open(bad, Arc::new(MemCatalog::default()), "v", opts()).err().unwrap().to_string();
    assert!(e.contains("refused the credentials") && e.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    assert!(!e.contains("not-the-secret"), "the secret is never printed: {e}");
}
