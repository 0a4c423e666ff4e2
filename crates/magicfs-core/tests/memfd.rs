//! Files handed out as sealed memfds.

use magicfs_core::{Ctx, Fs, FsConfig};
use magicfs_types::noise::noise;
use magicfs_types::{FsError, ROOT_INO};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn put(fs: &Fs, name: &str, data: &[u8]) -> u64 {
    let (a, fh) = fs.create(ROOT_INO, name.as_bytes(), 0o755, libc::O_RDWR, Ctx::default()).unwrap();
    fs.write(a.ino, 0, data).unwrap();
    fs.release(fh).unwrap();
    a.ino
}

fn check_fd(fd: std::os::fd::OwnedFd, want: &[u8]) {
    let raw = fd.as_raw_fd();
    // fstat
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(raw, &mut st) }, 0);
    assert_eq!(st.st_size as usize, want.len());
    // mmap
    if !want.is_empty() {
        // SAFETY: read-only shared mapping of a valid fd, unmapped below.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), want.len(), libc::PROT_READ, libc::MAP_SHARED, raw, 0) };
        assert_ne!(p, libc::MAP_FAILED);
        let mapped = unsafe { std::slice::from_raw_parts(p as *const u8, want.len()) };
        assert!(mapped == want, "mmap content differs");
        unsafe { libc::munmap(p, want.len()) };
    }
    let mut f = std::fs::File::from(fd);
    // lseek and read
    assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), want.len() as u64);
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut got = Vec::new();
    f.read_to_end(&mut got).unwrap();
    assert!(got == want, "read content differs");
    // sealed: no writes, no resizing
    let e = f.write_all(b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    if !want.is_empty() {
        assert_eq!(f.set_len(0).unwrap_err().raw_os_error(), Some(libc::EPERM));
    }
    assert_eq!(f.set_len(want.len() as u64 + 1).unwrap_err().raw_os_error(), Some(libc::EPERM));
}

#[test]
fn compressed_raw_sparse_and_empty_files_export_exactly() {
    let fs = Fs::memory(FsConfig::default());
    let text: Vec<u8> = (0..200_000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    let raw = noise(3 << 20, 7);
    put(&fs, "text", &text);
    put(&fs, "raw", &raw);
    put(&fs, "empty", b"");
    let (s, fh) = fs.create(ROOT_INO, b"sparse", 0o644, libc::O_RDWR, Ctx::default()).unwrap();
    fs.write(s.ino, 10 << 20, b"end").unwrap();
    fs.release(fh).unwrap();
    let st = fs.status();
    assert!(st.stored_bytes + (1 << 20) < st.unique_bytes, "the text is stored compressed");
    check_fd(fs.export_memfd_path("text").unwrap(), &text);
    check_fd(fs.export_memfd_path("/raw").unwrap(), &raw);
    check_fd(fs.export_memfd_path("empty").unwrap(), b"");
    let mut sparse = vec![0u8; (10 << 20) + 3];
    sparse[10 << 20..].copy_from_slice(b"end");
    check_fd(fs.export_memfd_path("sparse").unwrap(), &sparse);
    assert_eq!(fs.export_memfd_path("missing").unwrap_err(), FsError::NotFound);
    assert_eq!(fs.export_memfd_path("").unwrap_err(), FsError::IsDir);
}

#[test]
fn an_export_is_a_consistent_snapshot_while_another_handle_writes() {
    let fs = Arc::new(Fs::memory(FsConfig { spill_bytes: 1 << 20, ..FsConfig::default() }));
    let (a, fh) = fs.create(ROOT_INO, b"growing", 0o644, libc::O_RDWR, Ctx::default()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (fs, done) = (fs.clone(), done.clone());
        std::thread::spawn(move || {
            // 64 KiB blocks, block i filled with byte i; commits happen along the way.
            for i in 0..256u64 {
                let block = vec![i as u8; 64 << 10];
                if fs.write(a.ino, i << 16, &block).unwrap() {
                    fs.flush(a.ino).unwrap();
                }
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let mut exports = 0;
    while !done.load(Ordering::Relaxed) || exports < 3 {
        let mut got = Vec::new();
        std::fs::File::from(fs.export_memfd(a.ino).unwrap()).read_to_end(&mut got).unwrap();
        assert_eq!(got.len() % (64 << 10), 0, "a snapshot ends on a block boundary");
        for (i, block) in got.chunks(64 << 10).enumerate() {
            assert!(block.iter().all(|b| *b == i as u8), "block {i} is torn");
        }
        exports += 1;
    }
    writer.join().unwrap();
    fs.release(fh).unwrap();
    let mut all = Vec::new();
    std::fs::File::from(fs.export_memfd(a.ino).unwrap()).read_to_end(&mut all).unwrap();
    assert_eq!(all.len(), 256 << 16);
}
