//! Real programs on the mount: git, SQLite, tar; data survives remounts.

mod common;

use common::{scratch, sh, Mount};
use std::path::Path;

fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn git_repository_lifecycle() {
    assert!(have("git"), "git must be installed");
    let tmp = scratch("git");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&tmp.path().join("data")), &[]);
    let repo = m.path("repo");
    std::fs::create_dir(&repo).unwrap();
    sh(
        &repo,
        "git init -q -b main . && git config user.email t@example.com && git config user.name Tester
         for i in 1 2 3; do seq 1 $((i * 1000)) > file$i.txt; mkdir -p dir$i; echo $i > dir$i/n; git add -A; git commit -qm \"commit $i\"; done
         git mv file1.txt renamed.txt && git commit -qm rename
         git gc -q",
    );
    let log = sh(&repo, "git log --oneline | wc -l");
    assert_eq!(log.trim(), "4");
    m.remount();
    let repo = m.path("repo");
    sh(&repo, "git fsck --full --strict 2>&1 && git status --porcelain | (! grep .)");
    assert_eq!(sh(&repo, "git log --format=%s -1").trim(), "rename");
    assert_eq!(sh(&repo, "git show HEAD~1:file3.txt | wc -l").trim(), "3000");
}

#[test]
fn sqlite_database_with_locks_and_mmap() {
    assert!(have("sqlite3"), "sqlite3 must be installed");
    let tmp = scratch("sqlite");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&tmp.path().join("data")), &[]);
    let dir = m.path("db");
    std::fs::create_dir(&dir).unwrap();
    sh(
        &dir,
        "sqlite3 t.db 'PRAGMA journal_mode=WAL; PRAGMA mmap_size=268435456;
           CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT);
           WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 20000)
           INSERT INTO kv SELECT x, printf(\"value-%d\", x) FROM c;
           CREATE INDEX kv_v ON kv(v);' >/dev/null
         sqlite3 t.db 'BEGIN EXCLUSIVE; UPDATE kv SET v = v || \"!\" WHERE k % 2 = 0; COMMIT;'
         sqlite3 t.db 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null",
    );
    // Two processes contend for the write lock; busy_timeout makes the second wait.
    sh(
        &dir,
        "(sqlite3 t.db 'PRAGMA busy_timeout=5000; BEGIN IMMEDIATE; UPDATE kv SET v=\"a\" WHERE k=1; SELECT 1 FROM kv LIMIT 1; COMMIT;' >/dev/null &)
         sqlite3 t.db 'PRAGMA busy_timeout=5000; BEGIN IMMEDIATE; UPDATE kv SET v=\"b\" WHERE k=2; COMMIT;'
         wait",
    );
    m.remount();
    let dir = m.path("db");
    let q = sh(
        &dir,
        "sqlite3 t.db 'PRAGMA integrity_check; SELECT count(*), sum(length(v)) FROM kv; SELECT v FROM kv WHERE k=4;'",
    );
    let lines: Vec<&str> = q.lines().collect();
    assert_eq!(lines[0], "ok", "{q}");
    assert!(lines[1].starts_with("20000|"), "{q}");
    assert_eq!(lines[2], "value-4!", "{q}");
}

fn source_tarball(tmp: &Path) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tar = tmp.join("src.tar");
    sh(&root, &format!("tar --exclude=./target --exclude=./.git -cf {} .", tar.display()));
    tar
}

#[test]
fn tar_extraction_is_byte_identical_across_remounts() {
    let tmp = scratch("tar");
    let tar = source_tarball(tmp.path());
    let reference = tmp.path().join("ref");
    std::fs::create_dir(&reference).unwrap();
    sh(&reference, &format!("tar -xf {}", tar.display()));
    let sums = |dir: &Path| sh(dir, "find . -type f -print0 | sort -z | xargs -0 sha256sum");
    let want = sums(&reference);
    assert!(want.lines().count() > 20);
    for data in [Some(tmp.path().join("data")), None] {
        let mut m = Mount::start(&tmp.path().join("mnt"), data.as_deref(), &[]);
        let dst = m.path("tree");
        std::fs::create_dir(&dst).unwrap();
        sh(&dst, &format!("tar -xf {}", tar.display()));
        assert_eq!(sums(&dst), want);
        if data.is_some() {
            m.remount();
            assert_eq!(sums(&m.path("tree")), want, "after remount");
        }
        m.stop();
    }
}

