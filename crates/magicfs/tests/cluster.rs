//! Cluster volumes through real mounts: two or three daemons of the real
//! binary on one machine stand for machines, sharing a volume whose
//! metadata is in the test run's PostgreSQL (or a private server that the
//! test stops and starts).

mod common;

use common::{get_xattr, magicfs, noise, scratch, set_xattr, sh, Mount};
use magicfs_pg::testing::{PrivatePg, TestDb};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A formatted volume: a database and a chunk directory.
struct Volume {
    _db: Option<TestDb>,
    url: String,
    tmp: tempfile::TempDir,
}

impl Volume {
    fn new(name: &str) -> Volume {
        let db = TestDb::create().expect("a test database");
        let url = db.url_string();
        Volume::format(name, Some(db), url)
    }

    fn format(name: &str, db: Option<TestDb>, url: String) -> Volume {
        let tmp = scratch(name);
        let store = format!("file://{}", tmp.path().join("chunks").display());
        let out = magicfs(&["format", "--meta", &url, "--store", &store]);
        assert!(out.status.success(), "format: {}", String::from_utf8_lossy(&out.stderr));
        Volume { _db: db, url, tmp }
    }

    fn mount(&self, name: &str) -> Mount {
        Mount::cluster(&self.tmp.path().join(name), &self.url, &[])
    }

