//! Language-model runtime shared by chat sessions and generated content.
//!
//! One trait, [`LlmBackend`], with an in-process llama.cpp backend (feature
//! `llama`) and an OpenAI-compatible HTTP backend behind it. [`LlmConfig`]
//! says which one (flags and `MAGICFS_*` / `CFS_*` environment variables);
//! [`open_backend`] opens it.

mod config;
#[cfg(feature = "llama")]
mod llama;
mod openai;
pub mod repeat;
pub mod sampling;
mod shared;
mod text;

pub use config::LlmConfig;
#[cfg(feature = "llama")]
pub use llama::{cpu_library, cpu_library_dirs, direct_generate};
pub use openai::OpenAiBackend;
pub use repeat::{find_loop, trim_loop, LoopDetector};
pub use sampling::{Purpose, Sampling, SamplingTable};
pub use shared::SharedLlm;
pub use text::{fit_history, Utf8Stream};

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Who spoke a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// Speaker.
    pub role: Role,
    /// Text of the turn.
    pub content: String,
}

/// Settings of one request.
#[derive(Debug, Clone)]
pub struct GenParams {
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
    /// How tokens are picked.
    pub sampling: Sampling,
    /// Constrain the output to JSON matching this schema.
    pub json_schema: Option<serde_json::Value>,
    /// Constrain the output to this GBNF grammar (rule `root`); ignored when
    /// `json_schema` is set.
    pub grammar: Option<String>,
    /// Model override (backend-specific name); `None` uses the backend default.
    pub model: Option<String>,
    /// Key under which a backend may keep state (KV cache) between calls of one conversation.
    pub session: Option<String>,
    /// Set to stop the request, also while the prompt is evaluated or the
    /// request waits for its turn on the model.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Leave sampling to a server's own defaults (send no sampling settings);
    /// the benchmark's baseline. The in-process backend ignores it.
    pub server_sampling: bool,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            max_tokens: 512,
            sampling: Sampling::defaults(Purpose::Chat),
            json_schema: None,
            grammar: None,
            model: None,
            session: None,
            cancel: None,
            server_sampling: false,
        }
    }
}

impl GenParams {
    /// True once the request was asked to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Why a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its turn.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The sink asked to stop.
    Cancelled,
    /// The loop detector stopped a reply whose tail repeated (set by callers
    /// that watch the stream with [`LoopDetector`]; the repeats are cut off).
    Loop,
}

impl FinishReason {
    /// `stop`, `length`, `cancelled` or `loop` (provenance and status).
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Loop => "loop",
        }
    }
}

/// Outcome of a finished request.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Whole generated text.
    pub text: String,
    /// Why generation stopped.
    pub finish: FinishReason,
    /// Tokens in the evaluated prompt (0 when unknown).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
}

/// Errors of the language-model layer.
#[derive(Debug)]
pub enum LlmError {
    /// The model file is missing or cannot be loaded.
    Model(String),
    /// The server could not be reached or answered with an error.
    Backend(String),
    /// The request itself is unusable (empty conversation, prompt too large, bad schema).
    Request(String),
}

impl std::fmt::Display for LlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LlmError::Model(m) => write!(f, "model: {m}"),
            LlmError::Backend(m) => write!(f, "backend: {m}"),
            LlmError::Request(m) => write!(f, "request: {m}"),
        }
    }
}

impl std::error::Error for LlmError {}

/// A language model that answers conversations, streaming pieces of text to `sink`.
///
/// Implementations are shared between threads; slow work runs on the caller's thread,
/// which must never be a FUSE request thread.
pub trait LlmBackend: Send + Sync {
    /// Identifier recorded in provenance and status (e.g. `llama.cpp:SmolLM2-135M-Instruct`).
    fn model_id(&self) -> String;

    /// Generates the assistant's next turn; `sink` sees each piece as it arrives and may
    /// return `ControlFlow::Break(())` to cancel.
    fn chat(
        &self,
        messages: &[ChatMessage],
        params: &GenParams,
        sink: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, LlmError>;

    /// Where the backend stands (model loading, last request); shown in `.magic/status`.
    fn status(&self) -> BackendStatus {
        BackendStatus { state: ModelState::Ready, model: self.model_id(), detail: serde_json::Value::Null }
    }

    /// Drops whatever state the backend keeps for `session` (its KV cache):
    /// the conversation was restarted or deleted.
    fn forget(&self, _session: &str) {}

    /// Blocks until the model is loaded (or failed to load), at most `timeout`.
    fn wait_ready(&self, _timeout: std::time::Duration) -> Result<(), LlmError> {
        Ok(())
    }
}

/// Loading state of a backend's model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ModelState {
    /// Loading; `progress` runs from 0 to 1.
    Loading {
        /// Fraction loaded.
        progress: f32,
    },
    /// Ready to answer.
    Ready,
    /// The model could not be loaded; every request fails with this message.
    Failed {
        /// Why.
        error: String,
    },
}

/// A backend's state for `.magic/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendStatus {
    /// Model loading state.
    #[serde(flatten)]
    pub state: ModelState,
    /// [`LlmBackend::model_id`].
    pub model: String,
    /// Backend-specific figures (last request's token counts and speeds, cached sessions).
    pub detail: serde_json::Value,
}

/// Opens the backend `cfg` describes: an OpenAI-compatible server when
/// `cfg.url` is set, otherwise the GGUF model in process (loaded on a
/// background thread; [`LlmBackend::status`] shows the progress).
pub fn open_backend(cfg: &LlmConfig) -> Result<Arc<dyn LlmBackend>, LlmError> {
    if cfg.url.is_some() {
        return Ok(Arc::new(OpenAiBackend::new(cfg)?));
    }
    #[cfg(feature = "llama")]
    {
        Ok(Arc::new(llama::LlamaCpp::open(cfg)?))
    }
    #[cfg(not(feature = "llama"))]
    {
        Err(LlmError::Model(
            "this build has no in-process llama.cpp backend (build with feature `llama`) and no --llm-url was given"
                .into(),
        ))
    }
}

/// A backend that could not be opened: every request fails with its reason,
/// so the filesystem keeps serving and each session says what is wrong.
pub struct Unavailable {
    /// Why there is no model.
    pub reason: String,
}

impl LlmBackend for Unavailable {
    fn model_id(&self) -> String {
        "unavailable".into()
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            state: ModelState::Failed { error: self.reason.clone() },
            model: self.model_id(),
            detail: serde_json::Value::Null,
        }
    }

    fn chat(
        &self,
        _: &[ChatMessage],
        _: &GenParams,
        _: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, LlmError> {
        Err(LlmError::Model(self.reason.clone()))
    }
}
