//! The cross-mount suite: each function mounts a volume two or three
//! times in one process and checks what the mounts see of each other.
#![allow(dead_code)]

use magicfs_core::{fsck, ClusterConfig, Ctx, Fs, Inval, RenameFlags};
use magicfs_store::Store;
use magicfs_types::noise::noise;
use magicfs_types::{FsError, Ino, ROOT_INO};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CTX: Ctx = Ctx { uid: 0, gid: 0 };

/// A shared volume to mount several times.
pub trait Volume: Send + Sync {
    /// Another store over the volume (for fsck).
    fn store(&self) -> Store;
    /// A mount with short timing, without its background work (no
    /// heartbeats, no catching up between its own operations).
    fn idle_mount(&self) -> Arc<Fs>;
    /// A mount with short timing (tests wait less), its background work started.
    fn mount(&self) -> Arc<Fs> {
        let fs = self.idle_mount();
        fs.start_background();
        fs
    }
}

/// Timing short enough for tests.
pub fn fast() -> ClusterConfig {
    ClusterConfig {
        heartbeat: Duration::from_millis(100),
        session_timeout: Duration::from_secs(2),
        poll: Duration::from_millis(50),
    }
}

/// Defines one `#[test]` per suite function over the volume `$make` builds.
#[macro_export]
macro_rules! cluster_tests {
    ($make:expr) => {
        $crate::cluster_suite::cluster_tests!(@each $make;
            names_data_xattrs_and_links_cross_over, alternating_appends_keep_every_byte,
            renames_and_unlinks_race_without_damage, unlinked_file_stays_readable_where_open,
            dedup_and_free_race_keep_counts_exact, other_mounts_hear_what_to_forget,
            page_cache_is_kept_only_for_unchanged_files, a_mount_behind_the_trimmed_log_loads_again);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let v = $make;
                $crate::cluster_suite::$name(&v);
            }
        )*
    };
}
pub use cluster_tests;

fn write_file(fs: &Fs, parent: Ino, name: &str, data: &[u8]) -> Ino {
    let (a, fh) = fs.create(parent, name.as_bytes(), 0o644, libc::O_RDWR, CTX).expect("create");
    fs.write(a.ino, 0, data).expect("write");
    fs.release(fh).expect("close");
    a.ino
}

/// Open, read everything, close (close-to-open: the open catches up).
fn read_file(fs: &Fs, path: &str) -> Result<Vec<u8>, FsError> {
    fs.catch_up()?;
    let a = fs.resolve(path)?;
    let fh = fs.open(a.ino, libc::O_RDONLY)?;
    let size = fs.getattr(a.ino)?.size;
    let r = fs.read(a.ino, 0, size);
    fs.release(fh)?;
    r
}

/// Waits up to 1 s (the promise for names and attributes) for `f`.
fn within_a_second(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(1), "{what}: not seen within 1 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_clean(v: &dyn Volume) {
    let r = fsck::check(&v.store(), true).expect("fsck");
    assert!(r.is_clean(), "fsck: {:?}", r.errors);
}

/// Files, directories, data, xattrs, hard links, renames and unlinks made
/// on one mount are seen by another: names within a second without any
/// call, data at the next open.
pub fn names_data_xattrs_and_links_cross_over(v: &dyn Volume) {
    let (a, b) = (v.mount(), v.mount());
    let dir = a.mkdir(ROOT_INO, b"shared", 0o755, CTX).expect("mkdir").ino;
    let data = noise(300_000, 7);
    let f = write_file(&a, dir, "f", &data);
    a.setxattr(f, b"user.colour", b"blue", 0).expect("setxattr");
    a.link(f, ROOT_INO, b"hard").expect("link");
    within_a_second("a new name", || b.resolve("shared/f").is_ok());
    assert_eq!(read_file(&b, "shared/f").expect("read"), data);
    assert_eq!(read_file(&b, "hard").expect("read"), data);
    assert_eq!(b.getxattr(f, b"user.colour").expect("getxattr"), b"blue");
    assert_eq!(b.getattr(f).expect("getattr").nlink, 2);
    // And back: the other mount's changes reach the first.
    b.rename(dir, b"f", ROOT_INO, b"moved", RenameFlags::default()).expect("rename");
    b.removexattr(f, b"user.colour").expect("removexattr");
    b.unlink(ROOT_INO, b"hard").expect("unlink");
    within_a_second("a rename", || a.resolve("moved").is_ok() && a.resolve("shared/f").is_err());
    within_a_second("an unlink", || a.getattr(f).is_ok_and(|x| x.nlink == 1));
    assert_eq!(a.getxattr(f, b"user.colour"), Err(FsError::NoAttr));
    // Overwritten on b, read on a.
    let fh = b.open(f, libc::O_RDWR).expect("open");
    b.write(f, 1000, b"changed elsewhere").expect("write");
    b.release(fh).expect("close");
    let mut want = data.clone();
    want[1000..1017].copy_from_slice(b"changed elsewhere");
    assert_eq!(read_file(&a, "moved").expect("read"), want);
    drop((a, b));
    assert_clean(v);
}

