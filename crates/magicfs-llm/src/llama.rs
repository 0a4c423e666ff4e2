//! The in-process backend: a GGUF model run by llama.cpp (`llama-cpp-2`).
//!
//! The model loads on a background thread (progress in [`LlmBackend::status`]).
//! One context per model serves requests in turns: requests wait in arrival
//! order, and one that has held the model for a slice ([`SLICE`]) while
//! others wait steps back to the end of the line, so a long prompt or reply
//! never starves another session. A conversation's evaluated tokens stay in
//! the context's KV cache: the next turn (or slice) of the same session
//! evaluates only what follows the longest common prefix. When another
//! request takes the context, the previous one's KV state is copied out
//! (`state_seq_get`) and restored when it comes back; a request keeps its
//! own sampler (penalty history, grammar state, random stream) across slices.
//!
//! llama.cpp's CPU code comes as one library per x86-64 level (ggml dynamic
//! backends); the best one this CPU can run is loaded before the first model
//! (`MAGICFS_LLAMA_CPU=x64` forces a level, e.g. the plain x86-64 one).

use crate::config::models_dir;
use crate::{
    fit_history, BackendStatus, ChatMessage, Completion, FinishReason, GenParams, LlmBackend, LlmConfig, LlmError,
    ModelState, Role, Sampling, Utf8Stream,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use parking_lot::{Condvar, Mutex, MutexGuard};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Largest batch of the context (`n_batch`).
const BATCH: usize = 512;
/// Prompt tokens evaluated between two looks at the request's cancel flag
/// and at the requests waiting their turn.
const EVAL_STEP: usize = 128;
/// KV states of idle sessions kept in memory, at most.
const SAVED_BYTES: usize = 512 << 20;
/// Sessions whose KV state is kept, at most.
const SAVED_SESSIONS: usize = 16;
/// A message longer than this many bytes per context token cannot fit
/// (no tokenizer packs that much into one token); refused before tokenizing.
const MAX_BYTES_PER_TOKEN: usize = 64;
/// Other models (per-session `user.magic.model`) kept loaded, at most.
const MAX_EXTRA_MODELS: usize = 2;
/// How long a request holds the model before stepping back when others wait.
pub const SLICE: Duration = Duration::from_millis(250);
/// Sequence breakers of the DRY sampler (llama.cpp's defaults).
const DRY_BREAKERS: [&str; 4] = ["\n", ":", "\"", "*"];

fn backend() -> Result<&'static LlamaBackend, LlmError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // Before init, which would otherwise load the best level itself.
            load_cpu_library()?;
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("MAGICFS_LLAMA_LOG").is_none() {
                b.void_logs();
            }
            log::info!("llama.cpp CPU library: {}", system_features());
            Ok(b)
        })
        .as_ref()
        .map_err(|e| LlmError::Model(format!("llama.cpp did not initialise: {e}")))
}

/// Directories that may hold the `libggml-cpu-*.so` libraries:
/// `MAGICFS_GGML_BACKENDS`, `../lib/magicfs/backends` beside the
/// executable's directory (where `scripts/install.sh` puts them), the one the
/// build installed them in, then the executable's directory.
pub fn cpu_library_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("MAGICFS_GGML_BACKENDS") {
        dirs.push(PathBuf::from(d));
    }
    let exe_dir = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf));
    if let Some(d) = &exe_dir {
        dirs.push(d.join("../lib/magicfs/backends"));
    }
    if let Some(d) = llama_cpp_sys_2::BACKENDS_DIR {
        dirs.push(PathBuf::from(d));
    }
    dirs.extend(exe_dir);
    dirs
}

