//! The POSIX suite pjdfstest against real MagicFS mounts (redb store,
//! memory, and a cluster volume on the test run's PostgreSQL), compared with
//! tmpfs on the same machine: every test that passes on tmpfs must pass on
//! MagicFS.

mod common;

use common::{magicfs, scratch, sh, Mount};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Tests that may pass on tmpfs and fail on MagicFS, with the reason
/// (documented in README.md, "POSIX conformance"). Empty: there are none.
const EXCEPTIONS: &[&str] = &[];

fn pjdfstest() -> PathBuf {
    if let Some(p) = std::env::var_os("PJDFSTEST") {
        return p.into();
    }
    let cached = dirs_home().join(".cache/magicfs/tools/bin/pjdfstest");
    if cached.exists() {
        return cached;
    }
    PathBuf::from("pjdfstest")
}

fn dirs_home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"))
}

const CONFIG: &str = r#"
[features]
posix_fallocate = {}
utimensat = {}
utime_now = {}
rename_ctime = {}
[settings]
naptime = 0.01
allow_remount = false
[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
"#;

/// Runs the suite in `dir`; returns the names of passing tests.
fn run_suite(dir: &Path, cfg: &Path) -> (BTreeSet<String>, String) {
    let out = Command::new(pjdfstest())
        .arg("-c")
        .arg(cfg)
        .arg("-p")
        .arg(dir)
        .current_dir(dir)
        .output()
        .expect("pjdfstest must be installed (scripts/deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let passed = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?;
            (name.contains("::") && l.trim_end().ends_with(" ok")).then(|| name.to_string())
        })
        .collect();
    (passed, text)
}

/// Which store a suite run mounts.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Redb,
    Memory,
    /// A cluster volume: metadata in PostgreSQL, chunks in a directory.
    Cluster,
}

fn check(kind: Kind) {
    let tmp = scratch("posix");
    let cfg = tmp.path().join("pjdfstest.toml");
    std::fs::write(&cfg, CONFIG).unwrap();

    let tmpfs = tmp.path().join("tmpfs");
    std::fs::create_dir(&tmpfs).unwrap();
    let st = Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&tmpfs).status().unwrap();
    assert!(st.success(), "mounting tmpfs needs root");
    let (base, _) = run_suite(&tmpfs, &cfg);
    let st = Command::new("umount").arg(&tmpfs).status().unwrap();
    assert!(st.success(), "unmounting tmpfs");
    assert!(base.len() > 300, "pjdfstest found only {} passing tests on tmpfs", base.len());

    let data = tmp.path().join("data");
    // The redb mount is served over /dev/fuse, the memory mount over FUSE
    // over io_uring where the kernel offers it: the suite covers both.
    let args: &[&str] = if kind == Kind::Redb { &["--allow-other", "--no-io-uring"] } else { &["--allow-other"] };
    let db;
    let m = match kind {
        Kind::Redb => Mount::start(&tmp.path().join("mnt"), Some(data.as_path()), args),
        Kind::Memory => Mount::start(&tmp.path().join("mnt"), None, args),
        Kind::Cluster => {
            db = magicfs_pg::testing::TestDb::create().expect("a test database");
            let store = format!("file://{}", data.display());
            let out = magicfs(&["format", "--meta", &db.url_string(), "--store", &store]);
            assert!(out.status.success(), "format: {}", String::from_utf8_lossy(&out.stderr));
            Mount::cluster(&tmp.path().join("mnt"), &db.url_string(), args)
        }
    };
    let (ours, log) = run_suite(&m.dir, &cfg);
    let missing: Vec<&String> = base.difference(&ours).filter(|t| !EXCEPTIONS.contains(&t.as_str())).collect();
    assert!(
        missing.is_empty(),
        "{} tests pass on tmpfs but not on MagicFS ({:?}):\n{missing:#?}\n--- log ---\n{log}",
        missing.len(),
        kind
    );
    eprintln!("pjdfstest: {} passed on MagicFS, {} on tmpfs", ours.len(), base.len());
}

#[test]
fn pjdfstest_redb_store_matches_tmpfs() {
    check(Kind::Redb);
}

#[test]
fn pjdfstest_memory_store_matches_tmpfs() {
    check(Kind::Memory);
}

/// On a cluster volume (PostgreSQL metadata), POSIX behaviour on one mount
/// is the embedded store's.
#[test]
fn pjdfstest_cluster_volume_matches_tmpfs() {
    check(Kind::Cluster);
}

