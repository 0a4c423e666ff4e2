//! `magicfs bench-cluster`: workloads across two mounts of one shared
//! volume, for several filesystems side by side (MagicFS cluster volumes,
//! JuiceFS), printed as a Markdown table with ratios against the baseline.
//!
//! Each target is `NAME=DIR_A,DIR_B`: two mounts of the same volume. Small
//! files are written on A; the other mount (B) lists them and stats them;
//! a large file written on A is read cold on B.

use super::bench::{drop_caches, seq_read_file};
use crate::cli::BenchClusterArgs;
use anyhow::{bail, Context};
use magicfs_types::noise::{noise, XorShift64};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Target {
    name: String,
    a: PathBuf,
    b: PathBuf,
    /// A shell command printing how many objects the target's store holds.
    objects: Option<String>,
    /// A shell command printing how many transactions its database committed.
    transactions: Option<String>,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Runs a counting command (`--count-objects`, `--count-transactions`).
fn count(cmd: &str) -> anyhow::Result<f64> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!("{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse::<f64>().with_context(|| format!("{cmd} printed {text:?}, not a number"))
}

/// Waits until `p` is visible (the other mount learnt of it).
fn wait_for(p: &Path) -> anyhow::Result<()> {
    let t = Instant::now();
    while !p.exists() {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("{} did not appear within 30 s", p.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// `n` files of 4 KiB each, written one after another (create, write,
/// close) on mount A; files per second.
fn small_files(dir: &Path, n: u64) -> anyhow::Result<f64> {
    fs::create_dir_all(dir)?;
    let t = Instant::now();
    for i in 0..n {
        // Distinct contents: deduplication does not flatter anyone.
        let mut data = noise(4096, 0xf11e_0000 + i);
        data[..8].copy_from_slice(&i.to_le_bytes());
        let mut f = File::create(dir.join(format!("f{i:05}")))?;
        f.write_all(&data)?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// `n` empty files in one directory, made on mount A (setup, not timed).
fn populate(dir: &Path, n: u64) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    for i in 0..n {
        File::create(dir.join(format!("e{i:05}")))?;
    }
    Ok(())
}

/// `ls -l` of the directory on mount B; listings per second (first, cold).
fn list(dir: &Path) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = Command::new("ls").arg("-l").arg(dir).output()?;
    if !out.status.success() {
        bail!("ls -l {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(1.0 / t.elapsed().as_secs_f64())
}

/// `stat` of random entries of the directory on mount B, right after the
/// listing (the kernel's attribute cache answers most); the 50th and 99th
/// percentile latencies in microseconds.
fn stats(dir: &Path, entries: u64, n: u64) -> anyhow::Result<(f64, f64)> {
    let mut rng = XorShift64::new(0x5747_5f70_3939);
    let names: Vec<u64> = (0..n).map(|_| rng.below(entries)).collect();
    stat_latencies(dir, &names)
}

/// `stat` of up to `n` distinct entries of the directory on mount B, in
/// random order, with the kernel's dentry and attribute caches dropped
/// first: each one is a lookup the filesystem answers itself (its metadata
/// engine's latency as the other mount sees it).
fn cold_stats(dir: &Path, entries: u64, n: u64) -> anyhow::Result<(f64, f64)> {
    let mut rng = XorShift64::new(0xc01d_57a7);
    let mut names: Vec<u64> = (0..entries).collect();
    for i in (1..names.len()).rev() {
        names.swap(i, rng.below(i as u64 + 1) as usize);
    }
    names.truncate(n.min(entries) as usize);
    drop_caches(true);
    stat_latencies(dir, &names)
}

/// Stats `e{i:05}` for each `i` in `names`; p50 and p99 in microseconds.
fn stat_latencies(dir: &Path, names: &[u64]) -> anyhow::Result<(f64, f64)> {
    let mut lat = Vec::with_capacity(names.len());
    for i in names {
        let p = dir.join(format!("e{i:05}"));
        let t = Instant::now();
        fs::metadata(&p)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    if lat.is_empty() {
        bail!("no entries to stat");
    }
    lat.sort_by(f64::total_cmp);
    let at = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

/// Writes `data` on mount A (write + close); MiB/s.
fn seq_write(p: &Path, data: &[u8]) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut f = File::create(p)?;
    for block in data.chunks(1 << 20) {
        f.write_all(block)?;
    }
    drop(f);
    Ok(data.len() as f64 / MIB / t.elapsed().as_secs_f64())
}

/// One row of the table: a workload, its unit, whether lower is better,
/// and a figure per target.
struct Row {
    name: String,
    unit: &'static str,
    lower_is_better: bool,
    figs: Vec<f64>,
}

impl Row {
    fn new(name: impl Into<String>, unit: &'static str, lower_is_better: bool) -> Row {
        Row { name: name.into(), unit, lower_is_better, figs: Vec::new() }
    }
}

pub fn run(a: BenchClusterArgs) -> anyhow::Result<i32> {
    let counters = |list: &[String], flag: &str| -> anyhow::Result<std::collections::HashMap<String, String>> {
        list.iter()
            .map(|o| {
                let (name, cmd) = o.split_once('=').with_context(|| format!("{flag} takes NAME=COMMAND"))?;
                Ok((name.to_string(), cmd.to_string()))
            })
            .collect()
    };
    let mut objects = counters(&a.count_objects, "--count-objects")?;
    let mut transactions = counters(&a.count_transactions, "--count-transactions")?;
    let targets: Vec<Target> = a
        .targets
        .iter()
        .map(|t| {
            let (name, dirs) = t.split_once('=').context("targets are NAME=DIR_A,DIR_B")?;
            let (da, db) = dirs.split_once(',').context("targets are NAME=DIR_A,DIR_B (two mounts)")?;
            let (a, b) = (PathBuf::from(da), PathBuf::from(db));
            for d in [&a, &b] {
                if !d.is_dir() {
                    bail!("{} is not a directory", d.display());
                }
            }
            Ok(Target {
                name: name.to_string(),
                a,
                b,
                objects: objects.remove(name),
                transactions: transactions.remove(name),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(n) = objects.keys().chain(transactions.keys()).next() {
        bail!("a counter names {n}, which is not a target");
    }
    let len = (a.size_mib as usize) << 20;
    let data = if len > 0 { noise(len, 0xc105_7e12) } else { Vec::new() };
    let mut rows = vec![
        Row::new(format!("{} files of 4 KiB (create, write, close)", a.files), "files/s", false),
        Row::new("store objects made by those files", "objects", true),
        Row::new("database transactions per small file", "transactions", true),
        Row::new(format!("`ls -l` of {} entries on the other mount", a.entries), "listings/s", false),
        Row::new("`stat` on the other mount after `ls -l`, p50", "µs", true),
        Row::new("`stat` on the other mount after `ls -l`, p99", "µs", true),
        Row::new("`stat` on the other mount, kernel caches dropped, p50", "µs", true),
        Row::new("`stat` on the other mount, kernel caches dropped, p99", "µs", true),
    ];
    if len > 0 {
        rows.push(Row::new(format!("{} MiB sequential write (write + close)", a.size_mib), "MiB/s", false));
        rows.push(Row::new(format!("{} MiB sequential read on the other mount, cold", a.size_mib), "MiB/s", false));
    }
    for t in &targets {
        eprintln!("== {} ({} and {})", t.name, t.a.display(), t.b.display());
        let root = format!("bench-cluster-{}", std::process::id());
        let (ra, rb) = (t.a.join(&root), t.b.join(&root));
        fs::create_dir(&ra).with_context(|| format!("creating {}", ra.display()))?;
        let counts = || -> anyhow::Result<(Option<f64>, Option<f64>)> {
            Ok((t.objects.as_deref().map(count).transpose()?, t.transactions.as_deref().map(count).transpose()?))
        };
        let before = counts()?;
        let files = small_files(&ra.join("small"), a.files)?;
        // Give a store's background uploads (and the database's statistics)
        // time to settle before counting.
        std::thread::sleep(Duration::from_secs(a.settle_secs));
        let after = counts()?;
        let diff = |b: Option<f64>, x: Option<f64>| b.zip(x).map_or(f64::NAN, |(b, x)| x - b);
        let made = diff(before.0, after.0);
        let per_file = diff(before.1, after.1) / a.files as f64;
        eprintln!("   small files: {files:.1} files/s, {made} objects, {per_file:.2} transactions per file");
        populate(&ra.join("list"), a.entries)?;
        wait_for(&rb.join("list").join(format!("e{:05}", a.entries - 1)))?;
        drop_caches(true);
        let listing = list(&rb.join("list"))?;
        let (p50, p99) = stats(&rb.join("list"), a.entries, a.stats)?;
        let (c50, c99) = cold_stats(&rb.join("list"), a.entries, a.stats)?;
        eprintln!(
            "   ls -l: {listing:.2} listings/s; stat p50 {p50:.0} µs, p99 {p99:.0} µs; \
             with kernel caches dropped p50 {c50:.0} µs, p99 {c99:.0} µs"
        );
        let mut figs = vec![files, made, per_file, listing, p50, p99, c50, c99];
        if len > 0 {
            let w = seq_write(&ra.join("big"), &data)?;
            wait_for(&rb.join("big"))?;
            let r = seq_read_file(&rb.join("big"), len, true)?;
            eprintln!("   sequential: write {w:.1} MiB/s, cold read on the other mount {r:.1} MiB/s");
            figs.extend([w, r]);
        }
        for (row, f) in rows.iter_mut().zip(figs) {
            row.figs.push(f);
        }
        fs::remove_dir_all(&ra).with_context(|| format!("removing {}", ra.display()))?;
    }
    let base = match &a.baseline {
        Some(b) => targets.iter().position(|t| &t.name == b).with_context(|| format!("no target named {b}"))?,
        None => targets.len() - 1,
    };
    let mut head = "| workload | unit |".to_string();
    let mut rule = "|---|---|".to_string();
    for t in &targets {
        head += &format!(" {} |", t.name);
        rule += "---:|";
    }
    let others: Vec<usize> = (0..targets.len()).filter(|i| *i != base).collect();
    for i in &others {
        head += &format!(" {} vs {} |", targets[*i].name, targets[base].name);
        rule += "---:|";
    }
    println!("{head}\n{rule}");
    for r in &rows {
        let mut line = format!("| {} | {} |", r.name, r.unit);
        for f in &r.figs {
            line += &format!(" {f:.1} |");
        }
        for i in &others {
            // Ratios read as "times better": inverted where lower is better.
            let (x, y) = (r.figs[*i], r.figs[base]);
            let ratio = if r.lower_is_better { y / x.max(1.0) } else { x / y.max(1e-9) };
            line += &format!(" {ratio:.2}× |");
        }
        println!("{line}");
    }
    Ok(0)
}
