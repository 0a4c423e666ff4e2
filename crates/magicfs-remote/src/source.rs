//! Compute over an `http://` source: the object's size and validators from a
//! one-byte range request, then the planned ranges fetched (at most
//! [`FetchConfig::streams`] at a time) and the program run on each batch.
//! Batches go in rounds of [`PlanOptions::max_batch`] bytes: one round is
//! computed while the next is fetched, in two buffers reused for the job.

use crate::error::{RemoteError, RemoteResult};
use crate::fetch::{cache_status, fetch_range, FetchConfig, FetchStats, SharedStats};
use crate::planner::{plan, Batch, PlanOptions};
use magicfs_compute::{execute, validate, Instruction, Op, Output};
use magicfs_net::HttpUrl;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Most bytes one batch may hold in memory (a longer window is refused).
pub const MAX_HELD: u64 = 1 << 30;

/// What an origin says about an object.
#[derive(Clone, Debug, Serialize)]
pub struct SourceInfo {
    /// The URL.
    pub url: String,
    /// Whether the origin serves byte ranges.
    pub ranges: bool,
    /// Size in bytes.
    pub size: u64,
    /// The entity tag, if any.
    pub etag: Option<String>,
    /// `Last-Modified`, if any.
    pub last_modified: Option<String>,
    /// `Cache-Control`, if any.
    pub cache_control: Option<String>,
    /// `Age`, if any.
    pub age: Option<String>,
    /// `X-Cache` (or `CF-Cache-Status`), if any.
    pub x_cache: Option<String>,
    /// Whether the answer came from a cache, where the origin says so.
    pub cache_hit: Option<bool>,
    /// Time to the answer's head, in milliseconds.
    pub latency_ms: f64,
}

/// An object behind an `http://` URL, opened for compute.
#[derive(Clone, Debug)]
pub struct HttpSource {
    url: HttpUrl,
    info: SourceInfo,
}

impl HttpSource {
    /// Asks the origin for byte 0 (`Range: bytes=0-0`) to learn the size,
    /// range support, validators and cache headers. The answer's body is not
    /// read beyond that byte; an origin that ignores ranges is not read at all.
    pub fn open(url: &str, cfg: &FetchConfig) -> RemoteResult<HttpSource> {
        let url = HttpUrl::parse(url)?;
        let auth = cfg.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Range", "bytes=0-0")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let started = Instant::now();
        let r = cfg.client.request("GET", &url, &headers, b"")?;
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let total = |v: &str| v.rsplit_once('/').and_then(|(_, n)| n.trim().parse::<u64>().ok());
        let (ranges, size) = match r.status {
            206 => (true, r.header("content-range").and_then(total)),
            416 => (true, r.header("content-range").and_then(total)),
            200 => (false, r.content_length()),
            _ => {
                r.success("opening the source")?;
                return Err(RemoteError::Protocol(format!("{url}: unexpected answer")));
            }
        };
        let size = size.ok_or_else(|| {
            RemoteError::Protocol(format!("{url}: the answer does not say how large the object is (no Content-Range)"))
        })?;
        let h = |n: &str| r.header(n).map(str::to_string);
        let info = SourceInfo {
            url: url.to_string(),
            ranges,
            size,
            etag: h("etag"),
            last_modified: h("last-modified"),
            cache_control: h("cache-control"),
            age: h("age"),
            x_cache: h("x-cache").or_else(|| h("cf-cache-status")),
            cache_hit: cache_status(&r),
            latency_ms,
        };
        Ok(HttpSource { url, info })
    }

    /// What the origin said.
    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// Size of the object in bytes.
    pub fn size(&self) -> u64 {
        self.info.size
    }

    /// Runs `program` over the object, fetching only the planned ranges.
    /// Results come back in program order, equal to a local run.
    pub fn execute(&self, program: &[Instruction], cfg: &FetchConfig) -> RemoteResult<(Vec<Output>, FetchStats)> {
        self.execute_with(program, cfg, PlanOptions::default())
    }