/// Two mounts append to one file in turns, each closing after its append:
/// every byte of every append is there, in order.
pub fn alternating_appends_keep_every_byte(v: &dyn Volume) {
    let (a, b) = (v.mount(), v.mount());
    let ino = write_file(&a, ROOT_INO, "log", b"");
    let mut want = Vec::new();
    for i in 0..40 {
        let fs = if i % 2 == 0 { &a } else { &b };
        let line = format!("line {i} from mount {}\n", i % 2).into_bytes();
        let fh = fs.open(ino, libc::O_WRONLY | libc::O_APPEND).expect("open");
        let size = fs.getattr(ino).expect("getattr").size;
        fs.write(ino, size, &line).expect("write");
        fs.release(fh).expect("close");
        want.extend_from_slice(&line);
    }
    assert_eq!(read_file(&a, "log").expect("read"), want);
    assert_eq!(read_file(&b, "log").expect("read"), want);
    drop((a, b));
    assert_clean(v);
}

/// Mounts race to rename and unlink the same names: each operation is
/// atomic (a name is never lost or doubled), and the tables stay consistent.
pub fn renames_and_unlinks_race_without_damage(v: &dyn Volume) {
    let (a, b) = (v.mount(), v.mount());
    for i in 0..20 {
        write_file(&a, ROOT_INO, &format!("f{i}"), format!("file {i}").as_bytes());
    }
    b.catch_up().expect("catch up");
    let run = |fs: Arc<Fs>, seed: u64| {
        std::thread::spawn(move || {
            let mut wins = 0;
            for round in 0..60u64 {
                let i = (round * 7 + seed) % 20;
                let j = (round * 3 + seed * 5) % 20;
                let (from, to) = (format!("f{i}"), format!("f{j}"));
                let r = match round % 3 {
                    0 => fs.rename(ROOT_INO, from.as_bytes(), ROOT_INO, to.as_bytes(), RenameFlags::default()),
                    1 => fs.rename(
                        ROOT_INO,
                        from.as_bytes(),
                        ROOT_INO,
                        format!("g{seed}{round}").as_bytes(),
                        RenameFlags::default(),
                    ),
                    _ => fs.unlink(ROOT_INO, from.as_bytes()),
                };
                match r {
                    Ok(()) => wins += 1,
                    Err(FsError::NotFound) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
            wins
        })
    };
    let (ta, tb) = (run(a.clone(), 1), run(b.clone(), 2));
    let wins = ta.join().expect("join") + tb.join().expect("join");
    assert!(wins > 0);
    a.catch_up().expect("catch up");
    b.catch_up().expect("catch up");
    let names = |fs: &Fs| {
        let fh = fs.opendir(ROOT_INO).expect("opendir");
        let mut v = Vec::new();
        fs.readdir(fh, 0, |_, e| {
            v.push((e.name.clone(), e.ino));
            false
        })
        .expect("readdir");
        fs.releasedir(fh).expect("releasedir");
        v.sort();
        v
    };
    assert_eq!(names(&a), names(&b), "both mounts list the same entries");
    drop((a, b));
    assert_clean(v);
}

/// A file open on one mount and unlinked on another stays readable where
/// it is open, is not freed while open, and is freed after its last close.
pub fn unlinked_file_stays_readable_where_open(v: &dyn Volume) {
    let (a, b) = (v.mount(), v.mount());
    let data = noise(200_000, 9);
    let ino = write_file(&a, ROOT_INO, "victim", &data);
    b.catch_up().expect("catch up");
    let fh = b.open(ino, libc::O_RDONLY).expect("open");
    a.unlink(ROOT_INO, b"victim").expect("unlink");
    within_a_second("the unlink", || b.lookup(ROOT_INO, b"victim").is_err());
    // Several heartbeats and cleaning rounds pass.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(b.read(ino, 0, 1 << 20).expect("read"), data, "readable where it is open");
    assert!(a.getattr(ino).is_ok(), "not freed while open elsewhere");
    b.release(fh).expect("close");
    let t = Instant::now();
    while a.getattr(ino).is_ok() || b.getattr(ino).is_ok() {
        assert!(t.elapsed() < Duration::from_secs(10), "the orphan was never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop((a, b));
    assert_clean(v);
}

/// One mount writes files whose chunks another mount is freeing at the
/// same time: reference counts stay exact and every file reads back.
pub fn dedup_and_free_race_keep_counts_exact(v: &dyn Volume) {
    let (a, b) = (v.mount(), v.mount());
    let data = noise(400_000, 11);
    let writer = |fs: Arc<Fs>, tag: &'static str, data: Vec<u8>| {
        std::thread::spawn(move || {
            for i in 0..15 {
                let name = format!("{tag}{i}");
                write_file(&fs, ROOT_INO, &name, &data);
                if i % 2 == 0 {
                    fs.unlink(ROOT_INO, name.as_bytes()).expect("unlink");
                }
            }
        })
    };
    let (ta, tb) = (writer(a.clone(), "a", data.clone()), writer(b.clone(), "b", data.clone()));
    ta.join().expect("join");
    tb.join().expect("join");
    for fs in [&a, &b] {
        for tag in ["a", "b"] {
            assert_eq!(read_file(fs, &format!("{tag}1")).expect("read"), data);
        }
    }
    drop((a, b));
    assert_clean(v);
}

/// The invalidation listener hears about names and inodes changed on
/// other mounts (and not about this mount's own changes).
pub fn other_mounts_hear_what_to_forget(v: &dyn Volume) {
    let (a, b) = (v.mount(), v.mount());
    let heard: Arc<Mutex<Vec<Inval>>> = Arc::default();
    let h = heard.clone();
    b.on_remote_change(Arc::new(move |i: &[Inval]| h.lock().extend_from_slice(i)));
    b.mkdir(ROOT_INO, b"mine", 0o755, CTX).expect("mkdir");
    let f = write_file(&a, ROOT_INO, "theirs", b"x");
    within_a_second("the entry", || {
        heard.lock().contains(&Inval::Entry { parent: ROOT_INO, name: b"theirs".to_vec() })
    });
    assert!(heard.lock().contains(&Inval::Inode(f)));
    assert!(!heard.lock().iter().any(|i| matches!(i, Inval::Entry { name, .. } if name == b"mine")));
}

/// `open_cached` keeps the kernel's pages only when no other mount changed
/// the file since this mount last opened it.
pub fn page_cache_is_kept_only_for_unchanged_files(v: &dyn Volume) {
    let (a, b) = (v.mount(), v.mount());
    let f = write_file(&a, ROOT_INO, "f", b"one");
    b.catch_up().expect("catch up");
    let (fh, _) = b.open_cached(f, libc::O_RDONLY).expect("open");
    b.release(fh).expect("close");
    let (fh, keep) = b.open_cached(f, libc::O_RDONLY).expect("open");
    b.release(fh).expect("close");
    assert!(keep, "unchanged since the last open");
    let fh = a.open(f, libc::O_RDWR).expect("open");
    a.write(f, 0, b"two").expect("write");
    a.release(fh).expect("close");
    let (fh, keep) = b.open_cached(f, libc::O_RDONLY).expect("open");
    assert!(!keep, "changed on the other mount");
    assert_eq!(b.read(f, 0, 10).expect("read"), b"two");
    b.release(fh).expect("close");
    let (fh, keep) = a.open_cached(f, libc::O_RDONLY).expect("open");
    a.release(fh).expect("close");
    let (fh, keep2) = a.open_cached(f, libc::O_RDONLY).expect("open");
    a.release(fh).expect("close");
    assert!(keep2, "own changes keep the cache (first open here: {keep})");
}

/// A mount that stopped applying changes (its session expired, the log was
/// trimmed past it) loads the volume again at its next mutation and goes on.
pub fn a_mount_behind_the_trimmed_log_loads_again(v: &dyn Volume) {
    let a = v.mount();
    let c = v.idle_mount();
    let t = Instant::now();
    for i in 0..30 {
        a.mkdir(ROOT_INO, format!("d{i}").as_bytes(), 0o755, CTX).expect("mkdir");
    }
    // a's cleaner expires c's session and trims the log.
    std::thread::sleep(fast().session_timeout.saturating_sub(t.elapsed()) + Duration::from_millis(800));
    c.mkdir(ROOT_INO, b"late", 0o755, CTX).expect("mkdir after falling behind");
    for i in 0..30 {
        assert!(c.lookup(ROOT_INO, format!("d{i}").as_bytes()).is_ok(), "d{i} seen after the reload");
    }
    within_a_second("the late directory", || a.lookup(ROOT_INO, b"late").is_ok());
    drop((a, c));
    assert_clean(v);
}
