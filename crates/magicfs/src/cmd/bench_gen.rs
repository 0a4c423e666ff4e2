//! `magicfs bench-gen`: what people get out of generated files, tree plans
//! and chat sessions, measured over the prompt set in `bench/gen-prompts.json`
//! and shown side by side:
//!
//! - MagicFS with the in-process model, through a real mount (files read
//!   from `files/NN/`, trees from `user.magic.generate`, conversations in
//!   `sessions/`);
//! - MagicFS with the OpenAI-compatible backend against llama-cpp-python's
//!   server, through a real mount: a plugged-in model gets the same
//!   grammars, validation and retries;
//! - the same server asked directly with the same messages and its own
//!   default sampling (no grammar, no retries, no loop detector): the baseline.
//!
//! Figures: validity per type (the checks of `magicfs_gen::validate`:
//! parsers, `python3`, `bash -n`), outputs ending in a repeated span,
//! relevance (each output closer, by MiniLM cosine, to its own prompt than
//! to every other prompt), tree plans meeting their request (at least as
//! many files as parts named, every part there), recall of a fact given two
//! turns earlier, first-byte latency of chat replies and generation speed.

use crate::cli::BenchGenArgs;
use anyhow::{anyhow, bail, Context};
use magicfs_core::{Ctx, Fs, FsConfig};
use magicfs_gen::format::{self, Format};
use magicfs_gen::{llm, plan, tree, validate};
use magicfs_llm::{find_loop, ChatMessage, GenParams, LlmBackend, LlmConfig, OpenAiBackend, Role};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The prompt set in the repository.
const PROMPTS: &str = include_str!("../../../../bench/gen-prompts.json");
/// Token limit of a tree plan (as the generation engine uses).
const TREE_TOKENS: u32 = 1024;

#[derive(Deserialize)]
struct PromptSet {
    files: Vec<FileCase>,
    trees: Vec<TreeCase>,
    conversations: Vec<Conversation>,
}

#[derive(Deserialize, Clone)]
struct FileCase {
    path: String,
    prompt: String,
}

#[derive(Deserialize, Clone)]
struct TreeCase {
    prompt: String,
}

#[derive(Deserialize, Clone)]
struct Conversation {
    turns: Vec<String>,
    expect: String,
}

#[derive(Serialize, Default, Clone)]
struct FileOut {
    path: String,
    format: &'static str,
    text: String,
    valid: bool,
    reason: String,
    looped: bool,
    attempt: u32,
    ms: f64,
}

#[derive(Serialize, Default, Clone)]
struct TreeOut {
    prompt: String,
    wanted: usize,
    files: Vec<String>,
    met: bool,
    /// Met by the model's own plan (no parts added after the last attempt).
    by_model: bool,
    reason: String,
}

#[derive(Serialize, Default, Clone)]
struct ChatOut {
    expect: String,
    replies: Vec<String>,
    recalled: bool,
}

#[derive(Serialize, Default)]
struct Side {
    name: String,
    files: Vec<FileOut>,
    trees: Vec<TreeOut>,
    chats: Vec<ChatOut>,
    first_byte_ms: Vec<f64>,
    tokens_per_second: Vec<f64>,
    relevance: Vec<bool>,
    /// `.magic/status` generation counters at the end (MagicFS sides).
    status: Value,
    seconds: f64,
}

