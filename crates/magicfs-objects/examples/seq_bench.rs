//! Sequential write and cold read of one large file through the real core
//! (`magicfs_core::Fs`: chunking, hashing, commits) over the object chunk
//! store, the data path a cluster mount uses. Prints one JSON line.
//!
//! `cargo run --release -p magicfs-objects --example seq_bench -- s3://BUCKET/PREFIX FILE`
//! writes FILE (read in 1 MiB pieces, like `dd bs=1M`) as one file, fsyncs,
//! then reads it back with an empty cache. S3 settings come from `AWS_*`;
//! the prefix must be new.
//!
//! Segments are recorded in a fresh PostgreSQL database on the test run's
//! server (`MAGICFS_TEST_PG`, started by `scripts/cluster-up.sh`), as on a
//! cluster volume.
//!
//! `seq_bench STORE_URL --small N` instead writes N files of 4 KiB (create,
//! write, close, each close made readable by other mounts as a cluster
//! mount does) and reports how many objects they became.

use magicfs_core::{Fs, FsConfig, OpenOptions};
use magicfs_objects::{Backend, CacheConfig, Catalog, ObjectChunks, Options, PgCatalog, StoreUrl};
use magicfs_pg::testing::TestDb;
use magicfs_pg::{Pg, PgOptions};
use magicfs_store::Store;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: seq_bench STORE_URL FILE | seq_bench STORE_URL --small N";
    let url = StoreUrl::parse(args.get(1).ok_or(usage)?)?;
    if args.get(2).map(String::as_str) == Some("--small") {
        let n: u32 = args.get(3).ok_or(usage)?.parse()?;
        return small_files(&url, n);
    }
    let mut input = std::fs::File::open(args.get(2).ok_or(usage)?)?;
    let size = input.metadata()?.len() as usize;
    magicfs_objects::format(&url)?;
    let opts = Options { cache: CacheConfig { dir: None, disk_bytes: 0, mem_bytes: 256 << 20 }, ..Options::default() };
    let (catalog, _db) = catalog()?;
    let objects = Arc::new(ObjectChunks::open(Backend::open(&url)?, catalog, "bench", opts)?);
    let fs = Arc::new(Fs::load(Store::memory_with(objects.clone()), FsConfig::default())?);
    let mut block = vec![0u8; 1 << 20];
    let t = Instant::now();
    let mut f = fs.open_path("big", OpenOptions::new().write(true).create(true))?;
    loop {
        let n = input.read(&mut block)?;
        if n == 0 {
            break;
        }
        f.write_all(&block[..n])?;
    }
    f.sync_all()?;
    f.close()?;
    let write_s = t.elapsed().as_secs_f64();
    objects.seal_now()?;
    let uploads = objects.stats().uploads;
    objects.clear_memory_cache();
    let t = Instant::now();
    let mut f = fs.open_path("big", OpenOptions::new().read(true))?;
    let mut total = 0usize;
    loop {
        let n = f.read(&mut block)?;
        if n == 0 {
            break;
        }
        total += n;
    }
    let read_s = t.elapsed().as_secs_f64();
    assert_eq!(total, size);
    let mib = size as f64 / (1 << 20) as f64;
    let s = objects.stats();
    println!(
        "{{\"mib\":{mib:.0},\"write_s\":{write_s:.3},\"write_mib_s\":{:.1},\"cold_read_s\":{read_s:.3},\"cold_read_mib_s\":{:.1},\"objects\":{uploads},\"gets\":{},\"prefetched\":{}}}",
        mib / write_s,
        mib / read_s,
        s.fetches,
        s.prefetches
    );
    Ok(())
}

fn small_files(url: &StoreUrl, n: u32) -> Result<(), Box<dyn std::error::Error>> {
    magicfs_objects::format(url)?;
    let (catalog, _db) = catalog()?;
    let objects = Arc::new(ObjectChunks::open(Backend::open(url)?, catalog, "bench", Options::default())?);
    let fs = Arc::new(Fs::load(Store::memory_with(objects.clone()), FsConfig::default())?);
    let t = Instant::now();
    for i in 0..n {
        let mut data = vec![0u8; 4096];
        for (j, b) in data.iter_mut().enumerate() {
            *b = (i as usize * 31 + j * 7 % 251) as u8 ^ (j >> 8) as u8;
        }
        data[..4].copy_from_slice(&i.to_le_bytes());
        let mut f = fs.open_path(&format!("f{i}"), OpenOptions::new().write(true).create(true))?;
        f.write_all(&data)?;
        f.close()?;
        use magicfs_store::ChunkStore;
        objects.persist()?;
    }
    let secs = t.elapsed().as_secs_f64();
    objects.seal_now()?;
    let s = objects.stats();
    println!("{{\"files\":{n},\"secs\":{secs:.3},\"staged_rows\":{},\"objects\":{}}}", s.staged, s.uploads);
    Ok(())
}

/// The segment catalog in a database of its own, dropped at the end.
fn catalog() -> Result<(Arc<dyn Catalog>, TestDb), Box<dyn std::error::Error>> {
    let db = TestDb::create()?;
    let pg = Pg::connect(&db.url, PgOptions::default())?;
    Ok((Arc::new(PgCatalog::open(pg)?), db))
}