#[test]
fn data_and_metadata_survive_remount() {
    let tmp = scratch("persist");
    let data = tmp.path().join("data");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&data), &[]);
    let big = common::noise(3 << 20, 7);
    std::fs::write(m.path("big.bin"), &big).unwrap();
    sh(
        &m.dir,
        "mkdir -p a/b && echo hi > a/b/c.txt && ln -s b/c.txt a/link && ln a/b/c.txt a/hard
         chmod 640 a/b/c.txt && touch -d '2001-02-03 04:05:06' a/b/c.txt && mkfifo a/fifo
         truncate -s 5G sparse && printf end >> sparse && setfattr -n user.color -v blue a/b/c.txt",
    );
    m.remount();
    assert_eq!(std::fs::read(m.path("big.bin")).unwrap(), big);
    let out = sh(
        &m.dir,
        "stat -c '%a %h %s %Y' a/b/c.txt; readlink a/link; stat -c %F a/fifo; stat -c %s sparse; tail -c 3 sparse; echo; getfattr --only-values -n user.color a/b/c.txt",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "640 2 3 981173106");
    assert_eq!(lines[1], "b/c.txt");
    assert_eq!(lines[2], "fifo");
    assert_eq!(lines[3], (5u64 * 1024 * 1024 * 1024 + 3).to_string());
    assert_eq!(lines[4], "end");
    assert_eq!(lines[5], "blue");
    m.stop();
    let fsck = common::magicfs(&["fsck", "--data", data.to_str().unwrap()]);
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
}

#[test]
fn the_mount_helper_mounts_like_mount_8_would() {
    let tmp = scratch("helper");
    let (data, mnt) = (tmp.path().join("data"), tmp.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mount.magicfs");
    let st = std::process::Command::new(helper)
        .arg(&data)
        .arg(&mnt)
        .args(["-o", "rw,defaults,codec=gzip"])
        .env("MAGICFS_BIN", common::bin())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(common::is_mounted(&mnt));
    std::fs::write(mnt.join("f"), b"via helper").unwrap();
    // mount(8) drops "dev" and "suid" (its defaults) before calling the
    // helper: as for a disk mounted by root, device nodes and set-user-ID
    // bits work unless the options say nodev or nosuid.
    let flags = mount_flags(&mnt);
    assert_eq!(flags & (libc::ST_NODEV | libc::ST_NOSUID), 0, "helper mount is nodev or nosuid");
    sh(&mnt, "mknod null c 1 3 && chmod 666 null && echo fred > null");
    let st = std::process::Command::new("fusermount3").arg("-u").arg(&mnt).status().unwrap();
    assert!(st.success());
    // The daemon finishes its shutdown, then the store is clean and has the file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while common::magicfs(&["fsck", "--data", data.to_str().unwrap()]).status.code() != Some(0) {
        assert!(std::time::Instant::now() < deadline, "store never became available");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let m = Mount::start(&mnt, Some(&data), &[]);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"via helper");
    // `magicfs mount` by hand is nodev,nosuid unless told otherwise: the
    // device node stays a file name only.
    assert_eq!(mount_flags(&mnt) & (libc::ST_NODEV | libc::ST_NOSUID), libc::ST_NODEV | libc::ST_NOSUID);
    let e = std::fs::OpenOptions::new().write(true).open(m.path("null")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
}

/// Every kernel mount flag given with `-o` reaches the mount.
#[test]
fn kernel_mount_flags_reach_the_mount() {
    let tmp = scratch("flags");
    let m = Mount::start(&tmp.path().join("mnt"), None, &["-o", "ro,noexec,nodiratime,noatime,dev,suid"]);
    let flags = mount_flags(&m.dir);
    for (flag, name) in [
        (libc::ST_RDONLY, "ro"),
        (libc::ST_NOEXEC, "noexec"),
        (libc::ST_NODIRATIME, "nodiratime"),
        (libc::ST_NOATIME, "noatime"),
    ] {
        assert_ne!(flags & flag, 0, "{name} missing");
    }
    assert_eq!(flags & (libc::ST_NODEV | libc::ST_NOSUID), 0, "dev,suid not applied");
    let e = std::fs::write(m.path("f"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

/// Reads move access times as the mount says: once after each change by
/// default (relatime), never with noatime; listings of directories too,
/// unless nodiratime.
#[test]
fn reads_move_access_times_by_the_mount_rule() {
    use std::os::unix::fs::MetadataExt;
    let tmp = scratch("atime");
    let atime = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.atime(), m.atime_nsec())
    };
    for (opts, moves, dir_moves) in [("relatime", true, true), ("noatime", false, false), ("nodiratime", true, false)] {
        let m = Mount::start(&tmp.path().join(opts), None, &["-o", opts]);
        std::fs::create_dir(m.path("d")).unwrap();
        std::fs::write(m.path("d/f"), b"data").unwrap();
        let (f0, d0) = (atime(&m.path("d/f")), atime(&m.path("d")));
        assert_eq!(std::fs::read(m.path("d/f")).unwrap(), b"data");
        std::fs::read_dir(m.path("d")).unwrap().for_each(drop);
        let (f1, d1) = (atime(&m.path("d/f")), atime(&m.path("d")));
        assert_eq!(f1 > f0, moves, "{opts}: file atime {f0:?} -> {f1:?}");
        assert_eq!(d1 > d0, dir_moves, "{opts}: directory atime {d0:?} -> {d1:?}");
    }
}

/// A write by another user clears setuid and setgid (group-executable),
/// and the next stat shows it at once, not after the attribute timeout.
#[test]
fn a_write_by_another_user_clears_set_id_bits_at_once() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let tmp = scratch("setid");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let m = Mount::start(&tmp.path().join("mnt"), None, &["-o", "allow_other"]);
    let f = m.path("f");
    std::fs::write(&f, b"x").unwrap();
    std::os::unix::fs::chown(&f, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o6754)).unwrap();
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o6754);
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg("echo more >> \"$0\"")
        .arg(&f)
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o0754);
}