pub fn run(a: BenchGenArgs) -> anyhow::Result<i32> {
    let set: PromptSet = match &a.prompts {
        Some(p) => {
            serde_json::from_str::<PromptSet>(&std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?)?
        }
        None => serde_json::from_str::<PromptSet>(PROMPTS)?,
    }
    .limited(&a);
    let cfg = a.llm.config()?;
    if !cfg.model_path.is_file() {
        bail!("{} is missing: run scripts/models.sh (or pass --model-path)", cfg.model_path.display());
    }
    let sides: Vec<&str> = a.sides.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    for s in &sides {
        if !["inprocess", "openai", "server"].contains(s) {
            bail!("--sides: unknown side {s:?} (inprocess, openai, server)");
        }
    }
    let server = if sides.iter().any(|s| *s != "inprocess") { Some(Server::start(&a, &cfg)?) } else { None };
    let mut results = Vec::new();
    for s in &sides {
        eprintln!("bench-gen: {s}");
        let started = Instant::now();
        let mut side = match *s {
            "inprocess" => magicfs_side("MagicFS, llama.cpp in process", &a, &cfg, &set, None)?,
            "openai" => magicfs_side(
                "MagicFS, OpenAI backend → llama-cpp-python",
                &a,
                &cfg,
                &set,
                server.as_ref().map(|s| s.url.as_str()),
            )?,
            _ => server_side(&a, &cfg, &set, server.as_ref().map(|s| s.url.as_str()).unwrap_or_default())?,
        };
        side.seconds = started.elapsed().as_secs_f64();
        results.push(side);
    }
    relevance(&a, &set, &mut results)?;
    report(&set, &results);
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_vec_pretty(&results)?)?;
        eprintln!("bench-gen: every output in {}", out.display());
    }
    Ok(0)
}

impl PromptSet {
    fn limited(mut self, a: &BenchGenArgs) -> PromptSet {
        if let Some(n) = a.files {
            // Keep the mix of types: take every k-th file.
            let step = (self.files.len() / n.max(1)).max(1);
            self.files = self.files.into_iter().step_by(step).take(n).collect();
        }
        if let Some(n) = a.trees {
            self.trees.truncate(n);
        }
        if let Some(n) = a.conversations {
            self.conversations.truncate(n);
        }
        self
    }
}

