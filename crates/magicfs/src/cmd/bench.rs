//! `magicfs bench`: the same workloads on several directories, side by side,
//! printed as a Markdown table with ratios against the first target.

use crate::cli::BenchArgs;
use anyhow::{bail, Context};
use magicfs_types::noise::{noise, XorShift64};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Target {
    name: String,
    dir: PathBuf,
}

/// One measured figure: higher is better.
#[derive(Clone, Copy)]
struct Figure {
    value: f64,
}

const MIB: f64 = 1024.0 * 1024.0;

pub(super) fn drop_caches(enabled: bool) {
    if enabled {
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        let _ = fs::write("/proc/sys/vm/drop_caches", "3");
    }
}

fn best(runs: u32, mut f: impl FnMut() -> anyhow::Result<f64>) -> anyhow::Result<Figure> {
    let mut best = 0f64;
    for _ in 0..runs.max(1) {
        best = best.max(f()?);
    }
    Ok(Figure { value: best })
}

fn seq_write(dir: &Path, data: &[u8]) -> anyhow::Result<f64> {
    let p = dir.join("bench-seq.bin");
    let _ = fs::remove_file(&p);
    let t = Instant::now();
    let mut f = File::create(&p)?;
    for block in data.chunks(1 << 20) {
        f.write_all(block)?;
    }
    drop(f); // close: MagicFS commits here
    Ok(data.len() as f64 / MIB / t.elapsed().as_secs_f64())
}

fn seq_read(dir: &Path, len: usize, drop: bool) -> anyhow::Result<f64> {
    seq_read_file(&dir.join("bench-seq.bin"), len, drop)
}

/// Reads `p` (of `len` bytes) front to back in 1 MiB pieces, after dropping
/// the kernel's caches when `drop`; MiB/s.
pub(super) fn seq_read_file(p: &Path, len: usize, drop: bool) -> anyhow::Result<f64> {
    drop_caches(drop);
    let t = Instant::now();
    let mut f = File::open(p)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n;
    }
    if total != len {
        bail!("read {total} bytes of {} back, wrote {len}", p.display());
    }
    Ok(total as f64 / MIB / t.elapsed().as_secs_f64())
}

fn random_reads(dir: &Path, len: usize, n: u64, drop: bool) -> anyhow::Result<f64> {
    drop_caches(drop);
    let f = File::open(dir.join("bench-seq.bin"))?;
    let mut buf = [0u8; 4096];
    let blocks = (len / 4096) as u64;
    let mut rng = XorShift64::new(0x9e37_79b9_7f4a_7c15);
    let t = Instant::now();
    for _ in 0..n {
        f.read_exact_at(&mut buf, rng.below(blocks) * 4096)?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn small_files(dir: &Path, n: u64) -> anyhow::Result<f64> {
    let d = dir.join("bench-small");
    let _ = fs::remove_dir_all(&d);
    fs::create_dir(&d)?;
    let t = Instant::now();
    for i in 0..n {
        let p = d.join(format!("f{i}"));
        OpenOptions::new().write(true).create_new(true).open(&p)?.write_all(b"hello, small file\n")?;
        fs::metadata(&p)?;
        fs::remove_file(&p)?;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    fs::remove_dir(&d)?;
    Ok(rate)
}

fn untar(dir: &Path, tarball: &Path) -> anyhow::Result<f64> {
    let d = dir.join("bench-tree");
    let _ = fs::remove_dir_all(&d);
    fs::create_dir(&d)?;
    let t = Instant::now();
    let st = std::process::Command::new("tar").arg("-xf").arg(tarball).arg("-C").arg(&d).status()?;
    if !st.success() {
        bail!("tar failed on {}", d.display());
    }
    let secs = t.elapsed().as_secs_f64();
    fs::remove_dir_all(&d)?;
    Ok(1.0 / secs)
}

pub fn run(a: BenchArgs) -> anyhow::Result<i32> {
    let targets: Vec<Target> = a
        .targets
        .iter()
        .map(|t| {
            let (name, dir) = t.split_once('=').context("targets are NAME=PATH")?;
            let dir = PathBuf::from(dir);
            if !dir.is_dir() {
                bail!("{} is not a directory", dir.display());
            }
            Ok(Target { name: name.to_string(), dir })
        })
        .collect::<anyhow::Result<_>>()?;
    let len = (a.size_mib as usize) << 20;
    eprintln!("generating {} MiB of incompressible data…", a.size_mib);
    let data = noise(len, 0x1234_5678);
    let mut rows: Vec<(&str, &str, Vec<Figure>)> = vec![
        ("sequential write, 1 MiB blocks (write+close)", "MiB/s", vec![]),
        ("sequential read, 1 MiB blocks (cold)", "MiB/s", vec![]),
        ("sequential read, 1 MiB blocks (warm)", "MiB/s", vec![]),
        ("random 4 KiB reads", "reads/s", vec![]),
        ("create+stat+unlink small files", "cycles/s", vec![]),
    ];
    if a.tarball.is_some() {
        rows.push(("extract source tree (tar -x)", "runs/s", vec![]));
    }
    for t in &targets {
        eprintln!("== {} ({})", t.name, t.dir.display());
        let figs = [
            best(a.runs, || seq_write(&t.dir, &data))?,
            best(a.runs, || seq_read(&t.dir, len, a.drop_caches))?,
            best(a.runs, || seq_read(&t.dir, len, false))?,
            best(a.runs, || random_reads(&t.dir, len, a.random_reads, a.drop_caches))?,
            best(a.runs, || small_files(&t.dir, a.files))?,
        ];
        let _ = fs::remove_file(t.dir.join("bench-seq.bin"));
        for (row, f) in rows.iter_mut().zip(figs) {
            row.2.push(f);
        }
        if let Some(tb) = &a.tarball {
            rows[5].2.push(best(a.runs, || untar(&t.dir, tb))?);
        }
        for (name, unit, figs) in &rows {
            if let Some(f) = figs.last() {
                eprintln!("   {name}: {:.1} {unit}", f.value);
            }
        }
    }
    // Markdown: absolute figures, then each target as a ratio of each baseline.
    let bases: Vec<usize> = if a.baseline.is_empty() {
        vec![0]
    } else {
        a.baseline
            .iter()
            .map(|b| targets.iter().position(|t| &t.name == b).with_context(|| format!("no target named {b}")))
            .collect::<anyhow::Result<_>>()?
    };
    let pairs: Vec<(usize, usize)> =
        (0..targets.len()).filter(|i| !bases.contains(i)).flat_map(|i| bases.iter().map(move |b| (i, *b))).collect();
    let mut head = "| workload | unit |".to_string();
    let mut rule = "|---|---|".to_string();
    for t in &targets {
        head += &format!(" {} |", t.name);
        rule += "---:|";
    }
    for (i, b) in &pairs {
        head += &format!(" {} / {} |", targets[*i].name, targets[*b].name);
        rule += "---:|";
    }
    println!("{head}\n{rule}");
    for (name, unit, figs) in &rows {
        let mut line = format!("| {name} | {unit} |");
        for f in figs {
            line += &format!(" {:.1} |", f.value);
        }
        for (i, b) in &pairs {
            line += &format!(" {:.2} |", figs[*i].value / figs[*b].value.max(1e-9));
        }
        println!("{line}");
    }
    Ok(0)
}