/// Loads llama.cpp's CPU code: the library of the best x86-64 level this CPU
/// runs, or the level `MAGICFS_LLAMA_CPU` names (`x64`, `sse42`, `haswell`,
/// `skylakex`, `icelake`, `sapphirerapids`, …).
fn load_cpu_library() -> Result<(), String> {
    use std::ffi::CString;
    let dirs = cpu_library_dirs();
    let has_cpu = |d: &Path| {
        std::fs::read_dir(d)
            .is_ok_and(|mut r| r.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libggml-cpu-"))))
    };
    match std::env::var("MAGICFS_LLAMA_CPU").ok().filter(|v| !v.trim().is_empty()) {
        Some(level) => {
            let name = format!("libggml-cpu-{}.so", level.trim());
            let path = dirs
                .iter()
                .map(|d| d.join(&name))
                .find(|p| p.is_file())
                .ok_or_else(|| format!("MAGICFS_LLAMA_CPU={level}: no {name} in {}", dirs_text(&dirs)))?;
            let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
            // SAFETY: a NUL-terminated path; ggml registers the library it loads.
            let reg = unsafe { llama_cpp_sys_2::ggml_backend_load(c.as_ptr()) };
            if reg.is_null() {
                return Err(format!("{} cannot be loaded on this CPU", path.display()));
            }
        }
        None => {
            let dir = dirs.iter().find(|d| has_cpu(d)).ok_or_else(|| {
                format!("no llama.cpp CPU library (libggml-cpu-*.so) in {}; rebuild MagicFS", dirs_text(&dirs))
            })?;
            let (level, path) = best_level(dir)?;
            let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
            // SAFETY: a NUL-terminated path; ggml registers the library it loads.
            if unsafe { llama_cpp_sys_2::ggml_backend_load(c.as_ptr()) }.is_null() {
                return Err(format!("{} cannot be loaded", path.display()));
            }
            log::info!("llama.cpp CPU level: {level}");
        }
    }
    // SAFETY: plain queries of ggml's backend registry.
    if unsafe { llama_cpp_sys_2::ggml_backend_dev_count() } == 0 {
        return Err(format!("no llama.cpp CPU library could be loaded from {}", dirs_text(&dirs)));
    }
    Ok(())
}

/// The features of the loaded CPU library, from llama.cpp's system information.
fn system_features() -> String {
    // SAFETY: llama.cpp returns a static NUL-terminated string.
    let info = unsafe { std::ffi::CStr::from_ptr(llama_cpp_sys_2::llama_print_system_info()) };
    cpu_features(&info.to_string_lossy())
}

/// Levels chosen only when `MAGICFS_LLAMA_CPU` names them: ggml's AMX
/// matrix kernels stop with SIGILL on some virtual machines that report AMX
/// (measured on the development VM, where plain AMX programs run).
const NAMED_ONLY: [&str; 1] = ["sapphirerapids"];

/// The best level in `dir` this CPU runs: each library's own score
/// (`ggml_backend_score`, 0 when the CPU lacks a feature it needs), as
/// ggml's loader does, without the [`NAMED_ONLY`] levels.
fn best_level(dir: &Path) -> Result<(String, PathBuf), String> {
    let mut best: Option<(i32, String, PathBuf)> = None;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(level) = name.strip_prefix("libggml-cpu-").and_then(|n| n.strip_suffix(".so")) else { continue };
        if NAMED_ONLY.contains(&level) {
            continue;
        }
        let Ok(c) = std::ffi::CString::new(e.path().as_os_str().as_encoded_bytes()) else { continue };
        // SAFETY: dlopen of a ggml CPU library (its initialisers only set up
        // tables), dlsym of its score function with the signature ggml
        // declares, dlclose once scored.
        let score = unsafe {
            let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if h.is_null() {
                continue;
            }
            let f = libc::dlsym(h, c"ggml_backend_score".as_ptr());
            let s = if f.is_null() {
                0
            } else {
                let score: extern "C" fn() -> i32 = std::mem::transmute(f);
                score()
            };
            libc::dlclose(h);
            s
        };
        if score > 0 && best.as_ref().is_none_or(|(b, _, _)| score > *b) {
            best = Some((score, level.to_string(), e.path()));
        }
    }
    best.map(|(_, l, p)| (l, p))
        .ok_or_else(|| format!("no llama.cpp CPU library in {} runs on this CPU", dir.display()))
}

fn dirs_text(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// The features llama.cpp's system information marks `= 1` (`SSE3 AVX2 …`).
fn cpu_features(info: &str) -> String {
    let on: Vec<&str> = info
        .split('|')
        .filter_map(|f| {
            let (name, v) = f.split_once('=')?;
            let name = name.trim().rsplit(':').next()?.trim();
            (v.trim() == "1" && !name.is_empty()).then_some(name)
        })
        .collect();
    if on.is_empty() {
        "baseline x86-64 (no SIMD extensions beyond SSE2)".into()
    } else {
        on.join(" ")
    }
}

/// The CPU features of the loaded llama.cpp CPU library.
pub fn cpu_library() -> Option<String> {
    backend().ok()?;
    Some(system_features())
}

/// Hands a model to one request at a time, in the order they asked.
#[derive(Default)]
struct Turns {
    line: Mutex<Line>,
    changed: Condvar,
}

#[derive(Default)]
struct Line {
    busy: bool,
    waiting: VecDeque<u64>,
    next: u64,
}

/// The model is this request's until dropped.
struct Turn<'a>(&'a Turns);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.line.lock().busy = false;
        self.0.changed.notify_all();
    }
}

impl Turns {
    /// Waits for the model (behind every request already waiting); `None` when cancelled first.
    fn take(&self, params: &GenParams) -> Option<Turn<'_>> {
        let mut line = self.line.lock();
        let me = line.next;
        line.next += 1;
        line.waiting.push_back(me);
        loop {
            if !line.busy && line.waiting.front() == Some(&me) {
                line.waiting.pop_front();
                line.busy = true;
                return Some(Turn(self));
            }
            if params.cancelled() {
                line.waiting.retain(|w| *w != me);
                drop(line);
                self.changed.notify_all();
                return None;
            }
            self.changed.wait_for(&mut line, Duration::from_millis(50));
        }
    }

    /// True when some request waits for the model.
    fn contended(&self) -> bool {
        !self.line.lock().waiting.is_empty()
    }
}

/// A loaded model with its one context.
struct Engine {
    model: &'static LlamaModel,
    template: LlamaChatTemplate,
    name: String,
    /// Tokens the chat template adds around one message (estimate for fitting histories).
    per_message: usize,
    turns: Turns,
    work: Mutex<Work>,
    /// Sessions to forget at the next turn (the context was busy when asked).
    forgotten: Mutex<HashSet<String>>,
}