    fn fsck(&self) {
        let out = magicfs(&["fsck", "--meta", &self.url]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("clean"),
            "fsck --meta: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Waits up to `limit` for `f`.
fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn data_names_xattrs_and_hard_links_cross_over() {
    let v = Volume::new("cluster-cross");
    let (a, b) = (v.mount("a"), v.mount("b"));
    let data = noise(3 << 20, 21);
    fs::create_dir(a.path("dir")).unwrap();
    fs::write(a.path("dir/f"), &data).unwrap();
    set_xattr(&a.path("dir/f"), "user.colour", "blue");
    fs::hard_link(a.path("dir/f"), a.path("hard")).unwrap();
    // Names within a second, data at the next open.
    eventually("the new names", SECOND, || b.path("dir/f").exists() && b.path("hard").exists());
    assert_eq!(fs::read(b.path("dir/f")).unwrap(), data);
    assert_eq!(fs::read(b.path("hard")).unwrap(), data);
    assert_eq!(get_xattr(&b.path("dir/f"), "user.colour").as_deref(), Some("blue"));
    assert_eq!(fs::metadata(b.path("hard")).unwrap().nlink(), 2);
    // Back the other way: rename, chmod, unlink, an overwrite.
    fs::rename(b.path("dir/f"), b.path("moved")).unwrap();
    sh(&b.dir, "chmod 600 moved && rm hard && printf changed | dd of=moved bs=1 seek=100 conv=notrunc status=none");
    eventually("the rename", SECOND, || a.path("moved").exists() && !a.path("dir/f").exists());
    eventually("the chmod", SECOND, || fs::metadata(a.path("moved")).is_ok_and(|m| m.mode() & 0o777 == 0o600));
    eventually("the unlink", SECOND, || !a.path("hard").exists());
    let mut want = data.clone();
    want[100..107].copy_from_slice(b"changed");
    assert_eq!(fs::read(a.path("moved")).unwrap(), want);
    drop((a, b));
    v.fsck();
}

#[test]
fn alternating_appends_from_two_mounts_keep_every_line() {
    let v = Volume::new("cluster-append");
    let (a, b) = (v.mount("a"), v.mount("b"));
    fs::write(a.path("log"), b"").unwrap();
    eventually("the file", SECOND, || b.path("log").exists());
    let mut want = String::new();
    for i in 0..30 {
        let m = if i % 2 == 0 { &a } else { &b };
        let line = format!("line {i} from mount {}\n", i % 2);
        let mut f = OpenOptions::new().append(true).open(m.path("log")).unwrap();
        f.write_all(line.as_bytes()).unwrap();
        drop(f);
        want.push_str(&line);
    }
    assert_eq!(fs::read_to_string(a.path("log")).unwrap(), want);
    assert_eq!(fs::read_to_string(b.path("log")).unwrap(), want);
    drop((a, b));
    v.fsck();
}

#[test]
fn rename_and_unlink_races_stay_atomic() {
    let v = Volume::new("cluster-race");
    let (a, b) = (v.mount("a"), v.mount("b"));
    sh(&a.dir, "mkdir -p d && for i in $(seq 0 39); do echo $i > d/f$i; done");
    eventually("the files", SECOND, || b.path("d/f39").exists());
    let race = |m: PathBuf, seed: u32| {
        std::thread::spawn(move || {
            for r in 0..80u32 {
                let i = (r * 7 + seed) % 40;
                let j = (r * 11 + seed * 3) % 40;
                let (from, to) = (m.join(format!("d/f{i}")), m.join(format!("d/f{j}")));
                let _ = match r % 3 {
                    0 => fs::rename(&from, &to),
                    1 => fs::rename(&from, m.join(format!("d/g{seed}-{r}"))),
                    _ => fs::remove_file(&from),
                };
            }
        })
    };
    let (ta, tb) = (race(a.dir.clone(), 1), race(b.dir.clone(), 2));
    ta.join().unwrap();
    tb.join().unwrap();
    let list = |m: &Mount| {
        let mut v: Vec<(String, String)> = fs::read_dir(m.path("d"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), fs::read_to_string(e.path()).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    eventually("the same listing on both mounts", 2 * SECOND, || list(&a) == list(&b));
    // Every surviving name holds one of the original files, each at most once.
    let mut contents: Vec<String> = list(&a).into_iter().map(|(_, c)| c).collect();
    let n = contents.len();
    contents.sort();
    contents.dedup();
    assert_eq!(contents.len(), n, "a file appears under two names");
    drop((a, b));
    v.fsck();
}

#[test]
fn an_unlinked_file_open_on_another_mount_stays_readable() {
    let v = Volume::new("cluster-orphan");
    let (a, b) = (v.mount("a"), v.mount("b"));
    let data = noise(1 << 20, 5);
    fs::write(a.path("victim"), &data).unwrap();
    eventually("the file", SECOND, || b.path("victim").exists());
    let mut held = File::open(b.path("victim")).unwrap();
    fs::remove_file(a.path("victim")).unwrap();
    eventually("the unlink", SECOND, || !b.path("victim").exists());
    // Heartbeats and cleaning rounds pass; the open file stays whole.
    std::thread::sleep(Duration::from_secs(5));
    let mut got = Vec::new();
    held.seek(SeekFrom::Start(0)).unwrap();
    held.read_to_end(&mut got).unwrap();
    assert_eq!(got, data, "readable where it is open");
    drop(held);
    drop((a, b));
    v.fsck();
}

#[test]
fn kill_9_of_a_mount_mid_write_loses_nothing_closed_or_fsynced() {
    let v = Volume::new("cluster-kill");
    let mut a = Mount::cluster(&v.tmp.path().join("a"), &v.url, &[]);
    let b = v.mount("b");
    let closed = noise(2 << 20, 8);
    fs::write(a.path("closed"), &closed).unwrap();
    let synced = noise(700_000, 9);
    {
        let mut f = File::create(a.path("synced")).unwrap();
        f.write_all(&synced).unwrap();
        f.sync_all().unwrap();
        // Still open, and more is written after the fsync: that part may be lost.
        f.write_all(b"unsynced tail").unwrap();
        let mut g = File::create(a.path("half")).unwrap();
        g.write_all(&noise(5 << 20, 10)).unwrap();
        a.kill9();
        std::mem::forget((f, g));
    }
    // The other mount carries on and sees everything closed or fsynced.
    eventually("the names", SECOND, || b.path("closed").exists() && b.path("synced").exists());
    assert_eq!(fs::read(b.path("closed")).unwrap(), closed);
    assert_eq!(fs::read(b.path("synced")).unwrap()[..synced.len()], synced[..]);
    sh(&b.dir, "mkdir after && for i in $(seq 20); do echo $i > after/$i; done; mv after/1 after/one; rm after/2");
    assert_eq!(fs::read_dir(b.path("after")).unwrap().count(), 19);
    drop(b);
    v.fsck();
}

/// A workload that writes, renames and reads small files in a loop; counts
/// what succeeded and what failed, and how long the slowest call took.
fn workload(dir: &Path, stop: &std::sync::atomic::AtomicBool) -> (u64, u64, Duration) {
    let (mut ok, mut failed, mut slowest) = (0u64, 0u64, Duration::ZERO);
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let t = Instant::now();
        let p = dir.join(format!("w{i}"));
        let r = fs::write(&p, format!("file {i}")).and_then(|_| fs::rename(&p, dir.join(format!("r{i}"))));
        match r {
            Ok(()) => ok += 1,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "a failure other than EIO: {e}");
                failed += 1;
            }
        }
        slowest = slowest.max(t.elapsed());
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    (ok, failed, slowest)
}

#[test]
fn postgres_stopped_for_ten_seconds_mid_workload() {
    // A server of the test's own, stopped and started without disturbing other tests.
    let pg = PrivatePg::start();
    let v = Volume::format("cluster-outage", None, pg.url_string());
    // Operations wait up to 3 s for the server, then fail with EIO.
    let start = |name: &str| {
        let dir = v.tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        let child = Command::new(common::bin())
            .args(["mount", dir.to_str().unwrap(), "--meta", &v.url, "--no-chat"])
            .env("MAGICFS_PG_RETRY_SECS", "3")
            .env("MAGICFS_LOG", "warn")
            .stderr(File::create(v.tmp.path().join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        eventually("the mount", 30 * SECOND, || common::is_mounted(&dir));
        (dir, child)
    };
    let ((da, mut ca), (db, mut cb)) = (start("a"), start("b"));
    fs::create_dir(da.join("work")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let work = da.join("work");
    let t = std::thread::spawn(move || workload(&work, &s2));
    std::thread::sleep(Duration::from_secs(2));
    pg.stop();
    std::thread::sleep(Duration::from_secs(10));
    pg.resume();
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, slowest) = t.join().unwrap();
    eprintln!("outage: {ok} operations succeeded, {failed} failed with EIO, slowest {slowest:?}");
    assert!(failed > 0, "nothing failed while the database was down for 10 s");
    assert!(slowest < Duration::from_secs(8), "a call took {slowest:?}: retries are not bounded");
    // Without a remount, both mounts work again and agree.
    let before = ok;
    let out = sh(&da, "for i in $(seq 5); do echo again $i > work/again$i; done; cat work/again5");
    assert_eq!(out, "again 5\n");
    eventually("the other mount sees the new files", 2 * SECOND, || db.join("work/again5").exists());
    assert_eq!(fs::read_to_string(db.join("work/again3")).unwrap(), "again 3\n");
    let log = fs::read_to_string(v.tmp.path().join("a.log")).unwrap();
    assert!(log.contains("PostgreSQL at 127.0.0.1:"), "the log names the service:\n{log}");
    for c in [&mut ca, &mut cb] {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        assert!(c.wait().unwrap().success());
    }
    v.fsck();
    assert!(before > 0);
}

#[test]
fn bad_input_gets_clear_messages() {
    let db = TestDb::create().expect("a test database");
    let good = db.url_string();
    let tmp = scratch("cluster-bad");
    let store = format!("file://{}", tmp.path().join("chunks").display());
    let err = |args: &[&str]| {
        let out = magicfs(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // A database holding no volume.
    let e = err(&["stats", "--meta", &good]);
    assert!(e.contains("holds no MagicFS volume") && e.contains("magicfs format"), "{e}");
    let mnt = tmp.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let e = err(&["mount", mnt.to_str().unwrap(), "--meta", &good]);
    assert!(e.contains("holds no MagicFS volume"), "{e}");
    // Formatting twice.
    let out = magicfs(&["format", "--meta", &good, "--store", &store]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let e = err(&["format", "--meta", &good, "--store", &store]);
    assert!(e.contains("already holds a MagicFS volume"), "{e}");
    // A wrong password, never printed.
    let wrong = good.replacen("://magicfs:", "://magicfs:not-the-password-", 1);
    let e = err(&["stats", "--meta", &wrong]);
    assert!(e.contains("refused the login") && !e.contains("not-the-password"), "{e}");
    // A missing database.
    let missing = format!("{}_missing", &good);
    let e = err(&["stats", "--meta", &missing]);
    assert!(e.contains("has no database") && e.contains("createdb"), "{e}");
    // An unreachable host: fails within seconds and names it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = Instant::now();
    let e = err(&["stats", "--meta", &format!("postgres://magicfs@127.0.0.1:{port}/x")]);
    assert!(e.contains(&format!("PostgreSQL at 127.0.0.1:{port}")) && e.contains("unreachable"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    // Not a PostgreSQL URL; a store URL of an unknown kind.
    let e = err(&["stats", "--meta", "mysql://x@y/z"]);
    assert!(e.contains("postgres://"), "{e}");
    let other = TestDb::create().expect("a test database");
    let e = err(&["format", "--meta", &other.url_string(), "--store", "ftp://x/y"]);
    assert!(e.contains("s3://BUCKET/PREFIX") && e.contains("file:///DIR"), "{e}");
}