    /// [`HttpSource::execute`] with explicit planner sizes.
    pub fn execute_with(
        &self,
        program: &[Instruction],
        cfg: &FetchConfig,
        opts: PlanOptions,
    ) -> RemoteResult<(Vec<Output>, FetchStats)> {
        validate(program, self.size())?;
        let batches = plan(program, self.size(), opts);
        if let Some(b) = batches.iter().find(|b| b.len() > MAX_HELD) {
            return Err(RemoteError::Limit(format!(
                "windows spanning {} bytes without a break over {} are longer than the {MAX_HELD} bytes compute over an http source holds at once; cut them into smaller windows (--window)",
                b.len(),
                self.url
            )));
        }
        if !batches.is_empty() && !self.info.ranges {
            return Err(RemoteError::NoRanges(format!(
                "{} does not serve byte ranges (it answered 200 to a range request); compute reads only sources that do",
                self.url
            )));
        }
        let mut results: Vec<Option<Output>> =
            program.iter().map(|ins| (ins.length == 0).then(|| empty_output(ins))).collect();
        let stats = SharedStats::default();
        let rounds = rounds(&batches, opts.max_batch);
        let held = rounds.iter().map(|r| round_bytes(r)).max().unwrap_or(0);
        // Two buffers, reused: round k is computed on one while round k + 1
        // is fetched into the other.
        let mut spare = Some(Buffer::new(held)?);
        std::thread::scope(|s| -> RemoteResult<()> {
            let mut running = None;
            for round in &rounds {
                let mut buf = match spare.take() {
                    Some(b) => b,
                    None => Buffer::new(held)?,
                };
                let fetched = self.fetch_round(round, buf.bytes_mut(round_bytes(round)), cfg, &stats);
                let done = running.take().map(|h| joined(h, &mut results));
                fetched?;
                if let Some(done) = done {
                    spare = Some(done?);
                }
                running = Some(s.spawn(move || compute_round(round, buf, program)));
            }
            match running {
                Some(h) => joined(h, &mut results).map(drop),
                None => Ok(()),
            }
        })?;
        let results = results
            .into_iter()
            .map(|r| r.ok_or_else(|| RemoteError::Protocol("a window was left out of the plan".into())))
            .collect::<RemoteResult<Vec<_>>>()?;
        Ok((results, stats.snapshot()))
    }

    /// Fetches the batches of one round into `buf` (their bytes one after
    /// another), up to `cfg.streams` requests at a time.
    fn fetch_round(&self, round: &[Batch], buf: &mut [u8], cfg: &FetchConfig, stats: &SharedStats) -> RemoteResult<()> {
        let mut work: Vec<(u64, &mut [u8])> = Vec::new();
        let mut rest = buf;
        for batch in round {
            for &(start, end) in &batch.requests {
                let (piece, tail) = rest.split_at_mut((end - start) as usize);
                work.push((start, piece));
                rest = tail;
            }
        }
        work.reverse();
        let threads = cfg.streams.max(1).min(work.len());
        let queue = Mutex::new(work);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<RemoteError>> = Mutex::new(None);
        let etag = self.info.etag.as_deref();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some((start, piece)) = queue.lock().unwrap_or_else(PoisonError::into_inner).pop() else {
                        return;
                    };
                    if let Err(e) = fetch_range(cfg, &self.url, start, piece, etag, stats) {
                        failed.store(true, Ordering::Relaxed);
                        first_error.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(e);
                        return;
                    }
                });
            }
        });
        match first_error.into_inner().unwrap_or_else(PoisonError::into_inner) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Consecutive batches grouped into rounds of up to `max_batch` bytes in
/// all (at least one batch each).
fn rounds(batches: &[Batch], max_batch: u64) -> Vec<&[Batch]> {
    let mut out = Vec::new();
    let mut rest = batches;
    while !rest.is_empty() {
        let mut n = 0;
        let mut bytes = 0;
        while n < rest.len() && (n == 0 || bytes + rest[n].len() <= max_batch) {
            bytes += rest[n].len();
            n += 1;
        }
        let (round, later) = rest.split_at(n);
        out.push(round);
        rest = later;
    }
    out
}

fn round_bytes(round: &[Batch]) -> usize {
    round.iter().map(|b| b.len() as usize).sum()
}

/// Windows computed: (program index, output).
type Computed = Vec<(usize, Output)>;