/// The context and what its KV cache holds.
struct Work {
    ctx: LlamaContext<'static>,
    /// Session whose tokens are in sequence 0.
    current: Option<String>,
    /// Tokens in the KV cache, in order.
    tokens: Vec<LlamaToken>,
    /// KV states of other sessions: tokens, state, last use.
    saved: HashMap<String, (Vec<LlamaToken>, SeqState, Instant)>,
}

enum Load {
    Loading,
    Ready(Arc<Engine>),
    Failed(String),
}

struct Shared {
    cfg: LlmConfig,
    load: Mutex<Load>,
    loaded: Condvar,
    progress: Arc<AtomicU32>,
    extra: Mutex<HashMap<PathBuf, Arc<Engine>>>,
    last: Mutex<Value>,
}

/// The in-process llama.cpp backend.
pub struct LlamaCpp {
    shared: Arc<Shared>,
}

fn load_engine(cfg: &LlmConfig, path: &Path, progress: Option<Arc<AtomicU32>>) -> Result<Engine, LlmError> {
    let backend = backend()?;
    let meta = std::fs::metadata(path).map_err(|e| {
        LlmError::Model(format!(
            "{}: {e} (run scripts/models.sh, or set --model-path / MAGICFS_MODEL_PATH)",
            path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(LlmError::Model(format!("{}: not a file", path.display())));
    }
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| LlmError::Model(format!("{}: {e}", path.display())))?;
        if f.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
            return Err(LlmError::Model(format!("{}: not a GGUF model file", path.display())));
        }
    }
    let mut params = LlamaModelParams::default().with_n_gpu_layers(cfg.gpu_layers);
    if let Some(p) = progress {
        params = params.with_progress_callback(move |f| {
            p.store(f.to_bits(), Ordering::Relaxed);
            true
        });
    }
    let model = LlamaModel::load_from_file(backend, path, &params)
        .map_err(|e| LlmError::Model(format!("{}: cannot load: {e} (corrupt or unsupported GGUF?)", path.display())))?;
    // The daemon keeps its models for its whole life.
    let model: &'static LlamaModel = Box::leak(Box::new(model));
    let template = model.chat_template(None).map_err(|e| {
        LlmError::Model(format!("{}: no chat template in the model ({e}); use an instruct model", path.display()))
    })?;
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(cfg.ctx))
        .with_n_batch(BATCH as u32)
        .with_n_threads(cfg.threads as i32)
        .with_n_threads_batch(prompt_threads(cfg) as i32);
    let ctx = model.new_context(backend, ctx_params).map_err(|e| {
        LlmError::Model(format!("{}: cannot create a context of {} tokens: {e}", path.display(), cfg.ctx))
    })?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut e = Engine {
        model,
        template,
        name: format!("llama.cpp:{name}"),
        per_message: 0,
        turns: Turns::default(),
        work: Mutex::new(Work { ctx, current: None, tokens: Vec::new(), saved: HashMap::new() }),
        forgotten: Mutex::new(HashSet::new()),
    };
    // One more message costs what the template adds around it.
    let one = [ChatMessage { role: Role::User, content: "x".into() }];
    let two = [one[0].clone(), ChatMessage { role: Role::Assistant, content: "y".into() }];
    e.per_message = match (e.template_tokens(&one, false), e.template_tokens(&two, false)) {
        (Ok(a), Ok(b)) => b.len().saturating_sub(a.len() + 1).max(1),
        _ => 8,
    };
    Ok(e)
}

impl LlamaCpp {
    /// Starts loading `cfg.model_path` on a background thread and returns at once.
    pub fn open(cfg: &LlmConfig) -> Result<LlamaCpp, LlmError> {
        cfg.check()?;
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            load: Mutex::new(Load::Loading),
            loaded: Condvar::new(),
            progress: Arc::new(AtomicU32::new(0)),
            extra: Mutex::new(HashMap::new()),
            last: Mutex::new(Value::Null),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("magicfs-llm-load".into())
            .spawn(move || {
                let started = Instant::now();
                let r = load_engine(&s.cfg, &s.cfg.model_path, Some(s.progress.clone()));
                let mut load = s.load.lock();
                *load = match r {
                    Ok(e) => {
                        log::info!("model {} loaded in {:.1?}", s.cfg.model_path.display(), started.elapsed());
                        Load::Ready(Arc::new(e))
                    }
                    Err(e) => {
                        log::error!("{e}");
                        Load::Failed(e.to_string())
                    }
                };
                s.loaded.notify_all();
            })
            .map_err(|e| LlmError::Model(format!("cannot start the loading thread: {e}")))?;
        Ok(LlamaCpp { shared })
    }

    fn main_engine(&self, timeout: Duration) -> Result<Arc<Engine>, LlmError> {
        let deadline = Instant::now() + timeout;
        let mut load = self.shared.load.lock();
        loop {
            match &*load {
                Load::Ready(e) => return Ok(e.clone()),
                Load::Failed(m) => return Err(LlmError::Model(m.clone())),
                Load::Loading => {
                    if self.shared.loaded.wait_until(&mut load, deadline).timed_out() {
                        return Err(LlmError::Model("the model is still loading".into()));
                    }
                }
            }
        }
    }