/// The `ST_*` flags `statvfs` reports for the mount at `dir`.
fn mount_flags(dir: &Path) -> libc::c_ulong {
    common::statvfs(dir).f_flag
}

/// Readers that race a writer rewriting the same file (each close commits
/// new chunks and frees the old ones) always get a whole, readable file:
/// never an I/O error, in memory (chunks freed at once) and on redb.
#[test]
fn reads_racing_rewrites_never_fail() {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::OpenOptionsExt;
    const LEN: usize = 256 << 10;
    let tmp = scratch("race");
    for data in [None, Some(tmp.path().join("data"))] {
        let mut m = Mount::start(&tmp.path().join("mnt"), data.as_deref(), &[]);
        let f = m.path("shared.bin");
        let version = |i: usize| -> Vec<u8> { (0..LEN).map(|j| ((j * 7 + i * 13) % 251) as u8).collect() };
        std::fs::write(&f, version(0)).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (f, stop) = (f.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut reads = 0u32;
                    let mut buf = Vec::with_capacity(LEN);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        // O_DIRECT: every read goes to the daemon, not the page cache.
                        let mut h =
                            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(&f).unwrap();
                        buf.clear();
                        h.read_to_end(&mut buf).unwrap_or_else(|e| panic!("read {reads} failed: {e}"));
                        assert_eq!(buf.len(), LEN, "read {reads} returned a short file");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for i in 1..=150 {
            let mut h = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
            h.seek(SeekFrom::Start(0)).unwrap();
            h.write_all(&version(i)).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reads: u32 = readers.into_iter().map(|r| r.join().expect("a reader failed")).sum();
        assert!(reads > 0);
        assert_eq!(std::fs::read(&f).unwrap(), version(150));
        let log = m.log();
        assert!(!log.contains("ERROR"), "the daemon logged errors:\n{log}");
        m.stop();
    }
}

/// A fresh mount lists a directory with attributes (readdirplus): every
/// name, type, size, mode and link target seen by `ls -l`-style listing
/// matches what was written, including entries removed or added between
/// listings and the virtual `.magic` directory.
#[test]
fn listings_carry_the_right_attributes() {
    use std::os::unix::fs::{DirEntryExt, MetadataExt, PermissionsExt};
    let tmp = scratch("listing");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&tmp.path().join("data")), &[]);
    let d = m.path("tree");
    std::fs::create_dir(&d).unwrap();
    let mut want = std::collections::BTreeMap::new();
    for i in 0..300u64 {
        let p = d.join(format!("f{i:03}"));
        std::fs::write(&p, vec![b'x'; (i * 37 % 5000) as usize]).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600 + (i % 64) as u32)).unwrap();
        want.insert(format!("f{i:03}"), ('f', i * 37 % 5000, 0o600 + (i % 64) as u32));
    }
    std::fs::create_dir(d.join("sub")).unwrap();
    want.insert("sub".into(), ('d', 0, 0o755));
    std::os::unix::fs::symlink("f001", d.join("link")).unwrap();
    want.insert("link".into(), ('l', 4, 0o777));
    m.remount(); // an empty kernel cache: the first listing is a readdirplus
    let listed = |dir: &std::path::Path| -> std::collections::BTreeMap<String, (char, u64, u32)> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let md = std::fs::symlink_metadata(e.path()).unwrap();
                let kind = if md.is_dir() {
                    'd'
                } else if md.file_type().is_symlink() {
                    'l'
                } else {
                    'f'
                };
                assert_eq!(e.ino(), md.ino(), "{:?}: the listing's inode differs from stat's", e.path());
                let size = if kind == 'd' { 0 } else { md.len() };
                (e.file_name().into_string().unwrap(), (kind, size, md.mode() & 0o7777))
            })
            .collect()
    };
    assert_eq!(listed(&d), want);
    assert_eq!(std::fs::read_link(d.join("link")).unwrap(), std::path::Path::new("f001"));
    // Changes between listings show in the next one.
    std::fs::remove_file(d.join("f000")).unwrap();
    want.remove("f000");
    std::fs::write(d.join("f001"), b"grown to a new size").unwrap();
    want.insert("f001".into(), ('f', 19, 0o601));
    assert_eq!(listed(&d), want);
    // The root lists the virtual .magic directory with its attributes.
    let root = listed(&m.dir);
    assert_eq!(root.get(".magic").map(|e| e.0), Some('d'));
    m.stop();
}
