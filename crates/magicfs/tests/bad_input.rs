//! Bad input gets clear answers: the right errno through the mount, and CLI
//! messages that say what is wrong, never a panic.

mod common;

use common::{cpath, errno, install_staged, magicfs, scratch, sh, Mount};
use std::process::Command;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A CLI failure must be an orderly exit with a message (101 is a Rust panic).
fn assert_clean_failure(o: &std::process::Output, needle: &str) {
    assert!(!o.status.success(), "expected failure, got success");
    assert_ne!(o.status.code(), Some(101), "panicked: {}", stderr(o));
    assert!(stderr(o).contains(needle), "message lacks {needle:?}: {}", stderr(o));
}

#[test]
fn errnos_through_the_mount() {
    let tmp = scratch("errno");
    let m = Mount::start(&tmp.path().join("mnt"), None, &[]);
    let long = m.path(&"n".repeat(256));
    // SAFETY: plain syscalls with valid C strings.
    unsafe {
        assert_eq!(libc::open(cpath(&long).as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644), -1);
        assert_eq!(errno(), libc::ENAMETOOLONG);
        assert_eq!(libc::mkdir(cpath(&long).as_ptr(), 0o755), -1);
        assert_eq!(errno(), libc::ENAMETOOLONG);
    }
    std::fs::write(m.path(&"n".repeat(255)), b"ok").unwrap();

    sh(&m.dir, "mkdir -p full/sub && touch f");
    // SAFETY: as above.
    unsafe {
        assert_eq!(libc::rmdir(cpath(&m.path("full")).as_ptr()), -1);
        assert_eq!(errno(), libc::ENOTEMPTY);
        assert_eq!(libc::unlink(cpath(&m.path("full")).as_ptr()), -1);
        assert_eq!(errno(), libc::EISDIR);
        assert_eq!(libc::rmdir(cpath(&m.path("f")).as_ptr()), -1);
        assert_eq!(errno(), libc::ENOTDIR);
        assert_eq!(libc::mkdir(cpath(&m.path("f")).as_ptr(), 0o755), -1);
        assert_eq!(errno(), libc::EEXIST);
        assert_eq!(libc::rename(cpath(&m.path("full")).as_ptr(), cpath(&m.path("full/sub/x")).as_ptr()), -1);
        assert_eq!(errno(), libc::EINVAL);
    }

    let name = c"user.big";
    let f = cpath(&m.path("f"));
    for (len, want) in [(65536usize, 0), (65537, libc::E2BIG), (1 << 20, libc::E2BIG)] {
        let v = vec![b'x'; len];
        // SAFETY: valid pointers and lengths.
        let r = unsafe { libc::setxattr(f.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        if want == 0 {
            assert_eq!(r, 0, "a 64 KiB xattr is accepted");
        } else {
            assert_eq!((r, errno()), (-1, want), "{len}-byte xattr");
        }
    }
    // SAFETY: as above.
    unsafe {
        let mut small = [0u8; 4];
        assert_eq!(libc::getxattr(f.as_ptr(), name.as_ptr(), small.as_mut_ptr().cast(), 4), -1);
        assert_eq!(errno(), libc::ERANGE);
        assert_eq!(libc::getxattr(f.as_ptr(), c"user.none".as_ptr(), small.as_mut_ptr().cast(), 4), -1);
        assert_eq!(errno(), libc::ENODATA);
        // POSIX ACLs and SELinux labels are not kept: "not supported" on
        // reads and writes alike, so `ls -l` stops asking after one file.
        for n in [c"system.posix_acl_access", c"security.selinux"] {
            assert_eq!(libc::getxattr(f.as_ptr(), n.as_ptr(), small.as_mut_ptr().cast(), 4), -1);
            assert_eq!(errno(), libc::EOPNOTSUPP, "get {n:?}");
            assert_eq!(libc::setxattr(f.as_ptr(), n.as_ptr(), small.as_ptr().cast(), 4, 0), -1);
            assert_eq!(errno(), libc::EOPNOTSUPP, "set {n:?}");
        }
        // The same on the virtual files of the control directory.
        let status = cpath(&m.path(".magic/status"));
        assert_eq!(libc::getxattr(status.as_ptr(), c"security.selinux".as_ptr(), small.as_mut_ptr().cast(), 4), -1);
        assert_eq!(errno(), libc::EOPNOTSUPP, "get security.selinux of .magic/status");
        assert_eq!(libc::getxattr(status.as_ptr(), c"user.none".as_ptr(), small.as_mut_ptr().cast(), 4), -1);
        assert_eq!(errno(), libc::ENODATA);
    }
    // The control directory is read-only.
    assert!(std::fs::write(m.path(".magic/status"), b"x").is_err());
    assert!(std::fs::create_dir(m.path(".magic")).is_err());
}

#[test]
fn store_problems_are_explained() {
    let tmp = scratch("badstore");
    let missing = tmp.path().join("missing");
    let o = magicfs(&["fsck", "--data", missing.to_str().unwrap()]);
    assert_clean_failure(&o, "no MagicFS store");

    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let o = magicfs(&["mount", mnt.to_str().unwrap(), "--data", foreign.to_str().unwrap()]);
    assert_clean_failure(&o, "is not a MagicFS store");

    let o = magicfs(&["mount", tmp.path().join("nowhere").to_str().unwrap(), "--memory"]);
    assert_clean_failure(&o, "does not exist");

    // Corrupted database.
    let data = tmp.path().join("data");
    let mut m = Mount::start(&mnt, Some(&data), &[]);
    std::fs::write(m.path("x"), b"hello").unwrap();
    m.stop();
    let db = data.join("magicfs.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().take(4096) {
        *b ^= 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    let o = magicfs(&["mount", mnt.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_clean_failure(&o, "damaged");
    let o = magicfs(&["fsck", "--data", data.to_str().unwrap()]);
    assert_clean_failure(&o, "damaged");

    // Unreadable data directory (checked as an unprivileged user, with an
    // installed copy of this build: the build directory may be private too).
    let private = tmp.path().join("private");
    std::fs::create_dir(&private).unwrap();
    sh(tmp.path(), &format!("chmod 755 {} && chmod 700 {}", tmp.path().display(), private.display()));
    let installed = install_staged(&tmp.path().join("stage"));
    let o = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(installed)
        .args(["fsck", "--data", private.to_str().unwrap()])
        .output()
        .unwrap();
    assert_clean_failure(&o, "Permission denied");
}

#[test]
fn the_same_store_cannot_be_mounted_twice() {
    let tmp = scratch("twice");
    let data = tmp.path().join("data");
    let _m = Mount::start(&tmp.path().join("a"), Some(&data), &[]);
    let b = tmp.path().join("b");
    std::fs::create_dir(&b).unwrap();
    let o = magicfs(&["mount", b.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_clean_failure(&o, "already in use");
    let o = magicfs(&["fsck", "--data", data.to_str().unwrap()]);
    assert_clean_failure(&o, "already in use");
}