    /// The engine for a per-request model name: the default model, or another
    /// GGUF file (a path, or a path under the models directory).
    fn engine_for(&self, model: Option<&str>) -> Result<Arc<Engine>, LlmError> {
        let main = self.main_engine(Duration::from_secs(3600))?;
        let Some(name) = model.map(str::trim).filter(|m| !m.is_empty()) else { return Ok(main) };
        let cfg = &self.shared.cfg;
        let stem = cfg.model_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if name == "default" || name == stem || name == main.name || Path::new(name) == cfg.model_path {
            return Ok(main);
        }
        let path = if Path::new(name).is_absolute() { PathBuf::from(name) } else { models_dir().join(name) };
        if path == cfg.model_path {
            return Ok(main);
        }
        if let Some(e) = self.shared.extra.lock().get(&path) {
            return Ok(e.clone());
        }
        if self.shared.extra.lock().len() >= MAX_EXTRA_MODELS {
            return Err(LlmError::Model(format!(
                "model {name}: {MAX_EXTRA_MODELS} other models are loaded already; restart the daemon to change models"
            )));
        }
        log::info!("loading model {} for a session override", path.display());
        let e = Arc::new(load_engine(cfg, &path, None).map_err(|e| LlmError::Model(format!("model {name}: {e}")))?);
        self.shared.extra.lock().insert(path, e.clone());
        Ok(e)
    }
}

fn llama_messages(ms: &[ChatMessage]) -> Result<Vec<LlamaChatMessage>, LlmError> {
    ms.iter()
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            LlamaChatMessage::new(role.into(), m.content.clone())
                .map_err(|_| LlmError::Request("a message contains a NUL byte".into()))
        })
        .collect()
}

impl Engine {
    fn template_tokens(&self, ms: &[ChatMessage], add_assistant: bool) -> Result<Vec<LlamaToken>, LlmError> {
        let prompt = self
            .model
            .apply_chat_template(&self.template, &llama_messages(ms)?, add_assistant)
            .map_err(|e| LlmError::Request(format!("the chat template failed: {e}")))?;
        Ok(self.model.vocab().tokenize(prompt.as_bytes(), true, true))
    }

    /// The prompt: the conversation laid out in the model's chat template,
    /// ending where the assistant's reply begins.
    fn prompt_tokens(&self, ms: &[ChatMessage]) -> Result<Vec<LlamaToken>, LlmError> {
        self.template_tokens(ms, true)
    }

    /// Estimated tokens of one message in the prompt.
    fn message_tokens(&self, m: &ChatMessage) -> usize {
        self.model.vocab().tokenize(m.content.as_bytes(), false, false).len() + self.per_message
    }

    /// The sampler of a request: repetition penalty and DRY over the
    /// generated tokens, then top-k, top-p, min-p, temperature and the draw;
    /// the grammar (when the output is constrained) beside it (see [`Picker`]).
    fn sampler(&self, params: &GenParams) -> Result<Picker, LlmError> {
        let mut chain = Vec::new();
        let grammar = match (&params.json_schema, &params.grammar) {
            (Some(schema), _) => Some(
                llama_cpp_2::json_schema_to_grammar(&schema.to_string())
                    .map_err(|e| LlmError::Request(format!("the JSON schema cannot be turned into a grammar: {e}")))?,
            ),
            (None, Some(g)) => Some(g.clone()),
            (None, None) => None,
        };
        let grammar = match grammar {
            Some(g) => Some(
                LlamaSampler::grammar(self.model, &g, "root")
                    .map_err(|e| LlmError::Request(format!("the output grammar is invalid: {e}")))?,
            ),
            None => None,
        };
        let s: &Sampling = &params.sampling;
        if s.repeat_penalty != 1.0 && s.repeat_last_n > 0 {
            chain.push(LlamaSampler::penalties(
                self.model.n_vocab(),
                s.repeat_last_n as i32,
                s.repeat_penalty,
                0.0,
                0.0,
            ));
        }
        if s.dry_multiplier > 0.0 {
            chain.push(LlamaSampler::dry(
                self.model,
                s.dry_multiplier,
                s.dry_base,
                s.dry_allowed_length as i32,
                s.dry_last_n as i32,
                DRY_BREAKERS,
            ));
        }
        if s.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            if s.top_k > 0 {
                chain.push(LlamaSampler::top_k(s.top_k as i32));
            }
            chain.extend([
                LlamaSampler::top_p(s.top_p, 1),
                LlamaSampler::min_p(s.min_p, 1),
                LlamaSampler::temp(s.temperature),
                LlamaSampler::dist(s.seed_for(1)),
            ]);
        }
        Ok(Picker { chain: LlamaSampler::chain_simple(chain), grammar })
    }

    /// Takes the model for `params`'s request (waiting its turn) with the
    /// context holding `key`'s state; `None` when cancelled while waiting.
    fn acquire(&self, key: &str, params: &GenParams) -> Option<(Turn<'_>, MutexGuard<'_, Work>)> {
        let turn = self.turns.take(params)?;
        let mut w = self.work.lock();
        for s in std::mem::take(&mut *self.forgotten.lock()) {
            w.forget(&s);
        }
        w.switch_to(Some(key));
        Some((turn, w))
    }
}

