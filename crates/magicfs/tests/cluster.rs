//! Cluster volumes through real mounts: two or three daemons of the real
//! binary on one machine stand for machines, sharing a volume whose
//! metadata is in the test run's PostgreSQL (or a private server that the
//! test stops and starts) and whose chunks are in the test run's SeaweedFS
//! (through a proxy the outage test takes down).

mod common;
#[path = "../../magicfs-objects/tests/support/mod.rs"]
mod proxy;

use common::{get_xattr, magicfs, noise, scratch, set_xattr, sh, Mount};
use magicfs_pg::testing::{services, PrivatePg, TestDb};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A bucket of the test run's S3 service that every test volume shares,
/// each under a prefix of its own.
const BUCKET: &str = "magicfs-cluster-tests";

/// Runs the magicfs CLI with the test run's S3 settings.
fn cli(args: &[&str]) -> Output {
    Command::new(common::bin()).args(args).envs(services().s3_env()).output().expect("run magicfs")
}

/// A formatted volume: a database, and chunks in S3 (SeaweedFS).
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
        let prefix = tmp.path().file_name().unwrap().to_string_lossy().to_lowercase();
        let store = format!("s3://{BUCKET}/{prefix}");
        let out = cli(&["format", "--meta", &url, "--store", &store]);
        assert!(out.status.success(), "format: {}", String::from_utf8_lossy(&out.stderr));
        Volume { _db: db, url, tmp }
    }

    /// A mount with a disk cache of its own, as on a machine of its own.
    fn mount(&self, name: &str) -> Mount {
        let cache = self.tmp.path().join(format!("{name}-cache"));
        Mount::cluster(&self.tmp.path().join(name), &self.url, &["--cache-dir", cache.to_str().unwrap()])
    }

    /// A mount reaching S3 at `s3` (a proxy a test takes down), whose
    /// operations wait up to 2 s for a service, then fail with EIO; its log
    /// is `NAME.log` in the volume's directory.
    fn mount_via(&self, name: &str, s3: &str) -> (PathBuf, Daemon) {
        let dir = self.tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        let child = Command::new(common::bin())
            .args(["mount", dir.to_str().unwrap(), "--meta", &self.url, "--no-chat"])
            .envs(services().s3_env())
            .env("AWS_ENDPOINT_URL", s3)
            .env("MAGICFS_PG_RETRY_SECS", "2")
            .env("MAGICFS_S3_RETRY_SECS", "2")
            .env("MAGICFS_LOG", "warn")
            .stderr(File::create(self.tmp.path().join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        eventually("the mount", 30 * SECOND, || common::is_mounted(&dir));
        (dir.clone(), Daemon(Some(child), dir))
    }

    fn fsck(&self) {
        let out = cli(&["fsck", "--meta", &self.url]);
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
    let (a, b, c) = (v.mount("a"), v.mount("b"), v.mount("c"));
    // The mount table names the volume's database, as a disk names its device.
    let table = fs::read_to_string("/proc/self/mounts").unwrap();
    let line = table.lines().find(|l| l.split(' ').nth(1) == a.dir.to_str()).expect("the mount in the table");
    assert!(line.starts_with("postgres://") && line.contains(" fuse"), "mount table: {line}");
    if let Some(password) =
        v.url.split_once("://").and_then(|(_, r)| r.split_once('@')).and_then(|(u, _)| u.split_once(':'))
    {
        assert!(!line.contains(&format!(":{}@", password.1)), "the mount table shows the password: {line}");
    }
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
    // The third mount saw it all too, data included (from S3 or its own cache).
    eventually("the third mount", SECOND, || c.path("moved").exists() && !c.path("hard").exists());
    assert_eq!(fs::read(c.path("moved")).unwrap(), want);
    assert_eq!(get_xattr(&c.path("moved"), "user.colour").as_deref(), Some("blue"));
    drop((a, b, c));
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

/// What another mount reads of `path`: its size must be the committed
/// one, and never show bytes that are not committed as zeros.
fn committed_view(path: &Path, want: &[u8], what: &str) {
    committed_view_of(path, &[want], what);
}

/// Like [`committed_view`] where the writer's data may or may not have been
/// committed yet (`states`: each content the file may have been committed
/// with): the other mount reads one of them whole, size and bytes alike.
/// One read, not a `stat` then a read: a commit may land between the two.
/// The size is taken after the read: a later commit can only move it to a
/// later state, which is in `states` too.
fn committed_view_of(path: &Path, states: &[&[u8]], what: &str) {
    let got = fs::read(path).unwrap();
    let sizes: Vec<usize> = states.iter().map(|s| s.len()).collect();
    assert!(
        states.contains(&got.as_slice()),
        "{what}: the other mount reads {} bytes ({} zeros), none of the committed states (sizes {sizes:?})",
        got.len(),
        got.iter().filter(|b| **b == 0).count()
    );
    let size = fs::metadata(path).unwrap().len();
    assert!(
        sizes.contains(&(size as usize)),
        "{what}: size on the other mount {size}, not a committed one ({sizes:?})"
    );
}

#[test]
fn metadata_changes_of_a_file_being_written_never_show_uncommitted_bytes_elsewhere() {
    let v = Volume::new("cluster-uncommitted");
    let (a, b) = (v.mount("a"), v.mount("b"));
    let data = noise(4096, 5);
    // Written, not closed: a chmod, a rename and an xattr land at once on
    // the other mount with the committed size (0), never 4 KiB of zeros.
    // (A file's data may be committed before its close, e.g. by a late
    // release from the kernel; then the other mount reads all of it.)
    let mut f = File::create(a.path("f")).unwrap();
    f.write_all(&data).unwrap();
    assert_eq!(fs::metadata(a.path("f")).unwrap().len(), 4096, "the writer sees its own size");
    fs::set_permissions(a.path("f"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    eventually("the chmod", SECOND, || fs::metadata(b.path("f")).is_ok_and(|m| m.mode() & 0o777 == 0o600));
    committed_view_of(&b.path("f"), &[b"", &data], "after a chmod");
    fs::rename(a.path("f"), a.path("g")).unwrap();
    eventually("the rename", SECOND, || b.path("g").exists());
    committed_view_of(&b.path("g"), &[b"", &data], "after a rename");
    set_xattr(&a.path("g"), "user.colour", "red");
    eventually("the xattr", SECOND, || get_xattr(&b.path("g"), "user.colour").is_some());
    committed_view_of(&b.path("g"), &[b"", &data], "after a setxattr");
    assert_eq!(fs::read(a.path("g")).unwrap(), data, "the writer reads its own data");
    drop(f);
    eventually("the data after close", SECOND, || fs::read(b.path("g")).is_ok_and(|d| d == data));
    // An append not yet closed: the other mount keeps the committed 4 KiB
    // (or, committed early, all of it), never zeros.
    let mut f = OpenOptions::new().append(true).open(a.path("g")).unwrap();
    let appended = noise(100_000, 6);
    f.write_all(&appended).unwrap();
    fs::set_permissions(a.path("g"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    eventually("the second chmod", SECOND, || fs::metadata(b.path("g")).is_ok_and(|m| m.mode() & 0o777 == 0o640));
    let mut all = data.clone();
    all.extend_from_slice(&appended);
    committed_view_of(&b.path("g"), &[&data, &all], "after an append and a chmod");
    // A truncation is itself committed: it shows at once, cutting the
    // committed bytes, while the rest of the append stays with the writer.
    f.set_len(1000).unwrap();
    eventually("the truncation", SECOND, || fs::metadata(b.path("g")).is_ok_and(|m| m.len() == 1000));
    committed_view(&b.path("g"), &data[..1000], "after a truncation");
    f.write_all(b"tail").unwrap();
    drop(f);
    let mut want = data[..1000].to_vec();
    want.extend_from_slice(b"tail");
    eventually("the append after close", SECOND, || fs::read(b.path("g")).is_ok_and(|d| d == want));
    drop((a, b));
    v.fsck();
}

#[test]
fn a_failed_flush_then_a_rename_never_shows_zeros_elsewhere() {
    let mut s3 = proxy::Proxy::start(&services().s3_endpoint);
    let v = Volume::new("cluster-failed-flush");
    let (da, _ca) = v.mount_via("a", &s3.url());
    let b = v.mount("b");
    // Larger than what a commit stages in the database: the flush needs S3.
    let data = noise(8 << 20, 7);
    let mut f = File::create(da.join("f")).unwrap();
    f.write_all(&data).unwrap();
    s3.down();
    let err = f.sync_all().expect_err("fsync succeeded with S3 down");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "fsync with S3 down: {err}");
    fs::rename(da.join("f"), da.join("g")).unwrap();
    eventually("the rename", 5 * SECOND, || b.path("g").exists());
    let seen = fs::read(b.path("g"));
    // S3 back before any check, so a failing check leaves no flush waiting.
    s3.up();
    let seen = seen.unwrap();
    assert!(
        seen.is_empty(),
        "after a failed fsync and a rename the other mount reads {} bytes, not the committed 0",
        seen.len()
    );
    committed_view(&b.path("g"), b"", "after a failed fsync and a rename");
    f.sync_all().expect("fsync with S3 back");
    drop(f);
    eventually("the data once stored", 5 * SECOND, || fs::read(b.path("g")).is_ok_and(|d| d == data));
    drop(b);
    drop(_ca);
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
                // While the mounts converge (within a second) a listed name
                // may already be gone: it shows as such, and the listings
                // differ until it is gone from both.
                let content = fs::read_to_string(e.path()).unwrap_or_else(|e| format!("<{}>", e.kind()));
                (e.file_name().to_string_lossy().into_owned(), content)
            })
            .collect();
        v.sort();
        v
    };
    eventually("the same listing on both mounts", 2 * SECOND, || list(&a) == list(&b));
    assert!(list(&a).iter().all(|(_, c)| !c.starts_with('<')), "a listed name that cannot be read: {:?}", list(&a));
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
    let mut a = v.mount("a");
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

/// What a workload did: the files it wrote and fsynced (name, bytes), how
/// many operations failed, and how long the slowest call took.
struct Done {
    files: Vec<(String, Vec<u8>)>,
    failed: u64,
    slowest: Duration,
    /// The slowest single call, and which.
    slowest_step: (Duration, &'static str),
}

/// Writes (fsynced), renames and reads back files in a loop, every fifth a
/// large one (its chunks go to S3 at once rather than to a staged row).
/// Every failure must be EIO.
fn workload(dir: &Path, stop: &std::sync::atomic::AtomicBool) -> Done {
    let mut done = Done { files: Vec::new(), failed: 0, slowest: Duration::ZERO, slowest_step: (Duration::ZERO, "") };
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let t = Instant::now();
        let data = if i.is_multiple_of(5) { noise(1_500_000, i) } else { format!("file {i}").into_bytes() };
        let (p, q) = (dir.join(format!("w{i}")), dir.join(format!("r{i}")));
        // Each step timed on its own: a failure message names the slow one.
        let step = |what: &'static str, f: &mut dyn FnMut() -> std::io::Result<()>| {
            let t = Instant::now();
            let r = f();
            (t.elapsed(), what, r)
        };
        let mut f = None;
        let mut back = Vec::new();
        let steps = [
            step("create", &mut || File::create(&p).map(|x| f = Some(x))),
            step("write", &mut || f.as_mut().map_or(Ok(()), |f| f.write_all(&data))),
            step("fsync", &mut || f.as_mut().map_or(Ok(()), |f| f.sync_all())),
            step("rename", &mut || fs::rename(&p, &q)),
            step("read", &mut || fs::read(&q).map(|b| back = b)),
        ];
        drop(f);
        let worst = steps.iter().max_by_key(|s| s.0).map(|s| (s.0, s.1)).unwrap();
        if worst.0 > done.slowest_step.0 {
            done.slowest_step = worst;
        }
        let r = steps.into_iter().map(|s| s.2).find(Result::is_err).unwrap_or(Ok(())).map(|_| back);
        match r {
            Ok(back) => {
                assert_eq!(back, data, "r{i} reads back what was written");
                done.files.push((format!("r{i}"), data));
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "a failure other than EIO: {e}");
                done.failed += 1;
            }
        }
        done.slowest = done.slowest.max(t.elapsed());
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    done
}

#[test]
fn postgres_then_s3_stopped_for_ten_seconds_each_mid_workload() {
    // A server of the test's own, stopped and started without disturbing
    // other tests; S3 reached through a proxy the test takes down.
    let pg = PrivatePg::start();
    let mut s3 = proxy::Proxy::start(&services().s3_endpoint);
    let v = Volume::format("cluster-outage", None, pg.url_string());
    let ((da, mut ca), (db, mut cb)) = (v.mount_via("a", &s3.url()), v.mount_via("b", &s3.url()));
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
    s3.down();
    std::thread::sleep(Duration::from_secs(10));
    s3.up();
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let done = t.join().unwrap();
    eprintln!(
        "outage: {} operations succeeded, {} failed with EIO, slowest round {:?}, slowest call {:?} ({})",
        done.files.len(),
        done.failed,
        done.slowest,
        done.slowest_step.0,
        done.slowest_step.1
    );
    assert!(done.failed > 0, "nothing failed while the services were down for 10 s each");
    // A mutation is tried a few times (each attempt first learns whether the
    // last one landed), each within the retry window: well under the outage.
    assert!(
        done.slowest_step.0 < Duration::from_secs(9),
        "a call ({}) took {:?}: retries are not bounded",
        done.slowest_step.1,
        done.slowest_step.0
    );
    // Without a remount, both mounts work again and agree; nothing that
    // was fsynced is lost, on either mount.
    let out = sh(&da, "for i in $(seq 5); do echo again $i > work/again$i; done; cat work/again5");
    assert_eq!(out, "again 5\n");
    eventually("the other mount sees the new files", 2 * SECOND, || db.join("work/again5").exists());
    assert_eq!(fs::read_to_string(db.join("work/again3")).unwrap(), "again 3\n");
    for (name, data) in &done.files {
        assert_eq!(&fs::read(db.join("work").join(name)).unwrap(), data, "{name} on the other mount");
    }
    let log = fs::read_to_string(v.tmp.path().join("a.log")).unwrap();
    assert!(log.contains("PostgreSQL at 127.0.0.1:"), "the log names the database:\n{log}");
    // Turns commit asynchronously: a mount that finds the server restarted
    // loads the volume again rather than trust what it applied before.
    assert!(
        log.contains("restarted; changes committed just before may be lost"),
        "no reload after the restart:\n{log}"
    );
    assert!(log.contains("S3 at "), "the log names the object store:\n{log}");
    for d in [&mut ca, &mut cb] {
        let mut c = d.0.take().unwrap();
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        assert!(c.wait().unwrap().success());
    }
    v.fsck();
}

/// A crash of the database server (no final flush of its log) may lose
/// closes that were not fsynced, never an fsynced file: the mounts notice
/// the restart, load the volume again, carry on and agree.
#[test]
fn a_database_crash_keeps_every_fsynced_file_and_the_mounts_agree() {
    let pg = PrivatePg::start();
    let v = Volume::format("cluster-crash", None, pg.url_string());
    let (a, b) = (v.mount("a"), v.mount("b"));
    fs::create_dir(a.path("d")).unwrap();
    for i in 0..20 {
        let mut f = File::create(a.path(&format!("d/synced{i}"))).unwrap();
        f.write_all(format!("synced {i}").as_bytes()).unwrap();
        f.sync_all().unwrap();
        fs::write(a.path(&format!("d/closed{i}")), format!("closed {i}")).unwrap();
    }
    pg.crash();
    pg.resume();
    eventually("writes work again", 40 * SECOND, || fs::write(a.path("d/after"), "after").is_ok());
    eventually("the other mount sees the new file", 5 * SECOND, || b.path("d/after").exists());
    for i in 0..20 {
        let name = format!("d/synced{i}");
        assert_eq!(fs::read_to_string(b.path(&name)).unwrap(), format!("synced {i}"), "{name}");
    }
    let names = |m: &Mount| {
        let mut n: Vec<String> =
            fs::read_dir(m.path("d")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        n.sort();
        n
    };
    eventually("the mounts agree on the names", 5 * SECOND, || names(&a) == names(&b));
    // A close lost with the server's last unflushed commits leaves the file
    // as its create made it (empty), never with part of its bytes.
    for n in names(&b).iter().filter_map(|n| n.strip_prefix("closed")) {
        let got = fs::read_to_string(b.path(&format!("d/closed{n}"))).unwrap();
        assert!(got.is_empty() || got == format!("closed {n}"), "d/closed{n} reads {got:?}");
    }
    drop((a, b));
    v.fsck();
}

/// A mount daemon started by hand; killed and unmounted if the test fails.
struct Daemon(Option<std::process::Child>, PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.1).status();
        }
    }
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
    // Keys the object store refuses: said at format, the secret never printed.
    let out = Command::new(common::bin())
        .args(["format", "--meta", &other.url_string(), "--store", &format!("s3://{BUCKET}/refused")])
        .envs(services().s3_env())
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("refused the credentials"), "{e}");
    assert!(!e.contains("not-the-secret"), "{e}");
    let e = err(&["format", "--meta", &other.url_string(), "--store", "ftp://x/y"]);
    assert!(e.contains("s3://BUCKET/PREFIX") && e.contains("file:///DIR"), "{e}");
}

#[path = "cluster/once.rs"]
mod once;