/// Runs the windows of `round` over its fetched bytes in `buf`, and gives the buffer back.
fn compute_round(round: &[Batch], buf: Buffer, program: &[Instruction]) -> RemoteResult<(Buffer, Computed)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    for batch in round {
        let bytes = &buf.bytes()[at..at + batch.len() as usize];
        at += batch.len() as usize;
        let rel: Vec<Instruction> = batch
            .windows
            .iter()
            .map(|&i| Instruction { offset: program[i].offset - batch.start, ..program[i] })
            .collect();
        for (&i, o) in batch.windows.iter().zip(execute(bytes, &rel)?) {
            out.push((i, Output { offset: program[i].offset, ..o }));
        }
    }
    Ok((buf, out))
}

/// Waits for a round's compute, files its outputs and gives its buffer back.
fn joined(
    h: std::thread::ScopedJoinHandle<'_, RemoteResult<(Buffer, Computed)>>,
    results: &mut [Option<Output>],
) -> RemoteResult<Buffer> {
    let (buf, outs) = h.join().map_err(|_| RemoteError::Protocol("the compute of a round panicked".into()))??;
    for (i, o) in outs {
        results[i] = Some(o);
    }
    Ok(buf)
}

/// A fetch buffer: anonymous memory, in huge pages where the kernel gives
/// them (fresh pages cost a fault each, a quarter of the work at loopback
/// rates with 4 KiB pages).
struct Buffer(memmap2::MmapMut);

impl Buffer {
    fn new(len: usize) -> RemoteResult<Buffer> {
        let map = memmap2::MmapMut::map_anon(len.max(1))
            .map_err(|e| RemoteError::Limit(format!("cannot hold {len} bytes for compute over an http source: {e}")))?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        Ok(Buffer(map))
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.0[..len]
    }
}

/// The result of an empty window.
fn empty_output(ins: &Instruction) -> Output {
    Output { op: ins.op, offset: ins.offset, length: 0, value: ins.op.identity() }
}

/// Runs `program` over the object at `url` (see [`HttpSource`]).
pub fn execute_url(url: &str, program: &[Instruction], cfg: &FetchConfig) -> RemoteResult<(Vec<Output>, FetchStats)> {
    HttpSource::open(url, cfg)?.execute(program, cfg)
}

/// A catalogue entry for a data source (`magicfs assets probe`).
#[derive(Clone, Debug, Serialize)]
pub struct AssetReport {
    /// What the origin says about the object.
    #[serde(flatten)]
    pub info: SourceInfo,
    /// Bytes read for the estimate (at most 64 KiB).
    pub sample_bytes: u64,
    /// Milliseconds to fetch the sample with a range request.
    pub sample_fetch_ms: f64,
    /// Sample bytes over the time to fetch and count them, in GB/s: the rate
    /// at which compute over this source can go from one stream.
    pub compute_gbps_estimate: f64,
    /// Cache hit ratio over the answers seen, where the origin says so.
    pub cache_hit_ratio: Option<f64>,
}

/// Probes `url`: range support, size, validators, cache headers, and the
/// time to fetch and count its first 64 KiB.
pub fn probe_asset(url: &str, cfg: &FetchConfig) -> RemoteResult<AssetReport> {
    let src = HttpSource::open(url, cfg)?;
    let n = src.size().min(64 << 10);
    let program = [Instruction::new(Op::Counteq, Some(0), 0, n)];
    let started = Instant::now();
    let (fetch_ms, stats) = if src.info.ranges && n > 0 {
        let stats = SharedStats::default();
        let mut buf = vec![0u8; n as usize];
        fetch_range(cfg, &src.url, 0, &mut buf, src.info.etag.as_deref(), &stats)?;
        let fetch_ms = started.elapsed().as_secs_f64() * 1e3;
        execute(&buf, &program)?;
        (fetch_ms, stats.snapshot())
    } else {
        (0.0, FetchStats::default())
    };
    let secs = started.elapsed().as_secs_f64();
    let mut hits = stats.cache_hits;
    let mut misses = stats.cache_misses;
    match src.info.cache_hit {
        Some(true) => hits += 1,
        Some(false) => misses += 1,
        None => {}
    }
    let known = hits + misses;
    Ok(AssetReport {
        sample_bytes: if src.info.ranges { n } else { 0 },
        sample_fetch_ms: fetch_ms,
        compute_gbps_estimate: if src.info.ranges && secs > 0.0 { n as f64 / secs / 1e9 } else { 0.0 },
        cache_hit_ratio: (known > 0).then(|| hits as f64 / known as f64),
        info: src.info,
    })
}