/// A write drops the file's capabilities (`security.capability`) whoever
/// writes, and setuid/setgid when an unprivileged user writes; root keeps
/// setuid. The daemon does this itself (FUSE_HANDLE_KILLPRIV_V2).
#[test]
fn writes_drop_file_capabilities_and_setuid() {
    let tmp = scratch("killpriv");
    {
        use std::os::unix::fs::PermissionsExt;
        // The unprivileged writer must be able to reach the mount.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let m = Mount::start(&tmp.path().join("mnt"), Some(&tmp.path().join("data")), &["--allow-other"]);
    let prog = m.path("prog");
    let sh = |cmd: &str| {
        let o = Command::new("sh").arg("-c").arg(cmd).arg("sh").arg(&prog).output().unwrap();
        assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    };
    std::fs::write(&prog, b"#!/bin/sh\n").unwrap();
    sh("chmod 6777 \"$1\" && setcap cap_net_raw+ep \"$1\"");
    assert!(sh("getcap \"$1\"").contains("cap_net_raw"), "setcap did not stick");
    // Root writes: the capability goes, setuid and setgid stay.
    sh("echo '# more' >> \"$1\"");
    assert_eq!(sh("getcap \"$1\""), "", "a write kept the file capability");
    assert_eq!(mode(&prog), 0o6777);
    // An unprivileged writer: setuid and setgid (group-executable) go too.
    sh("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'echo x >> \"$1\"' sh \"$1\"");
    assert_eq!(mode(&prog), 0o0777);
    assert!(std::fs::read_to_string(&prog).unwrap().ends_with("# more\nx\n"));
}

/// Requests travel over FUSE over io_uring where the kernel offers it
/// (`scripts/test.sh` turns the fuse module's `enable_uring` on where the
/// module has it) and over /dev/fuse with `--no-io-uring`; `.magic/status`
/// says which, and both serve the same files.
#[test]
fn the_transport_follows_the_kernel_and_the_flag() {
    let offered =
        std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring").map(|s| s.trim() == "Y").unwrap_or(false);
    let ring = if offered { "io_uring" } else { "/dev/fuse" };
    for (args, want) in [(&[][..], ring), (&["--no-io-uring"][..], "/dev/fuse")] {
        let tmp = scratch("transport");
        let m = Mount::start(&tmp.path().join("mnt"), None, args);
        assert_eq!(m.status()["fuse"]["transport"], want, "{args:?}");
        let stats = String::from_utf8(magicfs(&["stats", m.dir.to_str().unwrap()]).stdout).unwrap();
        assert!(stats.contains(&format!("requests over  {want}")), "{stats}");
        let out = sh(
            &m.dir,
            "mkdir d && for i in $(seq 200); do echo line $i > d/f$i; done; \
             cat d/f7 d/f200; head -c 3000000 /dev/urandom > big; cp big d/big2; cmp big d/big2 && echo same; \
             mv d/f1 d/g1; rm d/f2; ls d | wc -l",
        );
        assert_eq!(out, "line 7\nline 200\nsame\n200\n", "{args:?}");
    }
}

/// Ioctls on a file answer ENOTTY, as on tmpfs, and leave nothing in the
/// log: Python's `open()` asks TCGETS on every file it opens.
#[test]
fn ioctls_answer_enotty_and_stay_out_of_the_log() {
    use std::os::fd::AsRawFd;
    let tmp = scratch("ioctl");
    let log = tmp.path().join("daemon.log");
    let m = Mount::start(&tmp.path().join("mnt"), None, &["--log", log.to_str().unwrap()]);
    let f = m.path("plain");
    std::fs::write(&f, b"not a terminal\n").unwrap();
    for _ in 0..200 {
        let file = std::fs::File::open(&f).unwrap();
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TCGETS, &mut t) };
        assert_eq!((rc, common::errno()), (-1, libc::ENOTTY));
    }
    let out = sh(&m.dir, "python3 -c \"import sys; f = open('plain'); print(f.isatty(), f.read().strip())\"");
    assert_eq!(out, "False not a terminal\n");
    // The daemon logs warnings here (a missing ioctl was one per call).
    let log = std::fs::read_to_string(&log).expect("the daemon's log file");
    assert!(!log.contains("ioctl"), "ioctls were logged:\n{}", &log[..log.len().min(600)]);
}
