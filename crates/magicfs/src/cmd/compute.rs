//! `magicfs compute`: byte-window operations over a file, run in place on a
//! read-only memory map; over an `http://` source with range requests; or
//! spread over registered endpoints (`--on`).

use crate::cli::{ComputeArgs, RegistryArgs, RemoteArgs};
use anyhow::{anyhow, bail, Context};
use magicfs_compute::{execute, instr, validate, windows, Instruction, Op, Output, MAX_INSTRUCTIONS};
use magicfs_remote::schedule::{remote_size, Event};
use magicfs_remote::{Allowlist, Client, FetchConfig, HttpSource, JobOptions, Registry};
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn run(a: ComputeArgs) -> anyhow::Result<i32> {
    let text = a.path.to_string_lossy().to_string();
    if let Some(on) = a.on.clone() {
        return on_endpoints(&a, &on, &text);
    }
    let lower = text.get(..8).unwrap_or(&text).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return over_http(&a, &text);
    }
    let path = match text.strip_prefix("file://") {
        Some(rest) => PathBuf::from(rest.strip_prefix("localhost").unwrap_or(rest)),
        None => a.path.clone(),
    };
    local(&a, &path)
}

/// A file on this machine.
fn local(a: &ComputeArgs, path: &std::path::Path) -> anyhow::Result<i32> {
    let started = Instant::now();
    let shown = path.display();
    let file = File::open(path).with_context(|| format!("cannot open {shown}"))?;
    let meta = file.metadata().with_context(|| format!("cannot stat {shown}"))?;
    if !meta.is_file() {
        bail!("{shown} is not a regular file; compute reads the bytes of a file");
    }
    // SAFETY: the map is read-only and lives only while this command runs. If
    // another process truncates the file meanwhile, reading the lost pages
    // raises SIGBUS, as it would for any reader of a mapped file.
    let map = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {shown} into memory"))?;
    let data: &[u8] = &map;
    let programs = programs(a, data.len() as u64, &shown.to_string())?;
    let mut out = Printer::new(a.json);
    let mut busy = started.elapsed();
    let (mut bytes, mut count) = (0u64, 0u64);
    for program in &programs {
        let t = Instant::now();
        let results = execute(data, program).map_err(|e| anyhow!("{shown}: {e}"))?;
        busy += t.elapsed();
        bytes += program.iter().map(|i| i.length).sum::<u64>();
        count += program.len() as u64;
        out.print(&results)?;
    }
    out.finish()?;
    summary(a.op, bytes, count, busy);
    Ok(0)
}

/// The fetch settings from the command line.
pub fn fetch_config(r: &RemoteArgs) -> anyhow::Result<FetchConfig> {
    let allow = Allowlist::with(&r.allow_hosts)?;
    Ok(FetchConfig {
        streams: r.streams.max(1),
        token: r.source_token.clone().filter(|t| !t.is_empty()),
        ..FetchConfig::new(Client::new(allow))
    })
}

/// An `http://` source, read with planned range requests.
fn over_http(a: &ComputeArgs, url: &str) -> anyhow::Result<i32> {
    let started = Instant::now();
    let cfg = fetch_config(&a.remote)?;
    let src = HttpSource::open(url, &cfg)?;
    let programs = programs(a, src.size(), url)?;
    let mut out = Printer::new(a.json);
    let (mut bytes, mut count) = (0u64, 0u64);
    let mut stats = magicfs_remote::FetchStats::default();
    for program in &programs {
        let (results, s) = src.execute(program, &cfg).map_err(|e| anyhow!("{url}: {e}"))?;
        bytes += program.iter().map(|i| i.length).sum::<u64>();
        count += program.len() as u64;
        stats.requests += s.requests;
        stats.retries += s.retries;
        stats.bytes += s.bytes;
        stats.cache_hits += s.cache_hits;
        stats.cache_misses += s.cache_misses;
        out.print(&results)?;
    }
    out.finish()?;
    summary(a.op, bytes, count, started.elapsed());
    let cache = stats.cache_hit_ratio().map_or_else(
        || "the origin does not say whether it answers from a cache".to_string(),
        |r| format!("cache hit ratio {:.0} %", r * 100.0),
    );
    eprintln!(
        "magicfs compute: fetched {} of {} bytes in {} range requests ({} retried); {cache}",
        stats.bytes,
        src.size(),
        stats.requests,
        stats.retries
    );
    Ok(0)
}

/// The registry file the arguments name.
pub fn registry_path(r: &RegistryArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &r.registry_data {
        if !dir.is_dir() {
            bail!("--data {}: not a directory; give a store's data directory", dir.display());
        }
        return Ok(dir.join(magicfs_remote::endpoints::FILE_NAME));
    }
    if let Some(f) = &r.endpoints {
        return Ok(f.clone());
    }
    Ok(magicfs_types::dirs::config_dir().join(magicfs_remote::endpoints::FILE_NAME))
}