impl Work {
    fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.tokens.clear();
        self.current = None;
    }

    fn forget(&mut self, session: &str) {
        self.saved.remove(session);
        if self.current.as_deref() == Some(session) {
            self.reset();
        }
    }

    /// Keeps the longest prefix of the context that `tokens` shares, less
    /// at least its last token (re-evaluated for its logits).
    fn keep_prefix(&mut self, tokens: &[LlamaToken]) -> usize {
        let mut keep = self.tokens.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        keep = keep.min(tokens.len().saturating_sub(1));
        if self.ctx.kv_cache_seq_rm(0, Some(keep as u32), None).is_err() {
            self.ctx.clear_kv_cache();
            keep = 0;
        }
        self.tokens.truncate(keep);
        keep
    }

    /// Puts `session`'s KV state in sequence 0, saving the current one's.
    fn switch_to(&mut self, session: Option<&str>) {
        if self.current.as_deref() == session && session.is_some() {
            return;
        }
        if let Some(cur) = self.current.take() {
            match self.ctx.state_seq_get(0, LlamaStateSeqFlags::empty()) {
                Ok(state) => {
                    let tokens = std::mem::take(&mut self.tokens);
                    self.saved.insert(cur, (tokens, state, Instant::now()));
                    self.trim_saved();
                }
                Err(e) => log::warn!("cannot keep the KV state of session {cur}: {e}"),
            }
        }
        self.ctx.clear_kv_cache();
        self.tokens.clear();
        if let Some(s) = session {
            if let Some((tokens, state, _)) = self.saved.remove(s) {
                match self.ctx.state_seq_set(&state, 0) {
                    Ok(()) => self.tokens = tokens,
                    Err(e) => {
                        log::warn!("cannot restore the KV state of session {s}: {e}");
                        self.ctx.clear_kv_cache();
                    }
                }
            }
        }
        self.current = session.map(String::from);
    }

    fn trim_saved(&mut self) {
        loop {
            let bytes: usize = self.saved.values().map(|(_, s, _)| s.byte_len()).sum();
            if bytes <= SAVED_BYTES && self.saved.len() <= SAVED_SESSIONS {
                return;
            }
            let Some(oldest) = self.saved.iter().min_by_key(|(_, (_, _, t))| *t).map(|(k, _)| k.clone()) else {
                return;
            };
            self.saved.remove(&oldest);
        }
    }

    /// Evaluates `tokens[self.tokens.len()..end]` (at most [`EVAL_STEP`]) at
    /// their positions; logits for `tokens[end - 1]` when it is the last token.
    fn eval_next(&mut self, tokens: &[LlamaToken]) -> Result<(), LlmError> {
        let from = self.tokens.len();
        let end = (from + EVAL_STEP).min(tokens.len());
        let mut batch = LlamaBatch::new(EVAL_STEP, 1);
        for (j, t) in tokens.iter().enumerate().take(end).skip(from) {
            batch
                .add(*t, j as i32, &[0], j + 1 == tokens.len())
                .map_err(|e| LlmError::Backend(format!("batch: {e}")))?;
        }
        self.ctx.decode(&mut batch).map_err(|e| LlmError::Backend(format!("llama.cpp decode failed: {e}")))?;
        self.tokens.extend_from_slice(&tokens[from..end]);
        Ok(())
    }
}

/// A request's sampler: the chain, and the grammar beside it. The grammar
/// is asked only whether the chain's pick fits it; when it does not, the
/// pick is made again with the grammar applied first (as llama.cpp's own
/// common sampler does). Checking every token of the vocabulary against the
/// grammar at each step costs several times the model's own work.
struct Picker {
    chain: LlamaSampler,
    grammar: Option<LlamaSampler>,
}

impl Picker {
    /// Picks the next token from the context's last logits and accepts it.
    fn sample(&mut self, ctx: &LlamaContext<'_>) -> LlamaToken {
        let Some(g) = self.grammar.as_mut() else { return self.chain.sample(ctx, -1) };
        let mut cur = ctx.token_data_array_ith(-1);
        self.chain.apply(&mut cur);
        let fits = |g: &mut LlamaSampler, t: LlamaToken| {
            let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(t, 1.0, 0.0)], false);
            g.apply(&mut one);
            one.data[0].logit().is_finite()
        };
        let token = match cur.selected_token() {
            Some(t) if fits(g, t) => t,
            _ => {
                let mut cur = ctx.token_data_array_ith(-1);
                g.apply(&mut cur);
                self.chain.apply(&mut cur);
                // The grammar leaves at least one token (its end when complete).
                cur.selected_token().unwrap_or_else(|| {
                    cur.data
                        .iter()
                        .max_by(|a, b| a.logit().total_cmp(&b.logit()))
                        .map_or(LlamaToken::new(0), |d| d.id())
                })
            }
        };
        g.accept(token);
        self.chain.accept(token);
        token
    }
}

