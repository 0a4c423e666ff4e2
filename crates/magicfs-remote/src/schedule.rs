//! The scheduler: one compute job spread over several `magicfs serve`
//! endpoints.
//!
//! The program is cut, in order, into batches (at most
//! [`JobOptions::batch_bytes`] of windows and [`JobOptions::batch_windows`]
//! windows each). Each endpoint is dealt one batch, the rest in proportion
//! to their measured throughput (an endpoint never probed counts as the
//! average of those that were). Each endpoint runs `concurrency` requests at
//! a time; one that runs out of work takes batches from the back of the
//! others' queues (leaving a live endpoint its last one), so a fast endpoint
//! ends up doing more. A batch that fails on an endpoint
//! (connection lost, 5xx, or 401/403/404 there) goes back for any other to
//! take; an endpoint that fails twice in a row takes no more. A 400 or 413
//! (the job itself is wrong) stops the job. Daily budgets (requests and
//! bytes) are checked before each request; results are put back in program
//! order, so the output equals a local run.

use crate::endpoints::Endpoint;
use crate::error::{RemoteError, RemoteResult};
use magicfs_compute::{Instruction, Output};
use magicfs_net::HttpUrl;
use magicfs_net::{Allowlist, Client, Timeouts};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How a job is cut into requests.
#[derive(Clone, Copy, Debug)]
pub struct JobOptions {
    /// Most window bytes in one request.
    pub batch_bytes: u64,
    /// Most windows in one request.
    pub batch_windows: usize,
}

impl Default for JobOptions {
    fn default() -> JobOptions {
        JobOptions { batch_bytes: 16 << 20, batch_windows: 1024 }
    }
}

/// What one endpoint did in a job.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EndpointReport {
    /// Its name.
    pub name: String,
    /// Batches it computed.
    pub batches: u64,
    /// Windows it computed.
    pub windows: u64,
    /// Window bytes it computed.
    pub bytes: u64,
    /// Requests sent to it (failed ones included), charged to its budget.
    pub requests: u64,
    /// Window bytes sent to it (failed ones included), charged to its budget.
    pub charged_bytes: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Seconds the server reported computing.
    pub server_secs: f64,
    /// The last error it gave, if any.
    pub last_error: Option<String>,
}

/// The outcome of a job.
#[derive(Clone, Debug)]
pub struct JobReport {
    /// One result per instruction, in program order.
    pub results: Vec<Output>,
    /// Per endpoint, in the order given.
    pub endpoints: Vec<EndpointReport>,
    /// Batches that were retried on another endpoint.
    pub retried: u64,
    /// Wall time of the whole job.
    pub elapsed: Duration,
}

/// Progress of a job, for display.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// A batch finished on `endpoint`; `done` of `total` batches are done.
    BatchDone {
        /// The endpoint.
        endpoint: &'a str,
        /// Batches done.
        done: usize,
        /// Batches in the job.
        total: usize,
    },
    /// A request to `endpoint` failed; its batch goes back to the queue.
    Failed {
        /// The endpoint.
        endpoint: &'a str,
        /// Why.
        error: &'a str,
    },
}

#[derive(Serialize)]
struct ComputeRequest<'a> {
    data_url: &'a str,
    instructions: &'a [Instruction],
}

#[derive(Deserialize)]
struct ComputeAnswer {
    results: Vec<Output>,
    #[serde(default)]
    timing: Option<Timing>,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Deserialize)]
struct Timing {
    elapsed_ms: f64,
}

/// The client jobs use: any address but link-local and the like (the
/// endpoints are the user's own choice), no cross-origin redirects.
pub fn endpoint_client() -> Client {
    Client::with_timeouts(Allowlist::any(), Timeouts { connect: Duration::from_secs(10), io: Duration::from_secs(300) })
}

/// Sends `program` over `data_url` to one endpoint's `POST /compute`.
fn post_compute(
    client: &Client,
    ep: &Endpoint,
    data_url: &str,
    program: &[Instruction],
) -> RemoteResult<ComputeAnswer> {
    let url = HttpUrl::parse(&ep.url)?.with_path("/compute");
    let body = serde_json::to_vec(&ComputeRequest { data_url, instructions: program })
        .map_err(|e| RemoteError::Protocol(e.to_string()))?;
    let auth = ep.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let answer: ComputeAnswer =
        client.request("POST", &url, &headers, &body)?.success(&format!("endpoint {}", ep.name))?.json(256 << 20)?;
    let fits = answer.results.len() == program.len()
        && answer
            .results
            .iter()
            .zip(program)
            .all(|(o, i)| o.op == i.op && o.offset == i.offset && o.length == i.length);
    if !fits {
        return Err(RemoteError::Protocol(format!("endpoint {}: the results do not match the windows sent", ep.name)));
    }
    Ok(answer)
}

