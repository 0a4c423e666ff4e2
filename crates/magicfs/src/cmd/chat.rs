//! Chat sessions from the command line: the language-model flags of
//! `magicfs mount`, the `magicfs chat <id>` REPL, and `magicfs bench-chat`.

use crate::cli::{BenchChatArgs, ChatArgs};
use anyhow::{anyhow, bail};
use clap::Args;
use magicfs_chat::{ChatConfig, Sessions};
use magicfs_core::Fs;
use magicfs_llm::{LlmBackend, LlmConfig, ModelState};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Language-model settings of `magicfs mount` (flags override the
/// `MAGICFS_*` environment variables, which override the configuration file
/// and the defaults; the CFS-Local `CFS_*` names are read as the `MAGICFS_*` ones).
#[derive(Args, Debug, Clone, Default)]
pub struct LlmArgs {
    /// GGUF model for the in-process backend
    /// (default: $XDG_CACHE_HOME/magicfs/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long, value_name = "FILE.gguf", env = "MAGICFS_MODEL_PATH")]
    pub model_path: Option<PathBuf>,
    /// Use an OpenAI-compatible server instead (http(s)://host:port[/v1]).
    #[arg(long, value_name = "URL", env = "MAGICFS_LLM_URL")]
    pub llm_url: Option<String>,
    /// Model name sent to the server (default: the first it lists);
    /// the key comes from MAGICFS_LLM_API_KEY or OPENAI_API_KEY.
    #[arg(long, value_name = "NAME", env = "MAGICFS_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// CPU threads of the in-process model (default 1).
    #[arg(long, value_name = "N", env = "MAGICFS_LLM_THREADS")]
    pub llm_threads: Option<u32>,
    /// Context size in tokens (default 4096).
    #[arg(long, value_name = "TOKENS", env = "MAGICFS_N_CTX")]
    pub n_ctx: Option<u32>,
    /// Layers offloaded to a GPU (default 0).
    #[arg(long, value_name = "N", env = "MAGICFS_N_GPU_LAYERS")]
    pub n_gpu_layers: Option<u32>,
    /// Longest reply in tokens (default 512).
    #[arg(long, value_name = "TOKENS", env = "MAGICFS_MAX_TOKENS")]
    pub max_tokens: Option<u32>,
    /// Temperature of chat replies (0 is greedy; same as --sampling chat.temperature=T)
    #[arg(long, env = "MAGICFS_TEMPERATURE")]
    pub temperature: Option<f32>,
    /// A sampling setting, PURPOSE.KEY=VALUE (repeatable): PURPOSE is chat, file, tree or all;
    /// KEY is temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, dry_multiplier,
    /// dry_base, dry_allowed_length, dry_last_n or seed [env: MAGICFS_SAMPLING, comma-separated].
    #[arg(long = "sampling", value_name = "PURPOSE.KEY=VALUE")]
    pub sampling: Vec<String>,
    /// Replies generated at once (default 4; the model takes them in turns).
    #[arg(long, value_name = "N")]
    pub llm_workers: Option<usize>,
    /// Do not answer chat sessions (no model is loaded).
    #[arg(long)]
    pub no_chat: bool,
}

impl LlmArgs {
    /// The environment's settings with these flags on top.
    pub fn config(&self) -> anyhow::Result<LlmConfig> {
        let mut c = LlmConfig::from_env().map_err(|e| anyhow!("{e}"))?;
        if let Some(p) = &self.model_path {
            c.model_path = p.clone();
        }
        if let Some(u) = &self.llm_url {
            c.url = Some(u.clone());
        }
        if let Some(m) = &self.llm_model {
            c.model = Some(m.clone());
        }
        c.threads = self.llm_threads.unwrap_or(c.threads);
        c.ctx = self.n_ctx.unwrap_or(c.ctx);
        c.gpu_layers = self.n_gpu_layers.unwrap_or(c.gpu_layers);
        c.max_tokens = self.max_tokens.unwrap_or(c.max_tokens);
        if let Some(t) = self.temperature {
            c.sampling.chat.set("temperature", &t.to_string()).map_err(|e| anyhow!("--temperature: {e}"))?;
        }
        for spec in &self.sampling {
            c.sampling.set(spec).map_err(|e| anyhow!("--sampling {e}"))?;
        }
        c.check().map_err(|e| crate::exit::usage(e.to_string()))?;
        Ok(c)
    }
}

/// Starts the session engine for a mount over the daemon's shared backend
/// (`None` with `--no-chat`). A backend that could not be opened answers every
/// session with an error turn saying why; the filesystem itself mounts regardless.
pub fn start_sessions_on(
    fs: &Arc<Fs>,
    a: &LlmArgs,
    backend: Arc<dyn LlmBackend>,
) -> anyhow::Result<Option<Arc<Sessions>>> {
    if a.no_chat {
        return Ok(None);
    }
    let cfg = a.config()?;
    let chat = ChatConfig {
        workers: a.llm_workers.unwrap_or(4).max(1),
        max_tokens: cfg.max_tokens,
        sampling: cfg.sampling.chat.clone(),
        history_bytes: cfg.ctx as u64 * 64,
    };
    let sessions = Sessions::new(fs.clone(), backend.clone(), chat);
    sessions.start().map_err(|e| anyhow!("cannot prepare sessions/: {e}"))?;
    report_loading(backend);
    Ok(Some(sessions))
}

/// Shows the model's loading progress (a bar on a terminal, log lines at
/// start and end; `.magic/status` has it too) until it is ready or failed.
fn report_loading(backend: Arc<dyn LlmBackend>) {
    let _ = std::thread::Builder::new().name("magicfs-llm-progress".into()).spawn(move || {
        let started = Instant::now();
        let mut bar = None;
        loop {
            let st = backend.status();
            match st.state {
                ModelState::Loading { progress } => {
                    let bar = bar.get_or_insert_with(|| {
                        tracing::info!("loading model {}", st.model);
                        crate::progress::percent(format!("loading model {}", st.model))
                    });
                    bar.set_position((progress.clamp(0.0, 1.0) * 100.0) as u64);
                }
                ModelState::Ready => {
                    if let Some(b) = bar.take() {
                        b.finish_and_clear();
                    }
                    tracing::info!(
                        "model {} ready ({:.1} s); sessions/ answers",
                        st.model,
                        started.elapsed().as_secs_f64()
                    );
                    return;
                }
                ModelState::Failed { error } => {
                    if let Some(b) = bar.take() {
                        b.abandon();
                    }
                    tracing::warn!("chat sessions will answer with an error turn: {error}");
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

/// The default mount point for client commands (`--mount` and
/// `MAGICFS_MOUNT` come first): `~/magicfs`.
fn default_mount() -> PathBuf {
    magicfs_types::dirs::home().unwrap_or_else(|| PathBuf::from("/")).join("magicfs")
}

/// A session file seen from a client.
struct Client {
    dir: PathBuf,
    id: String,
    path: PathBuf,
    #[cfg_attr(not(feature = "llama"), allow(dead_code))]
    sentinel: PathBuf,
}

impl Client {
    fn new(mount: &Path, id: &str) -> anyhow::Result<Client> {
        magicfs_volume::check_session_id(id).map_err(|e| anyhow!("{e}"))?;
        let dir = mount.join("sessions");
        if !dir.is_dir() {
            bail!(
                "{} has no sessions/ directory: is MagicFS mounted there (with chat enabled)? Use --mount DIR",
                mount.display()
            );
        }
        Ok(Client { path: dir.join(id), sentinel: dir.join(format!(".generating.{id}")), dir, id: id.to_string() })
    }

    fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Appends a User turn and streams the reply to `out` until it is complete.
    fn send(&self, text: &str, out: &mut dyn Write, timeout: Duration) -> anyhow::Result<()> {
        let mut failed = None;
        let mut show = |piece: &str| {
            if failed.is_none() {
                if let Err(e) = out.write_all(piece.as_bytes()).and_then(|()| out.flush()) {
                    failed = Some(e);
                }
            }
        };
        let r = magicfs_volume::send_on_mount(&self.dir, &self.id, text, Instant::now() + timeout, &mut show);
        if let Some(e) = failed {
            return Err(e.into());
        }
        r.map(|_| ()).map_err(|e| anyhow!("{e}"))
    }
}

/// `magicfs chat <id>`: an interactive conversation that streams replies.
pub fn repl(a: ChatArgs) -> anyhow::Result<i32> {
    let mount = a.mount.clone().unwrap_or_else(default_mount);
    let c = Client::new(&mount, &a.id)?;
    let timeout = Duration::from_secs(a.timeout);
    if a.new {
        std::fs::write(&c.path, b"")?;
    }
    if let Some(s) = &a.system {
        if c.size() == 0 {
            std::fs::write(&c.path, format!("System: {s}\n"))?;
        }
    }
    let mut out = std::io::stdout();
    if !a.message.is_empty() {
        for m in &a.message {
            c.send(m, &mut out, timeout)?;
        }
        return Ok(0);
    }
    if c.size() > 0 {
        print!("{}", std::fs::read_to_string(&c.path).unwrap_or_default());
    }
    eprintln!("magicfs chat: session {} ({}); an empty line or Ctrl-D ends", a.id, c.path.display());
    let stdin = std::io::stdin();
    loop {
        eprint!("you> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok(0);
        }
        c.send(&line, &mut out, timeout)?;
    }
}

/// `magicfs bench-chat`: generation speed through a session file against the
/// same model driven directly by llama.cpp, the time from close() to the
/// first reply byte, and the 5th turn against the 1st (KV-cache reuse).
pub fn bench(a: BenchChatArgs) -> anyhow::Result<i32> {
    #[cfg(not(feature = "llama"))]
    {
        let _ = a;
        bail!("this build has no in-process llama.cpp (build with --features llama)")
    }
    #[cfg(feature = "llama")]
    bench_llama(a)
}

#[cfg(feature = "llama")]
fn bench_llama(a: BenchChatArgs) -> anyhow::Result<i32> {
    use anyhow::Context;
    use magicfs_llm::{direct_generate, ChatMessage, Role};
    let mut cfg = a.llm.config()?;
    cfg.sampling.chat.temperature = 0.0;
    cfg.max_tokens = a.tokens;
    if cfg.url.is_some() {
        bail!("bench-chat compares with llama.cpp in process: leave --llm-url out");
    }
    let mount = a.mount.clone();
    let c = Client::new(&mount, "bench")?;
    let status = mount.join(".magic/status");
    let prompt = "Write a short story about a lighthouse keeper and a storm.";
    // Through the filesystem: greedy, same prompt, fresh session.
    let read_last = || -> anyhow::Result<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&status)?)?;
        Ok(v["chat"]["backend"]["detail"]["last_request"].clone())
    };
    let _ = std::fs::remove_file(&c.path);
    std::fs::write(&c.path, b"")?;
    // Greedy with no penalties: the same sampling as the baseline.
    for (k, v) in [
        ("user.magic.temperature", "0".to_string()),
        ("user.magic.repeat_penalty", "1".to_string()),
        ("user.magic.dry_multiplier", "0".to_string()),
        ("user.magic.max_tokens", a.tokens.to_string()),
    ] {
        super::xattr::set(&c.path, k, v.as_bytes()).with_context(|| format!("setxattr {k}"))?;
    }
    let sink = &mut std::io::sink();
    let t = Instant::now();
    c.send(prompt, sink, Duration::from_secs(600))?;
    let first = read_last()?;
    let total_first = t.elapsed().as_secs_f64();
    let fs_tps = first["tokens_per_second"].as_f64().unwrap_or(0.0);
    let fs_tokens = first["completion_tokens"].as_u64().unwrap_or(0);
    // Directly through llama-cpp-2 right after, same model, threads and prompt.
    let messages = [ChatMessage { role: Role::User, content: prompt.into() }];
    let (_, direct_tokens, direct_secs) =
        direct_generate(&cfg, &messages, fs_tokens.max(1) as u32).map_err(|e| anyhow!("{e}"))?;
    let direct_tps = direct_tokens as f64 / direct_secs;
    // close() → first reply byte: a short follow-up, timed from the client.
    let mut latencies = Vec::new();
    let mut turn_times = vec![(
        1,
        total_first,
        first["evaluated_tokens"].as_u64().unwrap_or(0),
        first["prompt_ms"].as_f64().unwrap_or(0.0),
    )];
    for turn in 2..=5 {
        let start = c.size();
        let t = Instant::now();
        {
            let mut f = std::fs::OpenOptions::new().append(true).open(&c.path)?;
            f.write_all(format!("User: Continue the story, part {turn}.\n").as_bytes())?;
        }
        let closed = Instant::now();
        let need = start + format!("User: Continue the story, part {turn}.\n").len() as u64;
        while c.size() <= need {
            std::thread::sleep(Duration::from_millis(1));
            if closed.elapsed() > Duration::from_secs(600) {
                bail!("no reply byte within 600 s");
            }
        }
        latencies.push(closed.elapsed().as_secs_f64() * 1000.0);
        while c.sentinel.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = read_last()?;
        turn_times.push((
            turn,
            t.elapsed().as_secs_f64(),
            r["evaluated_tokens"].as_u64().unwrap_or(0),
            r["prompt_ms"].as_f64().unwrap_or(0.0),
        ));
    }
    let five = read_last()?;
    println!("| measure | through sessions/ | llama.cpp directly | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| generation, tokens/s ({fs_tokens} vs {direct_tokens} tokens, {} thread(s)) | {fs_tps:.1} | {direct_tps:.1} | {:.2}x |",
        cfg.threads,
        fs_tps / direct_tps
    );
    latencies.sort_by(f64::total_cmp);
    println!("| close() → first reply byte, median of 4 turns (ms) | {:.0} | | |", latencies[latencies.len() / 2]);
    let (_, _, e1, p1) = turn_times[0];
    let (_, _, e5, p5) = turn_times[4];
    println!(
        "| prompt tokens evaluated, turn 1 → turn 5 (of {} in turn 5's prompt) | {e1} → {e5} | | |",
        five["prompt_tokens"].as_u64().unwrap_or(0)
    );
    println!("| prompt evaluation, turn 1 → turn 5 (ms) | {p1:.0} → {p5:.0} | | |");
    for (turn, secs, evaluated, prompt_ms) in &turn_times {
        println!("turn {turn}: {secs:.2} s end to end, {evaluated} prompt tokens evaluated in {prompt_ms:.0} ms");
    }
    Ok(0)
}
