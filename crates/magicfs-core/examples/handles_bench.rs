//! Open/read/close throughput with 1, 2, 4 and 8 threads, lock-free handle
//! table vs the mutex baseline, side by side; and memfd export throughput.
//!
//! `cargo run --release -p magicfs-core --example handles_bench [MOUNTPOINT]`
//!
//! With a MagicFS mount point, the same 256 MiB file is also written there
//! and read back through the mount (after dropping the page cache, then
//! again warm), side by side with the memfd export.

use magicfs_core::{Ctx, Fs, FsConfig};
use magicfs_types::ROOT_INO;
use std::sync::Arc;
use std::time::Instant;

fn run(mutex_handles: bool, threads: usize, per_thread: usize) -> f64 {
    let fs = Arc::new(Fs::memory(FsConfig { mutex_handles, ..FsConfig::default() }));
    let inos: Vec<u64> = (0..64)
        .map(|i| {
            let (a, fh) = fs.create(ROOT_INO, format!("f{i}").as_bytes(), 0o644, libc::O_RDWR, Ctx::default()).unwrap();
            fs.write(a.ino, 0, &[i as u8; 4096]).unwrap();
            fs.release(fh).unwrap();
            a.ino
        })
        .collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            let (fs, inos) = (fs.clone(), &inos);
            s.spawn(move || {
                for i in 0..per_thread {
                    let ino = inos[(k * 7 + i) % inos.len()];
                    let fh = fs.open(ino, libc::O_RDONLY).unwrap();
                    fs.read_with(ino, 0, 4096, |d| d.len()).unwrap();
                    fs.release(fh).unwrap();
                }
            });
        }
    });
    (threads * per_thread) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let per_thread = 200_000;
    println!("| threads | lock-free (cycles/s) | mutex (cycles/s) | lock-free / mutex |");
    println!("|---:|---:|---:|---:|");
    for threads in [1, 2, 4, 8] {
        let lf = (0..3).map(|_| run(false, threads, per_thread)).fold(0f64, f64::max);
        let mx = (0..3).map(|_| run(true, threads, per_thread)).fold(0f64, f64::max);
        println!("| {threads} | {lf:.0} | {mx:.0} | {:.2} |", lf / mx);
    }

    let fs = Fs::memory(FsConfig::default());
    let len = 256usize << 20;
    let data = magicfs_types::noise::noise(len, 7);
    let (a, fh) = fs.create(ROOT_INO, b"big", 0o644, libc::O_RDWR, Ctx::default()).unwrap();
    fs.write(a.ino, 0, &data).unwrap();
    fs.release(fh).unwrap();
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            let fd = fs.export_memfd(a.ino).unwrap();
            let s = t.elapsed().as_secs_f64();
            drop(fd);
            len as f64 / s / 1e6
        })
        .fold(0f64, f64::max);
    println!("\n| 256 MiB file | MB/s |\n|---|---:|");
    println!("| memfd export (library, in process) | {best:.0} |");
    if let Some(mnt) = std::env::args().nth(1) {
        let path = std::path::Path::new(&mnt).join("memfd-bench.bin");
        std::fs::write(&path, &data).unwrap();
        for (label, drop_cache) in [("read through the mount, cold", true), ("read through the mount, warm", false)] {
            let best = (0..3)
                .map(|_| {
                    if drop_cache {
                        // SAFETY: sync has no preconditions.
                        unsafe { libc::sync() };
                        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
                    }
                    let t = Instant::now();
                    let n = std::fs::read(&path).unwrap().len();
                    n as f64 / t.elapsed().as_secs_f64() / 1e6
                })
                .fold(0f64, f64::max);
            println!("| {label} | {best:.0} |");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
