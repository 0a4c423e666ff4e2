//! The in-process backend: a GGUF model run by llama.cpp (`llama-cpp-2`).
//!
//! The model loads on a background thread (progress in [`LlmBackend::status`]).
//! One context per model serves requests one at a time. A conversation's
//! evaluated tokens stay in the context's KV cache: the next turn of the same
//! session evaluates only what follows the longest common prefix. When
//! another session takes the context, the previous session's KV state is
//! copied out (`state_seq_get`) and restored when it comes back.

use crate::config::models_dir;
use crate::{
    fit_history, BackendStatus, ChatMessage, Completion, FinishReason, GenParams, LlmBackend, LlmConfig, LlmError,
    ModelState, Role, Utf8Stream,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use parking_lot::{Condvar, Mutex};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Tokens evaluated per `decode` call of a prompt.
const BATCH: usize = 512;
/// KV states of idle sessions kept in memory, at most.
const SAVED_BYTES: usize = 512 << 20;
/// Sessions whose KV state is kept, at most.
const SAVED_SESSIONS: usize = 16;
/// A message longer than this many bytes per context token cannot fit
/// (no tokenizer packs that much into one token); refused before tokenizing.
const MAX_BYTES_PER_TOKEN: usize = 64;
/// Other models (per-session `user.magic.model`) kept loaded, at most.
const MAX_EXTRA_MODELS: usize = 2;

fn backend() -> Result<&'static LlamaBackend, LlmError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("MAGICFS_LLAMA_LOG").is_none() {
                b.void_logs();
            }
            Ok(b)
        })
        .as_ref()
        .map_err(|e| LlmError::Model(format!("llama.cpp did not initialise: {e}")))
}

/// A loaded model with its one context.
struct Engine {
    model: &'static LlamaModel,
    template: LlamaChatTemplate,
    name: String,
    work: Mutex<Work>,
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
    let threads = cfg.threads as i32;
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(cfg.ctx))
        .with_n_batch(BATCH as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let ctx = model.new_context(backend, ctx_params).map_err(|e| {
        LlmError::Model(format!("{}: cannot create a context of {} tokens: {e}", path.display(), cfg.ctx))
    })?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Engine {
        model,
        template,
        name: format!("llama.cpp:{name}"),
        work: Mutex::new(Work { ctx, current: None, tokens: Vec::new(), saved: HashMap::new() }),
    })
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
    fn prompt_tokens(&self, ms: &[ChatMessage]) -> Result<Vec<LlamaToken>, LlmError> {
        let prompt = self
            .model
            .apply_chat_template(&self.template, &llama_messages(ms)?, true)
            .map_err(|e| LlmError::Request(format!("the chat template failed: {e}")))?;
        Ok(self.model.vocab().tokenize(prompt.as_bytes(), true, true))
    }

    fn sampler(&self, params: &GenParams) -> Result<LlamaSampler, LlmError> {
        let mut chain = Vec::new();
        if let Some(schema) = &params.json_schema {
            let grammar = llama_cpp_2::json_schema_to_grammar(&schema.to_string())
                .map_err(|e| LlmError::Request(format!("the JSON schema cannot be turned into a grammar: {e}")))?;
            chain.push(
                LlamaSampler::grammar(self.model, &grammar, "root")
                    .map_err(|e| LlmError::Request(format!("the grammar of the JSON schema is invalid: {e}")))?,
            );
        }
        if params.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            chain.extend([
                LlamaSampler::top_k(40),
                LlamaSampler::top_p(0.95, 1),
                LlamaSampler::min_p(0.05, 1),
                LlamaSampler::temp(params.temperature),
                LlamaSampler::dist(seed),
            ]);
        }
        Ok(LlamaSampler::chain_simple(chain))
    }
}

impl Work {
    fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.tokens.clear();
        self.current = None;
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