/// Keys of requests that belong to no session (their state is kept only
/// between their own slices).
fn request_key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("\u{1}request-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl LlmBackend for LlamaCpp {
    fn model_id(&self) -> String {
        let stem = self.shared.cfg.model_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        format!("llama.cpp:{stem}")
    }

    fn status(&self) -> BackendStatus {
        let state = match &*self.shared.load.lock() {
            Load::Loading => {
                ModelState::Loading { progress: f32::from_bits(self.shared.progress.load(Ordering::Relaxed)) }
            }
            Load::Ready(_) => ModelState::Ready,
            Load::Failed(e) => ModelState::Failed { error: e.clone() },
        };
        let mut detail = self.shared.last.lock().clone();
        if detail.is_null() {
            detail = json!({});
        }
        detail["path"] = json!(self.shared.cfg.model_path);
        detail["threads"] = json!(self.shared.cfg.threads);
        detail["prompt_threads"] = json!(prompt_threads(&self.shared.cfg));
        if matches!(state, ModelState::Ready) {
            detail["cpu"] = json!(cpu_library());
        }
        detail["ctx"] = json!(self.shared.cfg.ctx);
        BackendStatus { state, model: self.model_id(), detail }
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), LlmError> {
        self.main_engine(timeout).map(|_| ())
    }

    fn forget(&self, session: &str) {
        let engines: Vec<Arc<Engine>> = {
            let mut v: Vec<_> = self.shared.extra.lock().values().cloned().collect();
            if let Load::Ready(e) = &*self.shared.load.lock() {
                v.push(e.clone());
            }
            v
        };
        for e in engines {
            // Never wait for a request that holds the context: the next turn forgets.
            match e.work.try_lock() {
                Some(mut w) => w.forget(session),
                None => {
                    e.forgotten.lock().insert(session.to_string());
                }
            }
        }
    }

    fn chat(
        &self,
        messages: &[ChatMessage],
        params: &GenParams,
        sink: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, LlmError> {
        let engine = self.engine_for(params.model.as_deref())?;
        let n_ctx = self.shared.cfg.ctx as usize;
        let max_tokens = (params.max_tokens as usize).max(1);
        let budget = n_ctx.saturating_sub(max_tokens.min(n_ctx / 2));
        if let Some(last) = messages.last() {
            if last.content.len() > budget * MAX_BYTES_PER_TOKEN {
                return Err(LlmError::Request(format!(
                    "the last turn is {} bytes; the context of {n_ctx} tokens cannot hold it \
                     (send a shorter message or raise the context size)",
                    last.content.len()
                )));
            }
        }
        let started = Instant::now();
        let (kept, dropped) = fit_history(
            messages,
            budget,
            |m| Ok(engine.message_tokens(m)),
            |ms| engine.prompt_tokens(ms).map(|t| t.len()),
        )?;
        if dropped > 0 {
            log::info!(
                "session {}: left out the {dropped} oldest turns to fit the context of {n_ctx} tokens (system turns kept)",
                params.session.as_deref().unwrap_or("-")
            );
        }
        let prompt = engine.prompt_tokens(&kept)?;
        let mut sampler = engine.sampler(params)?;
        let key = params.session.clone().unwrap_or_else(request_key);
        let cancelled = |text: String, generated: u32| Completion {
            text,
            finish: FinishReason::Cancelled,
            prompt_tokens: 0,
            completion_tokens: generated,
        };
        let Some((mut turn, mut w)) = engine.acquire(&key, params) else { return Ok(cancelled(String::new(), 0)) };
        let mut mine = prompt.clone();
        let reused = w.keep_prefix(&mine);
        let mut evaluated = 0usize;
        let mut slice = Instant::now();
        let mut prompt_done = None;
        let vocab = engine.model.vocab();
        let mut utf8 = Utf8Stream::default();
        let mut text = String::new();
        let mut generated = 0u32;
        let mut finish = FinishReason::Length;
        let mut bytes = Vec::new();
        let mut gen_start = Instant::now();
        let mut switches = 0u32;
        loop {
            if params.cancelled() {
                finish = FinishReason::Cancelled;
                break;
            }
            if w.tokens.len() < mine.len() {
                let before = w.tokens.len();
                if let Err(e) = w.eval_next(&mine) {
                    w.reset();
                    return Err(e);
                }
                evaluated += w.tokens.len() - before;
                if prompt_done.is_none() && w.tokens.len() == mine.len() {
                    prompt_done = Some(Instant::now());
                    gen_start = Instant::now();
                }
            } else {
                // The context holds all of `mine`, with logits for its last token.
                if generated as usize >= max_tokens || mine.len() >= n_ctx {
                    break;
                }
                let token = sampler.sample(&w.ctx);
                if vocab.is_eog(token) {
                    finish = FinishReason::Stop;
                    break;
                }
                generated += 1;
                mine.push(token);
                bytes.clear();
                vocab.token_to_piece_into(token, &mut bytes, false, None);
                let piece = utf8.push(&bytes);
                if !piece.is_empty() {
                    text.push_str(&piece);
                    if sink(&piece).is_break() {
                        finish = FinishReason::Cancelled;
                        break;
                    }
                }
            }
            // A slice is up and others wait: step back to the end of the line.
            if slice.elapsed() >= SLICE && engine.turns.contended() {
                drop(w);
                drop(turn);
                switches += 1;
                match engine.acquire(&key, params) {
                    Some((t, g)) => (turn, w) = (t, g),
                    None => return Ok(cancelled(text, generated)),
                }
                w.keep_prefix(&mine);
                slice = Instant::now();
            }
        }
        if finish != FinishReason::Cancelled {
            let rest = utf8.finish();
            if !rest.is_empty() {
                text.push_str(&rest);
                if sink(&rest).is_break() {
                    finish = FinishReason::Cancelled;
                }
            }
        }
        if params.session.is_none() {
            // Nothing will continue this request: its state is not worth keeping.
            w.current = None;
        }
        drop(w);
        drop(turn);
        let prompt_done = prompt_done.unwrap_or_else(Instant::now);
        let gen_s = gen_start.elapsed().as_secs_f64();
        *self.shared.last.lock() = json!({
            "last_request": {
                "session": params.session,
                "model": engine.name,
                "prompt_tokens": prompt.len(),
                "reused_tokens": reused,
                "evaluated_tokens": evaluated,
                "prompt_ms": (prompt_done - started).as_secs_f64() * 1000.0,
                "completion_tokens": generated,
                "generation_ms": gen_s * 1000.0,
                "tokens_per_second": if gen_s > 0.0 { generated as f64 / gen_s } else { 0.0 },
                "dropped_turns": dropped,
                "turn_switches": switches,
                "sampling": params.sampling,
            }
        });
        log::debug!(
            "session {}: {} prompt tokens ({reused} reused), {generated} generated in {gen_s:.2}s",
            params.session.as_deref().unwrap_or("-"),
            prompt.len()
        );
        Ok(Completion { text, finish, prompt_tokens: (prompt.len() - reused) as u32, completion_tokens: generated })
    }
}

/// Generates `max_tokens` tokens greedily for `messages` with llama-cpp-2
/// directly — a fresh context, no KV reuse, no sessions — the baseline that
/// `magicfs bench chat` compares the session path with. Returns the text,
/// the number of generated tokens and the seconds spent generating them
/// (prompt evaluation excluded).
pub fn direct_generate(
    cfg: &LlmConfig,
    messages: &[ChatMessage],
    max_tokens: u32,
) -> Result<(String, u32, f64), LlmError> {
    let backend = backend()?;
    let model = LlamaModel::load_from_file(backend, &cfg.model_path, &LlamaModelParams::default())
        .map_err(|e| LlmError::Model(format!("{}: {e}", cfg.model_path.display())))?;
    let template = model.chat_template(None).map_err(|e| LlmError::Model(e.to_string()))?;
    let prompt = model
        .apply_chat_template(&template, &llama_messages(messages)?, true)
        .map_err(|e| LlmError::Request(e.to_string()))?;
    let tokens = model.vocab().tokenize(prompt.as_bytes(), true, true);
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(cfg.ctx))
        .with_n_batch(BATCH as u32)
        .with_n_threads(cfg.threads as i32)
        .with_n_threads_batch(prompt_threads(cfg) as i32);
    let mut ctx = model.new_context(backend, ctx_params).map_err(|e| LlmError::Model(e.to_string()))?;
    let mut batch = LlamaBatch::new(tokens.len().max(BATCH), 1);
    batch.add_sequence(&tokens, 0, false).map_err(|e| LlmError::Backend(e.to_string()))?;
    ctx.decode(&mut batch).map_err(|e| LlmError::Backend(e.to_string()))?;
    let mut sampler = LlamaSampler::greedy();
    let mut pos = tokens.len() as i32;
    let mut out = Vec::new();
    let mut n = 0;
    let t0 = Instant::now();
    while n < max_tokens {
        let token = sampler.sample(&ctx, -1);
        if model.vocab().is_eog(token) {
            break;
        }
        model.vocab().token_to_piece_into(token, &mut out, false, None);
        batch.clear();
        batch.add(token, pos, &[0], true).map_err(|e| LlmError::Backend(e.to_string()))?;
        ctx.decode(&mut batch).map_err(|e| LlmError::Backend(e.to_string()))?;
        pos += 1;
        n += 1;
    }
    Ok((String::from_utf8_lossy(&out).into_owned(), n, t0.elapsed().as_secs_f64()))
}