/// A job spread over registered endpoints.
fn on_endpoints(a: &ComputeArgs, on: &str, data_url: &str) -> anyhow::Result<i32> {
    let started = Instant::now();
    let path = registry_path(&a.registry)?;
    let registry = Registry::load(&path)?;
    let endpoints = registry.select(on)?;
    let size = remote_size(&endpoints, data_url).map_err(|e| anyhow!("{data_url}: {e}"))?;
    let program: Vec<Instruction> = programs(a, size, data_url)?.concat();
    validate_all(&program, size, data_url)?;
    let opts = JobOptions { batch_bytes: a.batch.max(1), ..JobOptions::default() };
    let progress = |e: Event<'_>| match e {
        Event::BatchDone { endpoint, done, total } => {
            eprintln!("magicfs compute: batch {done}/{total} done on {endpoint}")
        }
        Event::Failed { endpoint, error } => {
            eprintln!("magicfs compute: {endpoint} failed ({error}); its batch goes to another endpoint")
        }
    };
    let result = magicfs_remote::run_job(&endpoints, data_url, &program, opts, &progress);
    // Charge what was sent, whether or not the job succeeded.
    let charge = |reports: &[magicfs_remote::schedule::EndpointReport]| -> anyhow::Result<()> {
        let mut fresh = Registry::load(&path)?;
        for r in reports {
            if let Some(e) = fresh.get_mut(&r.name) {
                e.charge(r.requests, r.charged_bytes);
            }
        }
        fresh.save()?;
        Ok(())
    };
    let report = result?;
    charge(&report.endpoints)?;
    let mut out = Printer::new(a.json);
    out.print(&report.results)?;
    out.finish()?;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let total: u64 = report.endpoints.iter().map(|r| r.bytes).sum();
    for r in &report.endpoints {
        eprintln!(
            "magicfs compute: endpoint {}: {} windows, {} bytes, {:.2} GB/s of the job, {:.2} GB/s while computing, {} failed requests",
            r.name,
            r.windows,
            r.bytes,
            r.bytes as f64 / secs / 1e9,
            if r.server_secs > 0.0 { r.bytes as f64 / r.server_secs / 1e9 } else { 0.0 },
            r.failures
        );
    }
    eprintln!(
        "magicfs compute: {} bytes in {} windows over {} endpoints, {:.4} s, {:.2} GB/s, {} batches retried",
        total,
        program.len(),
        endpoints.len(),
        started.elapsed().as_secs_f64(),
        total as f64 / secs / 1e9,
        report.retried
    );
    Ok(0)
}

/// Checks a whole job (which may hold more than one program's worth of windows).
fn validate_all(program: &[Instruction], size: u64, shown: &str) -> anyhow::Result<()> {
    for part in program.chunks(MAX_INSTRUCTIONS) {
        validate(part, size).map_err(|e| anyhow!("{shown}: {e}"))?;
    }
    Ok(())
}

/// The programs the arguments ask for over data of `size` bytes, each at
/// most [`MAX_INSTRUCTIONS`] windows.
fn programs(a: &ComputeArgs, size: u64, shown: &str) -> anyhow::Result<Vec<Vec<Instruction>>> {
    if let Some(prog) = &a.instructions {
        let text =
            std::fs::read_to_string(prog).with_context(|| format!("cannot read instructions {}", prog.display()))?;
        let program = instr::parse(&text).map_err(|e| anyhow!("{}: {e}", prog.display()))?;
        validate(&program, size).map_err(|e| anyhow!("{shown}: {e}"))?;
        return Ok(vec![program]);
    }
    let op = a.op.ok_or_else(|| anyhow!("give --op NAME or --instructions FILE.json"))?;
    if op.needs_imm() && a.imm.is_none() {
        bail!("--op {op} needs --imm N, the byte value to count (0-255)");
    }
    let offset = a.offset.unwrap_or(0);
    let length = match a.length {
        Some(l) => l,
        None => size.checked_sub(offset).ok_or_else(|| {
            anyhow!("{shown}: --offset {offset} is past the end of the file ({size} bytes); keep it <= {size}")
        })?,
    };
    if offset.checked_add(length).is_none_or(|end| end > size) {
        bail!(
            "{shown}: the range at offset {offset} with length {length} reaches past the end of the file ({size} bytes); keep offset + length <= {size}"
        );
    }
    let window = match a.window {
        Some(0) => bail!("--window must be at least 1 byte"),
        Some(w) => w.min(length.max(1)),
        None => length.max(1),
    };
    // One program holds at most MAX_INSTRUCTIONS windows: cut the range in batches.
    let batch = window.saturating_mul(MAX_INSTRUCTIONS as u64);
    let mut out = Vec::new();
    let mut start = offset;
    loop {
        let len = batch.min(offset + length - start);
        out.push(windows(op, a.imm, start, len, window));
        start += len;
        if start >= offset + length {
            break;
        }
    }
    Ok(out)
}

/// Writes results as `offset length value` lines or as one JSON array.
struct Printer {
    w: BufWriter<std::io::Stdout>,
    json: bool,
    first: bool,
}

impl Printer {
    fn new(json: bool) -> Printer {
        Printer { w: BufWriter::new(std::io::stdout()), json, first: true }
    }

    fn print(&mut self, results: &[Output]) -> anyhow::Result<()> {
        for o in results {
            if self.json {
                self.w.write_all(if self.first { b"[\n" } else { b",\n" })?;
                serde_json::to_writer(&mut self.w, o)?;
            } else {
                writeln!(self.w, "{} {} {}", o.offset, o.length, o.value)?;
            }
            self.first = false;
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if self.json {
            self.w.write_all(if self.first { b"[]\n" } else { b"\n]\n" })?;
        }
        self.w.flush()?;
        Ok(())
    }
}

/// One line on stderr: what was read, how long it took (opening, mapping and
/// computing; not printing) and the rate in GB/s (10^9 bytes per second).
fn summary(op: Option<Op>, bytes: u64, windows: u64, busy: Duration) {
    let secs = busy.as_secs_f64();
    let rate = if secs > 0.0 { bytes as f64 / secs / 1e9 } else { 0.0 };
    let what = op.map_or_else(|| "instructions".to_string(), |op| op.to_string());
    eprintln!("magicfs compute: {what}: {bytes} bytes in {windows} windows, {secs:.4} s, {rate:.2} GB/s");
}