    /// Evaluates `tokens[from..]` at positions `from..`; logits for the last one.
    fn eval(&mut self, tokens: &[LlamaToken], from: usize) -> Result<(), LlmError> {
        let mut batch = LlamaBatch::new(BATCH, 1);
        let mut i = from;
        while i < tokens.len() {
            batch.clear();
            let end = (i + BATCH).min(tokens.len());
            for (j, t) in tokens.iter().enumerate().take(end).skip(i) {
                batch
                    .add(*t, j as i32, &[0], j + 1 == tokens.len())
                    .map_err(|e| LlmError::Backend(format!("batch: {e}")))?;
            }
            self.ctx.decode(&mut batch).map_err(|e| LlmError::Backend(format!("llama.cpp decode failed: {e}")))?;
            self.tokens.extend_from_slice(&tokens[i..end]);
            i = end;
        }
        Ok(())
    }
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
            let mut w = e.work.lock();
            w.saved.remove(session);
            if w.current.as_deref() == Some(session) {
                w.reset();
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
        let (kept, dropped) = fit_history(messages, budget, |ms| engine.prompt_tokens(ms).map(|t| t.len()))?;
        if dropped > 0 {
            log::warn!(
                "session {}: dropped the {dropped} oldest turns to fit the context of {n_ctx} tokens (system turns kept)",
                params.session.as_deref().unwrap_or("-")
            );
        }
        let tokens = engine.prompt_tokens(&kept)?;
        let mut sampler = engine.sampler(params)?;
        let mut w = engine.work.lock();
        w.switch_to(params.session.as_deref());
        // Reuse the longest common prefix; at least the last prompt token is evaluated for its logits.
        let mut keep = w.tokens.iter().zip(&tokens).take_while(|(a, b)| a == b).count();
        keep = keep.min(tokens.len().saturating_sub(1));
        if w.ctx.kv_cache_seq_rm(0, Some(keep as u32), None).is_err() {
            w.ctx.clear_kv_cache();
            keep = 0;
        }
        w.tokens.truncate(keep);
        if let Err(e) = w.eval(&tokens, keep) {
            w.reset();
            return Err(e);
        }
        let prompt_done = Instant::now();
        let vocab = engine.model.vocab();
        let mut utf8 = Utf8Stream::default();
        let mut text = String::new();
        let mut generated = 0u32;
        let mut finish = FinishReason::Length;
        let mut bytes = Vec::new();
        // Generation time includes handing each piece to the sink (for
        // sessions: appending it to the file).
        let gen_start = Instant::now();
        while (generated as usize) < max_tokens {
            if w.tokens.len() >= n_ctx {
                break;
            }
            let token = sampler.sample(&w.ctx, -1);
            if vocab.is_eog(token) {
                finish = FinishReason::Stop;
                break;
            }
            generated += 1;
            bytes.clear();
            vocab.token_to_piece_into(token, &mut bytes, false, None);
            let piece = utf8.push(&bytes);
            let pos = w.tokens.len();
            let mut batch = LlamaBatch::new(1, 1);
            let r = batch
                .add(token, pos as i32, &[0], true)
                .map_err(|e| LlmError::Backend(format!("batch: {e}")))
                .and_then(|_| {
                    w.ctx.decode(&mut batch).map_err(|e| LlmError::Backend(format!("llama.cpp decode: {e}")))
                });
            if let Err(e) = r {
                w.reset();
                return Err(e);
            }
            w.tokens.push(token);
            if !piece.is_empty() {
                text.push_str(&piece);
                if sink(&piece).is_break() {
                    finish = FinishReason::Cancelled;
                    break;
                }
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
        let evaluated = tokens.len() - keep;
        let gen_s = gen_start.elapsed().as_secs_f64();
        *self.shared.last.lock() = json!({
            "last_request": {
                "session": params.session,
                "model": engine.name,
                "prompt_tokens": tokens.len(),
                "reused_tokens": keep,
                "evaluated_tokens": evaluated,
                "prompt_ms": (prompt_done - started).as_secs_f64() * 1000.0,
                "completion_tokens": generated,
                "generation_ms": gen_s * 1000.0,
                "tokens_per_second": if gen_s > 0.0 { generated as f64 / gen_s } else { 0.0 },
                "dropped_turns": dropped,
            }
        });
        log::debug!(
            "session {}: {} prompt tokens ({keep} reused), {generated} generated in {gen_s:.2}s",
            params.session.as_deref().unwrap_or("-"),
            tokens.len()
        );
        Ok(Completion { text, finish, prompt_tokens: evaluated as u32, completion_tokens: generated })
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
        .with_n_threads_batch(cfg.threads as i32);
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

    #[test]
    fn kv_cache_reuse_sessions_and_json_schema() {
        let b = LlamaCpp::open(&LlmConfig::default()).unwrap();
        b.wait_ready(Duration::from_secs(300)).unwrap();
        assert_eq!(b.status().state, ModelState::Ready);
        let p =
            |s: &str| GenParams { max_tokens: 16, temperature: 0.0, session: Some(s.into()), ..GenParams::default() };
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
        let params = GenParams { json_schema: Some(schema), max_tokens: 64, temperature: 0.0, ..GenParams::default() };
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
