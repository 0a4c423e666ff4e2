//! The `Catalog` conformance suite: one template, a case per catalog (in
//! memory, and PostgreSQL on the test run's server).

use magicfs_objects::{Catalog, MemCatalog, PgCatalog, SegState};
use magicfs_pg::testing::TestDb;
use magicfs_pg::{Pg, PgOptions};
use rstest::rstest;
use rstest_reuse::{apply, template};
use std::sync::Arc;
use std::time::Duration;

struct Case {
    catalog: Arc<dyn Catalog>,
    _db: Option<TestDb>,
}

fn memory() -> Case {
    Case { catalog: Arc::new(MemCatalog::default()), _db: None }
}

fn postgres() -> Case {
    let db = TestDb::create().unwrap();
    let pg = Pg::connect(&db.url, PgOptions { max_connections: 2, ..PgOptions::default() }).unwrap();
    let catalog = Arc::new(PgCatalog::open(pg.clone()).unwrap());
    // A second open of the same database finds its tables made.
    PgCatalog::open(pg).unwrap();
    Case { catalog, _db: Some(db) }
}

#[template]
#[rstest]
#[case::memory(memory())]
#[case::postgres(postgres())]
fn catalogs(#[case] case: Case) {}

#[apply(catalogs)]
fn segments_go_from_open_to_sealed_to_retired(case: Case) {
    let c = &*case.catalog;
    let a = c.create(1).unwrap();
    let b = c.create(2).unwrap();
    assert_ne!(a, b);
    assert_eq!(c.state(a).unwrap(), SegState::Open);
    assert_eq!(c.state(999_999).unwrap(), SegState::Unknown);
    assert!(c.retire(a).is_err(), "an open segment is not retired");
    c.seal(a, 100).unwrap();
    assert_eq!(c.state(a).unwrap(), SegState::Sealed(100));
    c.retire(a).unwrap();
    assert_eq!(c.state(a).unwrap(), SegState::Retired(100));
    assert!(c.expired(Duration::from_secs(3600)).unwrap().is_empty());
    assert_eq!(c.expired(Duration::ZERO).unwrap(), vec![a]);
    let listed: Vec<u32> = c.list().unwrap().iter().map(|s| s.id).collect();
    assert_eq!(listed, vec![a, b]);
    c.forget(a).unwrap();
    assert_eq!(c.state(a).unwrap(), SegState::Unknown);
}

#[apply(catalogs)]
fn staged_rows_serve_ranges_until_the_seal(case: Case) {
    let c = &*case.catalog;
    let s = c.create(7).unwrap();
    c.stage(s, 7, 0, b"hello ").unwrap();
    c.stage(s, 7, 6, b"world").unwrap();
    // A retried stage of the same row is harmless.
    c.stage(s, 7, 6, b"world").unwrap();
    assert_eq!(&c.staged(s, 6, 5).unwrap().unwrap()[..], b"world");
    assert_eq!(&c.staged(s, 1, 4).unwrap().unwrap()[..], b"ello");
    assert!(c.staged(s, 4, 4).unwrap().is_none(), "a range across two rows is no row's");
    assert!(c.stage(s, 8, 11, b"!").is_err(), "only the owner stages");
    let rows = c.staged_rows(s).unwrap();
    assert_eq!(rows.iter().map(|(o, b)| (*o, b.len())).collect::<Vec<_>>(), vec![(0, 6), (6, 5)]);
    assert_eq!(c.list().unwrap()[0].len, 11);
    c.seal(s, 11).unwrap();
    assert!(c.staged(s, 6, 5).unwrap().is_none());
    assert!(c.staged_rows(s).unwrap().is_empty());
    assert!(c.stage(s, 7, 11, b"!").is_err(), "a sealed segment takes no more rows");
}

#[apply(catalogs)]
fn silent_writers_segments_are_adopted(case: Case) {
    let c = &*case.catalog;
    let s = c.create(1).unwrap();
    let t = c.create(2).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.heartbeat(2, &[t]).unwrap();
    assert_eq!(c.adopt(3, Duration::from_millis(200)).unwrap(), vec![s]);
    assert!(c.adopt(4, Duration::from_millis(200)).unwrap().is_empty(), "adopted once");
    assert!(c.stage(s, 1, 0, b"x").is_err(), "the old owner may no longer stage");
    c.stage(s, 3, 0, b"x").unwrap();
}
