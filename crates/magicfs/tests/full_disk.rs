//! A full disk, through the real mount: the data directory lies on a small
//! tmpfs. Writes fail with ENOSPC (at write, close or fsync), statfs shows
//! the real free space, the mount stays up, deleting files and `magicfs gc`
//! give the space back, fsck stays clean, and fallocate past the free
//! space says ENOSPC.

mod common;

use common::{errno, magicfs, noise, scratch, Mount};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

/// Size of the tmpfs under the data directory.
const DISK: u64 = 96 << 20;

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: u64) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs needs root");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// (f_blocks, f_bfree, f_bavail) in bytes.
fn statvfs(p: &Path) -> (u64, u64, u64) {
    let s = common::statvfs(p);
    let u = s.f_frsize;
    (s.f_blocks * u, s.f_bfree * u, s.f_bavail * u)
}

fn enospc(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

fn fallocate(f: &File, len: u64) -> i32 {
    // SAFETY: fallocate on an open descriptor.
    if unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len as libc::off_t) } == 0 {
        0
    } else {
        errno()
    }
}

/// Where a write of incompressible data into a new file first failed.
#[derive(Debug, PartialEq)]
enum Failed {
    Write,
    Fsync,
    Close,
}

/// Writes `len` bytes of noise to `path` in 1 MiB pieces, then fsyncs (if
/// asked) and closes; returns where ENOSPC came, if it did.
fn fill(path: &Path, len: usize, seed: u64, fsync: bool) -> Option<Failed> {
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(path).unwrap();
    for (i, piece) in noise(len, seed).chunks(1 << 20).enumerate() {
        if let Err(e) = f.write_all(piece) {
            assert!(enospc(&e), "write {i} of {}: {e}", path.display());
            return Some(Failed::Write);
        }
    }
    if fsync {
        if let Err(e) = f.sync_all() {
            assert!(enospc(&e), "fsync of {}: {e}", path.display());
            return Some(Failed::Fsync);
        }
    }
    let fd = f.as_raw_fd();
    std::mem::forget(f);
    // SAFETY: closing the descriptor we own (forgotten above).
    if unsafe { libc::close(fd) } != 0 {
        let e = std::io::Error::last_os_error();
        assert!(enospc(&e), "close of {}: {e}", path.display());
        return Some(Failed::Close);
    }
    None
}

#[test]
fn a_full_disk_says_enospc_keeps_the_mount_up_and_gives_the_space_back() {
    let tmp = scratch("full-disk");
    let disk = Tmpfs::mount(&tmp.path().join("disk"), DISK);
    let data = disk.0.join("data");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&data), &["-o", "nosearch"]);

    // statfs tells the disk's own free space, less the part kept for the
    // log and the image (4 MiB on a disk this small).
    let (total, _, avail) = statvfs(&m.dir);
    let (disk_total, _, disk_avail) = statvfs(&disk.0);
    assert_eq!(total, disk_total / 4096 * 4096, "statfs total");
    let reserve = 4 << 20;
    assert!(
        avail <= disk_avail - reserve + (1 << 20) && avail + (2 << 20) >= disk_avail - reserve,
        "statfs says {avail} bytes free; the disk has {disk_avail}"
    );

    // fallocate beyond the free space: ENOSPC (xfstests generic/213); within it: fine.
    let f = File::create(m.path("big")).unwrap();
    assert_eq!(fallocate(&f, DISK * 2), libc::ENOSPC, "fallocate past the free space");
    assert_eq!(fallocate(&f, 1 << 20), 0, "fallocate within the free space");
    drop(f);
    fs::remove_file(m.path("big")).unwrap();

    // A file written while there is room, closed only once the disk is full.
    let mut pending = File::create(m.path("pending")).unwrap();
    pending.write_all(&noise(8 << 20, 6)).unwrap();

    // Fill the disk with whole files, each fsync'd.
    let mut kept = Vec::new();
    let mut failures = Vec::new();
    for i in 0..40 {
        let p = m.path(&format!("fill{i}"));
        match fill(&p, 8 << 20, 100 + i, true) {
            None => kept.push(p),
            Some(at) => {
                failures.push(at);
                break;
            }
        }
    }
    assert!(!failures.is_empty(), "96 MiB of noise never filled a 96 MiB disk");
    assert!(kept.len() >= 6, "only {} files of 8 MiB fit on 96 MiB", kept.len());
    assert_eq!(failures, [Failed::Fsync], "the disk fills at an fsync");
    // Once full: the file written earlier fails at close, new writes at once.
    let fd = pending.as_raw_fd();
    std::mem::forget(pending);
    // SAFETY: closing the descriptor we own (forgotten above).
    assert_eq!(unsafe { libc::close(fd) }, -1, "close of data that no longer fits");
    assert_eq!(errno(), libc::ENOSPC);
    let late = m.path("late");
    assert_eq!(fill(&late, 4 << 20, 7, false), Some(Failed::Write), "writes on a full disk are refused at once");
    eprintln!("full disk: {} files of 8 MiB fit; ENOSPC at fsync, close and write", kept.len());

    // The mount is up: listing, reading a kept file, status, metadata changes.
    let names = fs::read_dir(&m.dir).unwrap().count();
    assert!(names >= kept.len());
    assert_eq!(fs::read(&kept[0]).unwrap(), noise(8 << 20, 100), "a file written before the disk filled");
    assert!(m.status()["inodes"].as_u64().unwrap() > 0);
    fs::create_dir(m.path("still-works")).unwrap();
    fs::rename(m.path("still-works"), m.path("still-works-2")).unwrap();
    let f = File::open(&kept[0]).unwrap();
    assert_eq!(fallocate(&OpenOptions::new().write(true).open(&kept[1]).unwrap(), DISK), libc::ENOSPC);
    drop(f);

    // Deleting files works on the full disk; gc (unmounted) gives the space back.
    fs::remove_dir(m.path("still-works-2")).unwrap();
    for p in fs::read_dir(&m.dir).unwrap().map(|e| e.unwrap().path()) {
        if p != kept[0] && p.is_file() {
            fs::remove_file(&p).unwrap();
        }
    }
    m.stop();
    let (_, _, before_gc) = statvfs(&disk.0);
    let out = magicfs(&["gc", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "gc: {}", String::from_utf8_lossy(&out.stderr));
    let (_, _, after_gc) = statvfs(&disk.0);
    assert!(
        after_gc > before_gc + (40 << 20),
        "gc freed {} bytes ({before_gc} -> {after_gc})",
        after_gc.saturating_sub(before_gc)
    );
    let out = magicfs(&["fsck", "--data", data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "fsck after a full disk: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Mounted again: the space is there to use, and the kept file is intact.
    m.restart();
    assert_eq!(fs::read(&kept[0]).unwrap(), noise(8 << 20, 100));
    assert_eq!(fill(&m.path("again"), 16 << 20, 9, true), None, "writing after the space came back");
    let (_, _, avail_again) = statvfs(&m.dir);
    assert!(avail_again > 30 << 20, "statfs after gc: {avail_again} bytes free");
}
