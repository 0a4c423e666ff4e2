//! Language-model runtime shared by chat sessions and generated content.
//!
//! One trait, [`LlmBackend`], with an in-process llama.cpp backend and an
//! OpenAI-compatible HTTP backend behind it.

use std::ops::ControlFlow;

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

/// Sampling settings for one request.
#[derive(Debug, Clone)]
pub struct GenParams {
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy.
    pub temperature: f32,
    /// Constrain the output to JSON matching this schema.
    pub json_schema: Option<serde_json::Value>,
    /// Model override (backend-specific name); `None` uses the backend default.
    pub model: Option<String>,
    /// Key under which a backend may keep state (KV cache) between calls of one conversation.
    pub session: Option<String>,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams { max_tokens: 512, temperature: 0.7, json_schema: None, model: None, session: None }
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
}