/// The size of the data behind `data_url`, as the first endpoint that
/// answers sees it (an empty program).
pub fn remote_size(endpoints: &[Endpoint], data_url: &str) -> RemoteResult<u64> {
    let client = endpoint_client();
    let mut last = None;
    for ep in endpoints {
        match post_compute(&client, ep, data_url, &[]) {
            Ok(a) => {
                return a.size.ok_or_else(|| {
                    RemoteError::Protocol(format!("endpoint {} does not report sizes; upgrade it", ep.name))
                })
            }
            Err(e) if matches!(e, RemoteError::Origin { status: 400, .. }) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| RemoteError::Config("no endpoint given".into())))
}

/// Measures an endpoint: the median of five `GET /health` round trips, and
/// the end-to-end rate of one compute request — a counteq over up to 256 MiB
/// of `data_url` when given, else the best of three of the server's own
/// `GET /probe` (a counteq over a 32 MiB buffer in its memory).
pub fn probe(ep: &Endpoint, data_url: Option<&str>) -> RemoteResult<crate::endpoints::Probe> {
    let client = endpoint_client();
    let base = HttpUrl::parse(&ep.url)?;
    let auth = ep.token.as_ref().map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let mut rtts = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        client.request("GET", &base.with_path("/health"), &headers, b"")?.success("health")?.read_body(1 << 20)?;
        rtts.push(t.elapsed().as_secs_f64());
    }
    rtts.sort_by(f64::total_cmp);
    let (bytes, secs) = match data_url {
        Some(url) => {
            let size = remote_size(std::slice::from_ref(ep), url)?;
            let n = size.min(256 << 20);
            let t = Instant::now();
            post_compute(&client, ep, url, &[Instruction::new(magicfs_compute::Op::Counteq, Some(0), 0, n)])?;
            (n, t.elapsed().as_secs_f64())
        }
        None => {
            // Best of three: the first also fills the server's probe buffer.
            let mut best = (0, f64::MAX);
            for _ in 0..3 {
                let t = Instant::now();
                let v: serde_json::Value =
                    client.request("GET", &base.with_path("/probe"), &headers, b"")?.success("probe")?.json(1 << 20)?;
                let bytes =
                    v["bytes"].as_u64().ok_or_else(|| RemoteError::Protocol("the probe answer has no bytes".into()))?;
                let secs = t.elapsed().as_secs_f64();
                if secs < best.1 {
                    best = (bytes, secs);
                }
            }
            best
        }
    };
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Ok(crate::endpoints::Probe { latency_ms: rtts[2] * 1e3, throughput_bps: bytes as f64 / secs.max(1e-9), at })
}

/// Cuts a program into consecutive batches (index ranges).
fn batches(program: &[Instruction], opts: JobOptions) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, ins) in program.iter().enumerate() {
        if i > start && (bytes + ins.length > opts.batch_bytes || i - start >= opts.batch_windows.max(1)) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += ins.length;
    }
    if start < program.len() {
        out.push(start..program.len());
    }
    out
}

/// Shared state of a running job.
struct State {
    queues: Vec<VecDeque<usize>>,
    retry: VecDeque<usize>,
    results: Vec<Option<Vec<Output>>>,
    remaining: usize,
    inflight: usize,
    alive: Vec<bool>,
    exhausted: Vec<bool>,
    strikes: Vec<u32>,
    budget: Vec<(Option<u64>, Option<u64>)>,
    fatal: Option<RemoteError>,
    reports: Vec<EndpointReport>,
    retried: u64,
    done: usize,
}