/// Threads that evaluate a prompt: the machine's cores, up to 4, or the
/// generation threads if more. Evaluating a prompt is a short burst at the
/// start of a turn that scales with threads (a 1,024-token history: 6.7 s
/// on one thread, 3.5 s on two); generation, which runs for the whole
/// reply, keeps [`LlmConfig::threads`].
pub fn prompt_threads(cfg: &LlmConfig) -> u32 {
    // Asked once: the answer reads cgroup files, and the status asks often.
    static CORES: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) as u32);
    cfg.threads.max(cores)
}

#[cfg(test)]
mod tests {
    //! Against the real model from scripts/models.sh.
    use super::*;

    fn msg(role: Role, s: &str) -> ChatMessage {
        ChatMessage { role, content: s.into() }
    }

    fn last(b: &LlamaCpp) -> Value {
        b.status().detail["last_request"].clone()
    }

    fn greedy() -> Sampling {
        Sampling { temperature: 0.0, ..Sampling::defaults(crate::Purpose::Chat) }
    }

    #[test]
    fn kv_cache_reuse_sessions_and_json_schema() {
        let b = LlamaCpp::open(&LlmConfig::default()).unwrap();
        b.wait_ready(Duration::from_secs(300)).unwrap();
        assert_eq!(b.status().state, ModelState::Ready);
        let p =
            |s: &str| GenParams { max_tokens: 16, sampling: greedy(), session: Some(s.into()), ..GenParams::default() };
        let mut sink = |_: &str| ControlFlow::Continue(());
        let mut conv = vec![msg(Role::User, "Hello! Who are you?")];
        let c1 = b.chat(&conv, &p("a"), &mut sink).unwrap();
        assert!(!c1.text.trim().is_empty());
        let first = last(&b);
        assert_eq!(first["reused_tokens"], 0);
        conv.push(msg(Role::Assistant, &c1.text));
        conv.push(msg(Role::User, "What can you help me with?"));
        let c2 = b.chat(&conv, &p("a"), &mut sink).unwrap();
        let second = last(&b);
        let prompt = second["prompt_tokens"].as_u64().unwrap();
        let reused = second["reused_tokens"].as_u64().unwrap();
        assert!(reused >= first["prompt_tokens"].as_u64().unwrap(), "turn 2 reused {reused} of {prompt}: {second}");
        assert_eq!(c2.prompt_tokens as u64, prompt - reused);
        // Another session takes the context; the first one's state comes back.
        b.chat(&[msg(Role::User, "Name a fruit.")], &p("b"), &mut sink).unwrap();
        assert_eq!(last(&b)["reused_tokens"], 0);
        conv.push(msg(Role::Assistant, &c2.text));
        conv.push(msg(Role::User, "Thanks."));
        b.chat(&conv, &p("a"), &mut sink).unwrap();
        assert!(last(&b)["reused_tokens"].as_u64().unwrap() >= prompt, "{}", last(&b));
        // Forgetting a session drops its cache.
        b.forget("a");
        b.chat(&conv, &p("a"), &mut sink).unwrap();
        assert_eq!(last(&b)["reused_tokens"], 0);
        // Greedy decoding is repeatable.
        let once = b.chat(&[msg(Role::User, "Say hi.")], &p("g1"), &mut sink).unwrap().text;
        let twice = b.chat(&[msg(Role::User, "Say hi.")], &p("g2"), &mut sink).unwrap().text;
        assert_eq!(once, twice);
        // JSON schema: the grammar constrains the output.
        let schema = json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"]
        });
        let params =
            GenParams { json_schema: Some(schema), max_tokens: 64, sampling: greedy(), ..GenParams::default() };
        let c = b.chat(&[msg(Role::User, "Describe Bob, who is 42, as JSON.")], &params, &mut sink).unwrap();
        let v: Value = serde_json::from_str(c.text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", c.text));
        assert!(v["name"].is_string() && v["age"].is_i64(), "{v}");
        // A bad schema is a request error.
        let bad = GenParams { json_schema: Some(json!({"type": "nonsense-type"})), ..GenParams::default() };
        assert!(matches!(b.chat(&conv, &bad, &mut sink), Err(LlmError::Request(_))));
        // Cancellation from the sink.
        let mut n = 0;
        let c = b
            .chat(&[msg(Role::User, "Count to fifty.")], &GenParams { max_tokens: 64, ..p("c") }, &mut |_| {
                n += 1;
                if n == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(c.finish, FinishReason::Cancelled);
        // A GBNF grammar: exactly three lines.
        let three = GenParams {
            grammar: Some("root ::= line line line\nline ::= [A-Za-z ,.]{3,40} \"\\n\"\n".into()),
            max_tokens: 80,
            sampling: greedy(),
            ..GenParams::default()
        };
        let c = b.chat(&[msg(Role::User, "Write a haiku about disks.")], &three, &mut sink).unwrap();
        assert_eq!(c.text.lines().count(), 3, "{:?}", c.text);
        // Cancelled while waiting for the model: returns at once.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let c = b.chat(&conv, &GenParams { cancel: Some(stop), ..p("c") }, &mut sink).unwrap();
        assert_eq!((c.finish, c.completion_tokens), (FinishReason::Cancelled, 0));
        // Turns: a short request started while a long one runs ends first.
        let b = Arc::new(b);
        let long =
            {
                let b = b.clone();
                std::thread::spawn(move || {
                    let p = GenParams { max_tokens: 160, sampling: greedy(), ..GenParams::default() };
                    b.chat(&[msg(Role::User, "Write a long story about a dragon.")], &p, &mut |_| {
                        ControlFlow::Continue(())
                    })
                    .unwrap();
                    Instant::now()
                })
            };
        std::thread::sleep(Duration::from_millis(300));
        let p = GenParams { max_tokens: 4, sampling: greedy(), ..GenParams::default() };
        b.chat(&[msg(Role::User, "Say hi.")], &p, &mut sink).unwrap();
        let short_done = Instant::now();
        assert!(short_done < long.join().unwrap(), "the short request waited for the long one");
        assert!(last(&b)["turn_switches"].as_u64().unwrap() >= 1, "{}", last(&b));
    }

    #[test]
    fn a_missing_model_fails_to_load_with_the_path() {
        let cfg = LlmConfig { model_path: "/nonexistent/m.gguf".into(), ..LlmConfig::default() };
        let b = LlamaCpp::open(&cfg).unwrap();
        let e = b.wait_ready(Duration::from_secs(30)).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/m.gguf"), "{e}");
        assert!(matches!(b.status().state, ModelState::Failed { .. }));
    }
}