/// llama-cpp-python's OpenAI-compatible server with the same model, on a free port.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(a: &BenchGenArgs, cfg: &LlmConfig) -> anyhow::Result<Server> {
        let python = a.server_python.clone().unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/magicfs/llm-server-venv/bin/python")
        });
        if !python.exists() {
            bail!("{} is missing: run scripts/llm-server.sh (builds llama-cpp-python's server once)", python.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&python)
            .args(["-m", "llama_cpp.server", "--host", "127.0.0.1", "--verbose", "false", "--model_alias", "smollm2"])
            .args(["--port", &port.to_string(), "--n_ctx", &cfg.ctx.to_string()])
            .args(["--n_threads", &cfg.threads.to_string()])
            .arg("--model")
            .arg(&cfg.model_path)
            // The server loads its own llama.cpp, not one a `cargo run` put on the library path.
            .env_remove("LD_LIBRARY_PATH")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start llama-cpp-python's server")?;
        let mut s = Server { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = c.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = c.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return Ok(s);
                }
            }
            if let Some(st) = s.child.try_wait()? {
                bail!("llama-cpp-python's server exited: {st}");
            }
            if Instant::now() > deadline {
                bail!("llama-cpp-python's server did not come up within 180 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `magicfs mount` of an in-memory store, run by this same binary.
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Daemon {
    fn start(extra: &[String]) -> anyhow::Result<Daemon> {
        let tmp = tempfile::Builder::new().prefix("magicfs-bench-gen-").tempdir()?;
        let dir = tmp.path().join("m");
        std::fs::create_dir(&dir)?;
        let child = Command::new(std::env::current_exe()?)
            .arg("mount")
            .arg(&dir)
            .args(["--memory", "--no-search"])
            .args(extra)
            .env("MAGICFS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        let mut d = Daemon { child: Some(child), dir, _tmp: tmp };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !super::mount::is_magicfs_mount(&d.dir) {
            if let Some(c) = d.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!("the bench mount exited: {st}");
                }
            }
            if Instant::now() > deadline {
                bail!("the bench mount did not come up");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Wait for the model.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let st = d.status()?;
            match st["chat"]["backend"]["state"].as_str() {
                Some("ready") => return Ok(d),
                Some("failed") => bail!("the model failed to load: {}", st["chat"]["backend"]),
                _ if Instant::now() > deadline => bail!("the model did not load within 600 s"),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn status(&self) -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(self.dir.join(".magic/status"))?)?)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

fn xattr(p: &Path, name: &str) -> Option<String> {
    let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::getxattr(path.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| String::from_utf8_lossy(&buf[..r as usize]).into_owned())
}

fn set_xattr(p: &Path, name: &str, value: &str) -> anyhow::Result<()> {
    let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())?;
    let n = std::ffi::CString::new(name)?;
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::setxattr(path.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r != 0 {
        return Err(anyhow!("setxattr {name} on {}: {}", p.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Tokens per second of the last request, from `.magic/status`.
fn last_speed(st: &Value) -> Option<f64> {
    let r = &st["chat"]["backend"]["detail"]["last_request"];
    if let Some(t) = r["tokens_per_second"].as_f64() {
        return (t > 0.0).then_some(t);
    }
    let (n, secs, first) = (r["completion_tokens"].as_f64()?, r["seconds"].as_f64()?, r["first_piece_ms"].as_f64()?);
    let span = secs - first / 1000.0;
    (n > 1.0 && span > 0.0).then(|| (n - 1.0) / span)
}

fn magicfs_side(
    name: &str,
    a: &BenchGenArgs,
    cfg: &LlmConfig,
    set: &PromptSet,
    url: Option<&str>,
) -> anyhow::Result<Side> {
    let mut args = vec![
        "--gen-max-tokens".to_string(),
        a.gen_max_tokens.to_string(),
        "--max-tokens".into(),
        a.chat_max_tokens.to_string(),
        "--n-ctx".into(),
        cfg.ctx.to_string(),
        "--llm-workers".into(),
        "1".into(),
    ];
    match url {
        Some(u) => args.extend(["--llm-url".into(), u.into(), "--llm-model".into(), "smollm2".into()]),
        None => {
            args.extend(["--model-path".into(), cfg.model_path.display().to_string()]);
            args.extend(["--llm-threads".into(), cfg.threads.to_string()]);
        }
    }
    for s in &a.llm.sampling {
        args.extend(["--sampling".into(), s.clone()]);
    }
    let d = Daemon::start(&args)?;
    let mut side = Side { name: name.into(), ..Side::default() };
    for (i, f) in set.files.iter().enumerate() {
        let dir = d.dir.join(format!("files/{i:02}"));
        std::fs::create_dir_all(&dir)?;
        let p = dir.join(&f.path);
        std::fs::write(&p, b"")?;
        set_xattr(&p, "user.magic.prompt", &f.prompt)?;
        let fmt = format::detect(&f.path, &f.prompt);
        let t = Instant::now();
        let read = std::fs::read_to_string(&p);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let out = match read {
            Ok(text) => {
                let checked = validate::validate(fmt, format::shape(fmt, &f.prompt), &text);
                FileOut {
                    path: f.path.clone(),
                    format: fmt.name(),
                    looped: find_loop(&text).is_some(),
                    valid: checked.is_ok(),
                    reason: checked.err().unwrap_or_default(),
                    attempt: xattr(&p, "user.magic.provenance.attempt").and_then(|v| v.parse().ok()).unwrap_or(0),
                    text,
                    ms,
                }
            }
            Err(e) => FileOut {
                path: f.path.clone(),
                format: fmt.name(),
                reason: xattr(&p, "user.magic.error").unwrap_or_else(|| e.to_string()),
                ms,
                ..FileOut::default()
            },
        };
        if let Some(t) = last_speed(&d.status()?) {
            side.tokens_per_second.push(t);
        }
        eprintln!("  {:>2} {:<22} {} {:.1} s", i, f.path, if out.valid { "valid" } else { "INVALID" }, ms / 1000.0);
        side.files.push(out);
    }
    for (i, t) in set.trees.iter().enumerate() {
        let dir = d.dir.join(format!("trees/{i:02}"));
        std::fs::create_dir_all(&dir)?;
        let before = d.status()?["generation"]["trees_completed"].as_u64().unwrap_or(0);
        let want = tree::requested(&t.prompt);
        let r = set_xattr(&dir, "user.magic.generate", &t.prompt);
        let completed = d.status()?["generation"]["trees_completed"].as_u64().unwrap_or(0) > before;
        let mut out = TreeOut { prompt: t.prompt.clone(), wanted: want.count, ..TreeOut::default() };
        match r {
            Ok(()) => {
                out.files = walk_files(&dir, &dir);
                let planned: Vec<tree::PlannedFile> = out
                    .files
                    .iter()
                    .map(|p| tree::PlannedFile { path: p.clone(), description: String::new() })
                    .collect();
                let checked = tree::check(&planned, &want);
                out.met = checked.is_ok();
                out.by_model = out.met && !completed;
                out.reason = checked.err().unwrap_or_default();
            }
            Err(e) => out.reason = xattr(&dir, "user.magic.error").unwrap_or_else(|| e.to_string()),
        }
        eprintln!("  tree {i:>2}: {} files, {}", out.files.len(), if out.met { "met" } else { "NOT met" });
        side.trees.push(out);
    }
    for (i, c) in set.conversations.iter().enumerate() {
        let p = d.dir.join(format!("sessions/c{i:02}"));
        let sentinel = d.dir.join(format!("sessions/.generating.c{i:02}"));
        let mut out = ChatOut { expect: c.expect.clone(), ..ChatOut::default() };
        for turn in &c.turns {
            let before = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            let line = format!("User: {turn}\n");
            {
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p)?;
                f.write_all(line.as_bytes())?;
            }
            let closed = Instant::now();
            let need = before + line.len() as u64;
            let deadline = closed + Duration::from_secs(600);
            while std::fs::metadata(&p)?.len() <= need {
                if Instant::now() > deadline {
                    bail!("no reply in {} within 600 s", p.display());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            side.first_byte_ms.push(closed.elapsed().as_secs_f64() * 1000.0);
            while sentinel.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
            let transcript = std::fs::read(&p)?;
            let turns = magicfs_chat::transcript::parse(&transcript).map_err(|e| anyhow!("{e}"))?;
            let reply = turns.last().map(|t| t.text.clone()).unwrap_or_default();
            out.replies.push(reply);
            if let Some(t) = last_speed(&d.status()?) {
                side.tokens_per_second.push(t);
            }
        }
        out.recalled = out.replies.last().is_some_and(|r| r.to_lowercase().contains(&c.expect.to_lowercase()));
        eprintln!("  chat {i:>2}: {}", if out.recalled { "recalled" } else { "forgot" });
        side.chats.push(out);
    }
    let st = d.status()?;
    side.status = json!({
        "validation": st["generation"]["validation"],
        "retries": st["generation"]["retries"],
        "loops_cut": st["generation"]["loops_cut"],
        "chat_loops_cut": st["chat"]["loops_cut"],
        "trees_completed": st["generation"]["trees_completed"],
        "failed": st["generation"]["failed"],
    });
    Ok(side)
}

fn walk_files(root: &Path, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(root, &p));
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.display().to_string());
        }
    }
    out
}

/// One request to the server with its own sampling; returns the text, the
/// time to the first piece and the pieces per second after it.
fn ask(b: &OpenAiBackend, messages: &[ChatMessage], max_tokens: u32) -> anyhow::Result<(String, f64, Option<f64>)> {
    let params = GenParams { max_tokens, server_sampling: true, ..GenParams::default() };
    let t = Instant::now();
    let mut first = None;
    let mut pieces = 0u32;
    let done = b
        .chat(messages, &params, &mut |_| {
            first.get_or_insert_with(Instant::now);
            pieces += 1;
            ControlFlow::Continue(())
        })
        .map_err(|e| anyhow!("{e}"))?;
    let end = Instant::now();
    let first_ms = first.map(|f| (f - t).as_secs_f64() * 1000.0).unwrap_or(0.0);
    let tps = first.and_then(|f| {
        let span = (end - f).as_secs_f64();
        (pieces > 1 && span > 0.0).then(|| (pieces - 1) as f64 / span)
    });
    Ok((done.text, first_ms, tps))
}

fn server_side(a: &BenchGenArgs, cfg: &LlmConfig, set: &PromptSet, url: &str) -> anyhow::Result<Side> {
    let b = OpenAiBackend::new(&LlmConfig { url: Some(url.into()), model: Some("smollm2".into()), ..cfg.clone() })
        .map_err(|e| anyhow!("{e}"))?;
    let mut side = Side { name: "llama-cpp-python server, its default sampling".into(), ..Side::default() };
    // The same requests MagicFS builds: the same directory layout in a scratch store.
    let fs = Fs::memory(FsConfig::default());
    let me = Ctx { uid: 0, gid: 0 };
    for (i, f) in set.files.iter().enumerate() {
        let files = match fs.lookup(magicfs_types::ROOT_INO, b"files") {
            Ok(d) => d.ino,
            Err(_) => fs.mkdir(magicfs_types::ROOT_INO, b"files", 0o755, me).map_err(|e| anyhow!("{e:?}"))?.ino,
        };
        let dir = fs.mkdir(files, format!("{i:02}").as_bytes(), 0o755, me).map_err(|e| anyhow!("{e:?}"))?.ino;
        let (attr, fh) = fs.create(dir, f.path.as_bytes(), 0o644, libc::O_RDWR, me).map_err(|e| anyhow!("{e:?}"))?;
        fs.release(fh).map_err(|e| anyhow!("{e:?}"))?;
        fs.setxattr(attr.ino, b"user.magic.prompt", f.prompt.as_bytes(), 0).map_err(|e| anyhow!("{e:?}"))?;
        let p = plan::plan(&fs, attr.ino, false).map_err(|e| anyhow!("{e:?}"))?.context("no plan")?;
        let req = plan::request(&fs, &p).map_err(|e| anyhow!("{e:?}"))?;
        let fmt = format::detect(&f.path, &f.prompt);
        let t = Instant::now();
        let (text, _, tps) = ask(&b, &llm::file_messages(&req), a.gen_max_tokens)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        side.tokens_per_second.extend(tps);
        let text = llm::clean_answer(&text, fmt);
        let checked = validate::validate(fmt, format::shape(fmt, &f.prompt), &text);
        eprintln!(
            "  {:>2} {:<22} {} {:.1} s",
            i,
            f.path,
            if checked.is_ok() { "valid" } else { "INVALID" },
            ms / 1000.0
        );
        side.files.push(FileOut {
            path: f.path.clone(),
            format: fmt.name(),
            looped: find_loop(&text).is_some(),
            valid: checked.is_ok(),
            reason: checked.err().unwrap_or_default(),
            attempt: 1,
            text,
            ms,
        });
    }
    for t in &set.trees {
        let want = tree::requested(&t.prompt);
        let (text, _, tps) = ask(&b, &tree::messages(&t.prompt, &want), TREE_TOKENS)?;
        side.tokens_per_second.extend(tps);
        let json = llm::clean_answer(&text, Format::Json);
        let mut out = TreeOut { prompt: t.prompt.clone(), wanted: want.count, ..TreeOut::default() };
        match tree::parse(&json) {
            Ok(files) => {
                out.files = files.iter().map(|f| f.path.clone()).collect();
                let checked = tree::check(&files, &want);
                out.met = checked.is_ok();
                out.by_model = out.met;
                out.reason = checked.err().unwrap_or_default();
            }
            Err(e) => out.reason = e.to_string(),
        }
        side.trees.push(out);
    }
    for c in &set.conversations {
        let mut messages = Vec::new();
        let mut out = ChatOut { expect: c.expect.clone(), ..ChatOut::default() };
        for turn in &c.turns {
            messages.push(ChatMessage { role: Role::User, content: turn.clone() });
            let (text, first_ms, tps) = ask(&b, &messages, a.chat_max_tokens)?;
            side.first_byte_ms.push(first_ms);
            side.tokens_per_second.extend(tps);
            let reply = text.trim().to_string();
            messages.push(ChatMessage { role: Role::Assistant, content: reply.clone() });
            out.replies.push(reply);
        }
        out.recalled = out.replies.last().is_some_and(|r| r.to_lowercase().contains(&c.expect.to_lowercase()));
        side.chats.push(out);
    }
    Ok(side)
}

/// For every side: is each output closer to its own prompt than to every other prompt?
fn relevance(a: &BenchGenArgs, set: &PromptSet, sides: &mut [Side]) -> anyhow::Result<()> {
    let model_dir = a.models.as_ref().map(|m| m.join("minilm")).unwrap_or_else(magicfs_embed::default_model_dir);
    let emb = magicfs_embed::Embedder::load(&model_dir).map_err(|e| anyhow!("{e} (run scripts/models.sh)"))?;
    let prompts: Vec<&str> = set.files.iter().map(|f| f.prompt.as_str()).collect();
    let pv = emb.embed(&prompts, 2);
    let cos = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
    for side in sides {
        let texts: Vec<&str> = side.files.iter().map(|f| f.text.as_str()).collect();
        let ov = emb.embed(&texts, 2);
        side.relevance = ov
            .iter()
            .enumerate()
            .map(|(i, o)| {
                if texts[i].trim().is_empty() {
                    return false;
                }
                let own = cos(o, &pv[i]);
                pv.iter().enumerate().all(|(j, p)| j == i || cos(o, p) < own)
            })
            .collect();
    }
    Ok(())
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        return "–".into();
    }
    format!("{n}/{d} ({:.0} %)", 100.0 * n as f64 / d as f64)
}

fn median(v: &[f64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    format!("{:.0}", v[v.len() / 2])
}

fn report(set: &PromptSet, sides: &[Side]) {
    let mut head = "| measure |".to_string();
    let mut rule = "|---|".to_string();
    for s in sides {
        head += &format!(" {} |", s.name);
        rule += "---:|";
    }
    println!("{head}\n{rule}");
    let row = |label: &str, f: &dyn Fn(&Side) -> String| {
        let mut line = format!("| {label} |");
        for s in sides {
            line += &format!(" {} |", f(s));
        }
        println!("{line}");
    };
    for fmt in Format::ALL {
        let n = set.files.iter().filter(|f| format::detect(&f.path, &f.prompt) == fmt).count();
        if n == 0 {
            continue;
        }
        row(&format!("valid {}", fmt.name()), &|s| {
            let of: Vec<&FileOut> = s.files.iter().filter(|f| f.format == fmt.name()).collect();
            pct(of.iter().filter(|f| f.valid).count(), of.len())
        });
    }
    row("valid, all files", &|s| pct(s.files.iter().filter(|f| f.valid).count(), s.files.len()));
    row("outputs ending in a repeated span (files + replies)", &|s| {
        let files = s.files.iter().filter(|f| f.looped).count();
        let replies = s.chats.iter().flat_map(|c| &c.replies).filter(|r| find_loop(r).is_some()).count();
        let total = s.files.len() + s.chats.iter().map(|c| c.replies.len()).sum::<usize>();
        format!("{} of {total}", files + replies)
    });
    row("relevance: output closest to its own prompt (MiniLM)", &|s| {
        pct(s.relevance.iter().filter(|r| **r).count(), s.relevance.len())
    });
    row("tree plans meeting the request (files ≥ parts named, each part there)", &|s| {
        pct(s.trees.iter().filter(|t| t.met).count(), s.trees.len())
    });
    row("… by the model's own plan (no part added)", &|s| {
        pct(s.trees.iter().filter(|t| t.by_model).count(), s.trees.len())
    });
    row("chat recall of a fact given two turns earlier", &|s| {
        pct(s.chats.iter().filter(|c| c.recalled).count(), s.chats.len())
    });
    row("chat first-byte latency, median (ms)", &|s| median(&s.first_byte_ms));
    row("generation speed, median (tokens/s)", &|s| median(&s.tokens_per_second));
    row("answers asked for again (invalid, empty, describing the file)", &|s| {
        s.status["retries"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "–".into())
    });
    row("wall time of the side (s)", &|s| format!("{:.0}", s.seconds));
}