impl State {
    /// Stops the job when no endpoint can take work any more.
    fn check_stuck(&mut self) {
        if self.remaining == 0 || self.fatal.is_some() {
            return;
        }
        let usable = (0..self.alive.len()).any(|t| self.alive[t] && !self.exhausted[t]);
        if usable || self.inflight > 0 {
            return;
        }
        let detail: Vec<String> = self
            .reports
            .iter()
            .zip(&self.exhausted)
            .map(|(r, ex)| {
                if *ex {
                    format!("{}: daily budget used up", r.name)
                } else {
                    format!("{}: {}", r.name, r.last_error.as_deref().unwrap_or("failed"))
                }
            })
            .collect();
        let all_budget =
            self.exhausted.iter().zip(&self.alive).all(|(ex, al)| *ex || !*al) && self.exhausted.iter().any(|e| *e);
        self.fatal = Some(if all_budget {
            RemoteError::Config(format!(
                "{} batches left but no endpoint may take them ({}); raise budgets with `magicfs endpoints add NAME URL --budget-requests N --budget-bytes N`, add endpoints, or wait for tomorrow (UTC)",
                self.remaining,
                detail.join("; ")
            ))
        } else {
            RemoteError::Connect(format!("every endpoint failed ({})", detail.join("; ")))
        });
    }
}

