//! On a cluster volume a small tail is staged by the metadata commit that
//! names it (`Options::defer_staging` with the PostgreSQL engine on the
//! catalog's database): a small file's data and metadata in one
//! transaction, which stages nothing if it fails.

use magicfs_meta_pg::PgMeta;
use magicfs_objects::{Backend, CacheConfig, Catalog, ObjectChunks, Options, PgCatalog, SegState};
use magicfs_pg::testing::TestDb;
use magicfs_pg::PgOptions;
use magicfs_store::{Batch, ChunkStore, MetaEngine, Table};
use object_store::memory::InMemory;
use std::sync::Arc;
use std::time::Duration;

fn pg_opts() -> PgOptions {
    PgOptions { retry_for: Duration::from_secs(10), max_connections: 4, ..PgOptions::default() }
}

fn opts() -> Options {
    Options {
        cache: CacheConfig { dir: None, disk_bytes: 0, mem_bytes: 16 << 20 },
        seal_after: Duration::from_secs(3600),
        defer_staging: true,
        ..Options::default()
    }
}

fn bytes(seed: u8) -> Vec<u8> {
    (0..4096u32).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn batch(key: u8) -> Batch {
    let mut b = Batch::new();
    b.put(Table::Inodes, vec![key], vec![key]);
    b
}

#[test]
fn a_metadata_commit_stages_the_tail_it_names() {
    let db = TestDb::create().expect("test database");
    PgMeta::format(&db.url, "file:///nowhere", pg_opts()).expect("format");
    let meta = PgMeta::open(&db.url, pg_opts()).expect("open");
    let shared = meta.shared().expect("shared");
    let catalog = Arc::new(PgCatalog::open(meta.pg().clone()).expect("catalog"));
    let mem = Arc::new(InMemory::new());
    let a = ObjectChunks::open(Backend::memory(mem.clone()), catalog.clone(), "v", opts()).expect("a");
    let other = || ObjectChunks::open(Backend::memory(mem.clone()), catalog.clone(), "v", opts()).expect("b");

    // The tail is handed out, not staged, until the commit that names it.
    let d1 = bytes(1);
    let l1 = a.put(&d1).unwrap();
    let t1 = a.persist_deferred().unwrap().expect("a tail to stage");
    assert_eq!((t1.segment, t1.offset, &t1.bytes), (l1.pack, 0, &d1));
    assert!(catalog.staged(l1.pack, l1.offset, l1.len).unwrap().is_none(), "staged before the commit");
    let mut b1 = batch(1);
    b1.staged = Some(t1.clone());
    let seq = shared.commit_if_current(0, &b1, 1).unwrap().expect("current");
    a.staged_committed(&t1);
    assert_eq!(&*other().share(l1).unwrap(), &d1[..], "another mount reads the committed tail");
    assert!(a.persist_deferred().unwrap().is_none(), "nothing left to stage");

    // A tail whose segment was sealed meanwhile commits without a row: the
    // object holds its bytes.
    let d2 = bytes(2);
    let l2 = a.put(&d2).unwrap();
    let t2 = a.persist_deferred().unwrap().expect("a second tail");
    assert_eq!(t2.offset, 4096);
    a.seal_now().unwrap();
    assert!(matches!(catalog.state(l2.pack).unwrap(), SegState::Sealed(_)));
    let mut b2 = batch(2);
    b2.staged = Some(t2);
    let seq = shared.commit_if_current(seq, &b2, 2).unwrap().expect("current");
    assert_eq!(&*other().share(l2).unwrap(), &d2[..]);

    // A segment adopted by another writer refuses the tail, and the whole
    // batch rolls back with it.
    let d3 = bytes(3);
    let l3 = a.put(&d3).unwrap();
    let t3 = a.persist_deferred().unwrap().expect("a third tail");
    assert_ne!(l3.pack, l2.pack);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(catalog.adopt(u64::MAX >> 2, Duration::ZERO).unwrap(), vec![l3.pack]);
    let mut b3 = batch(3);
    b3.staged = Some(t3);
    let err = shared.commit_if_current(seq, &b3, 3).expect_err("staging into an adopted segment");
    assert!(err.to_string().contains("no longer open for this writer"), "{err}");
    assert!(meta.get(Table::Inodes, &[3]).unwrap().is_none(), "the batch committed without its tail");
    assert!(catalog.staged(l3.pack, l3.offset, l3.len).unwrap().is_none());
}