/// Runs `program` over `data_url` on `endpoints` (see the module docs).
pub fn run_job(
    endpoints: &[Endpoint],
    data_url: &str,
    program: &[Instruction],
    opts: JobOptions,
    progress: &(dyn Fn(Event<'_>) + Sync),
) -> RemoteResult<JobReport> {
    let started = Instant::now();
    if endpoints.is_empty() {
        return Err(RemoteError::Config("no endpoint given".into()));
    }
    let cuts = batches(program, opts);
    let sizes: Vec<u64> = cuts.iter().map(|r| program[r.clone()].iter().map(|i| i.length).sum()).collect();
    // Deal batches in proportion to measured throughput.
    let measured: Vec<f64> =
        endpoints.iter().filter_map(|e| e.probe.as_ref().map(|p| p.throughput_bps)).filter(|t| *t > 0.0).collect();
    let fallback = if measured.is_empty() { 1.0 } else { measured.iter().sum::<f64>() / measured.len() as f64 };
    let weights: Vec<f64> = endpoints
        .iter()
        .map(|e| e.probe.as_ref().map(|p| p.throughput_bps).filter(|t| *t > 0.0).unwrap_or(fallback))
        .collect();
    let mut queues = vec![VecDeque::new(); endpoints.len()];
    let mut dealt = vec![0f64; endpoints.len()];
    // Every endpoint gets one batch first (when there are enough), so a job
    // split over several endpoints uses them all whatever the probes said.
    let seed_each = sizes.len() >= endpoints.len();
    for (b, &size) in sizes.iter().enumerate() {
        let cost = size.max(1) as f64;
        let t = if seed_each && b < endpoints.len() {
            b
        } else {
            (0..endpoints.len())
                .min_by(|&x, &y| ((dealt[x] + cost) / weights[x]).total_cmp(&((dealt[y] + cost) / weights[y])))
                .unwrap_or(0)
        };
        dealt[t] += cost;
        queues[t].push_back(b);
    }
    let state = Mutex::new(State {
        queues,
        retry: VecDeque::new(),
        results: vec![None; cuts.len()],
        remaining: cuts.len(),
        inflight: 0,
        alive: vec![true; endpoints.len()],
        exhausted: vec![false; endpoints.len()],
        strikes: vec![0; endpoints.len()],
        budget: endpoints.iter().map(Endpoint::remaining).collect(),
        fatal: None,
        reports: endpoints.iter().map(|e| EndpointReport { name: e.name.clone(), ..Default::default() }).collect(),
        retried: 0,
        done: 0,
    });
    let cv = Condvar::new();
    let client = endpoint_client();
    std::thread::scope(|s| {
        for (t, ep) in endpoints.iter().enumerate() {
            for _ in 0..ep.concurrency.max(1) {
                let (state, cv, client, cuts, sizes) = (&state, &cv, &client, &cuts, &sizes);
                s.spawn(move || {
                    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
                    loop {
                        // Take a batch.
                        let mut g = lock();
                        let b = loop {
                            if g.fatal.is_some() || g.remaining == 0 || !g.alive[t] || g.exhausted[t] {
                                return;
                            }
                            let pick = g.retry.pop_front().or_else(|| g.queues[t].pop_front()).or_else(|| {
                                // A live endpoint keeps its last batch.
                                let victim = (0..g.queues.len())
                                    .filter(|&u| u != t)
                                    .filter(|&u| !g.alive[u] || g.exhausted[u] || g.queues[u].len() > 1)
                                    .max_by_key(|&u| (!g.alive[u] || g.exhausted[u], g.queues[u].len()))?;
                                g.queues[victim].pop_back()
                            });
                            match pick {
                                Some(b) => {
                                    let (req_left, bytes_left) = g.budget[t];
                                    let fits =
                                        req_left.is_none_or(|r| r >= 1) && bytes_left.is_none_or(|x| x >= sizes[b]);
                                    if !fits {
                                        g.retry.push_front(b);
                                        g.exhausted[t] = true;
                                        g.check_stuck();
                                        cv.notify_all();
                                        return;
                                    }
                                    g.budget[t] = (req_left.map(|r| r - 1), bytes_left.map(|x| x - sizes[b]));
                                    g.reports[t].requests += 1;
                                    g.reports[t].charged_bytes += sizes[b];
                                    g.inflight += 1;
                                    break b;
                                }
                                None if g.inflight > 0 => {
                                    g = cv.wait(g).unwrap_or_else(PoisonError::into_inner);
                                }
                                None => return,
                            }
                        };
                        drop(g);
                        let result = post_compute(client, ep, data_url, &program[cuts[b].clone()]);
                        let mut g = lock();
                        g.inflight -= 1;
                        match result {
                            Ok(answer) => {
                                let r = &mut g.reports[t];
                                r.batches += 1;
                                r.windows += cuts[b].len() as u64;
                                r.bytes += sizes[b];
                                r.server_secs += answer.timing.map_or(0.0, |t| t.elapsed_ms / 1e3);
                                g.strikes[t] = 0;
                                if g.results[b].is_none() {
                                    g.results[b] = Some(answer.results);
                                    g.remaining -= 1;
                                    g.done += 1;
                                }
                                let (done, total) = (g.done, cuts.len());
                                drop(g);
                                progress(Event::BatchDone { endpoint: &ep.name, done, total });
                                g = lock();
                            }
                            Err(e)
                                if matches!(e, RemoteError::Origin { status: 400 | 413, .. })
                                    || matches!(e, RemoteError::Compute(_)) =>
                            {
                                g.fatal.get_or_insert(e);
                            }
                            Err(e) => {
                                let msg = e.to_string();
                                g.reports[t].failures += 1;
                                g.reports[t].last_error = Some(msg.clone());
                                g.strikes[t] += 1;
                                if g.strikes[t] >= 2 || !e.is_transient() {
                                    g.alive[t] = false;
                                }
                                g.retry.push_back(b);
                                g.retried += 1;
                                drop(g);
                                progress(Event::Failed { endpoint: &ep.name, error: &msg });
                                std::thread::sleep(Duration::from_millis(50));
                                g = lock();
                            }
                        }
                        g.check_stuck();
                        cv.notify_all();
                    }
                });
            }
        }
    });
    let st = state.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(e) = st.fatal {
        return Err(e);
    }
    if st.remaining > 0 {
        return Err(RemoteError::Connect(format!("{} batches were left undone", st.remaining)));
    }
    let results = st.results.into_iter().flatten().flatten().collect();
    Ok(JobReport { results, endpoints: st.reports, retried: st.retried, elapsed: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use magicfs_compute::Op;

    #[test]
    fn batches_keep_order_and_limits() {
        let program: Vec<_> = (0..10).map(|k| Instruction::new(Op::Add, None, k * 100, 100)).collect();
        let cuts = batches(&program, JobOptions { batch_bytes: 250, batch_windows: 100 });
        assert_eq!(cuts, vec![0..2, 2..4, 4..6, 6..8, 8..10]);
        let cuts = batches(&program, JobOptions { batch_bytes: 1 << 30, batch_windows: 3 });
        assert_eq!(cuts, vec![0..3, 3..6, 6..9, 9..10]);
        let big = [Instruction::new(Op::Add, None, 0, 1000)];
        assert_eq!(batches(&big, JobOptions { batch_bytes: 10, batch_windows: 10 }), vec![0..1]);
        assert!(batches(&[], JobOptions::default()).is_empty());
    }
}
