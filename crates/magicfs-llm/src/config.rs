//! Settings of the language-model runtime: defaults, then environment
//! variables (`MAGICFS_*`, with the CFS-Local `CFS_*` names accepted), then
//! whatever the caller (command-line flags) overrides.

use crate::{LlmError, SamplingTable};
use std::path::PathBuf;
use std::time::Duration;

/// Which model to run and how. `Debug` leaves the API key out.
#[derive(Clone)]
pub struct LlmConfig {
    /// GGUF file for the in-process backend.
    pub model_path: PathBuf,
    /// Base URL of an OpenAI-compatible server (`http://host:port` or `…/v1`);
    /// when set, the server answers instead of the in-process model.
    pub url: Option<String>,
    /// Model name sent to the server (`None`: the first one `/v1/models` lists).
    pub model: Option<String>,
    /// Bearer token for the server.
    pub api_key: Option<String>,
    /// CPU threads that generate with the in-process model (1 by default: on
    /// a busy machine more threads can be slower). Prompts are evaluated on
    /// more: see `llama::prompt_threads`.
    pub threads: u32,
    /// Context size in tokens.
    pub ctx: u32,
    /// Layers offloaded to a GPU (0: CPU only).
    pub gpu_layers: u32,
    /// Default upper bound of generated tokens per reply.
    pub max_tokens: u32,
    /// Sampling defaults of chat replies, file contents and tree plans.
    pub sampling: SamplingTable,
    /// Longest a request to a server may take.
    pub timeout: Duration,
}

/// The directory `scripts/models.sh` fills: `MAGICFS_MODELS`, else `$XDG_CACHE_HOME/magicfs/models`.
pub use magicfs_types::dirs::models_dir;

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("model_path", &self.model_path)
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<hidden>"))
            .field("threads", &self.threads)
            .field("ctx", &self.ctx)
            .field("gpu_layers", &self.gpu_layers)
            .field("max_tokens", &self.max_tokens)
            .field("sampling", &self.sampling)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            model_path: models_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            url: None,
            model: None,
            api_key: None,
            threads: 1,
            ctx: 4096,
            gpu_layers: 0,
            max_tokens: 512,
            sampling: SamplingTable::default(),
            timeout: Duration::from_secs(600),
        }
    }
}

/// The first of `names` that is set and not empty.
fn var(names: &[&str]) -> Option<(String, String)> {
    names.iter().find_map(|n| match std::env::var(n) {
        Ok(v) if !v.trim().is_empty() => Some((n.to_string(), v.trim().to_string())),
        _ => None,
    })
}

fn parsed<T: std::str::FromStr>(names: &[&str]) -> Result<Option<T>, LlmError> {
    match var(names) {
        None => Ok(None),
        Some((n, v)) => v.parse().map(Some).map_err(|_| LlmError::Request(format!("{n}={v:?} is not a valid value"))),
    }
}

impl LlmConfig {
    /// Defaults overlaid with the environment: `MAGICFS_MODEL_PATH` (`CFS_MODEL_PATH`),
    /// `MAGICFS_LLM_URL`, `MAGICFS_LLM_MODEL`, `MAGICFS_LLM_API_KEY` (`OPENAI_API_KEY`),
    /// `MAGICFS_LLM_THREADS` (`CFS_N_THREADS`), `MAGICFS_N_CTX` (`CFS_N_CTX`),
    /// `MAGICFS_N_GPU_LAYERS` (`CFS_N_GPU_LAYERS`), `MAGICFS_MAX_TOKENS` (`CFS_MAX_TOKENS`),
    /// `MAGICFS_TEMPERATURE` (`CFS_TEMPERATURE`: the chat temperature),
    /// `MAGICFS_SAMPLING` (`PURPOSE.KEY=VALUE,…`), `MAGICFS_LLM_TIMEOUT` (seconds).
    pub fn from_env() -> Result<LlmConfig, LlmError> {
        let mut c = LlmConfig::default();
        if let Some((_, p)) = var(&["MAGICFS_MODEL_PATH", "CFS_MODEL_PATH"]) {
            c.model_path = PathBuf::from(p);
        }
        c.url = var(&["MAGICFS_LLM_URL"]).map(|v| v.1);
        c.model = var(&["MAGICFS_LLM_MODEL"]).map(|v| v.1);
        c.api_key = var(&["MAGICFS_LLM_API_KEY", "OPENAI_API_KEY"]).map(|v| v.1);
        if let Some(v) = parsed(&["MAGICFS_LLM_THREADS", "CFS_N_THREADS"])? {
            c.threads = v;
        }
        if let Some(v) = parsed(&["MAGICFS_N_CTX", "CFS_N_CTX"])? {
            c.ctx = v;
        }
        if let Some(v) = parsed(&["MAGICFS_N_GPU_LAYERS", "CFS_N_GPU_LAYERS"])? {
            c.gpu_layers = v;
        }
        if let Some(v) = parsed(&["MAGICFS_MAX_TOKENS", "CFS_MAX_TOKENS"])? {
            c.max_tokens = v;
        }
        if let Some((n, v)) = var(&["MAGICFS_TEMPERATURE", "CFS_TEMPERATURE"]) {
            c.sampling.chat.set("temperature", &v).map_err(|e| LlmError::Request(format!("{n}: {e}")))?;
        }
        if let Some((n, v)) = var(&["MAGICFS_SAMPLING"]) {
            for spec in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                c.sampling.set(spec).map_err(|e| LlmError::Request(format!("{n}: {e}")))?;
            }
        }
        if let Some(v) = parsed::<u64>(&["MAGICFS_LLM_TIMEOUT"])? {
            c.timeout = Duration::from_secs(v);
        }
        c.check()?;
        Ok(c)
    }

    /// Rejects settings no backend can use.
    pub fn check(&self) -> Result<(), LlmError> {
        if self.threads == 0 {
            return Err(LlmError::Request("threads must be at least 1".into()));
        }
        if self.ctx < 256 {
            return Err(LlmError::Request(format!("a context of {} tokens is too small (at least 256)", self.ctx)));
        }
        if self.max_tokens == 0 {
            return Err(LlmError::Request("max tokens must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_api_key_is_never_shown() {
        let c = super::LlmConfig { api_key: Some("sk-very-secret".into()), ..super::LlmConfig::default() };
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-very-secret") && shown.contains("api_key: Some(\"<hidden>\")"), "{shown}");
    }

    use super::*;

    #[test]
    fn defaults_are_cfs_local_s() {
        let c = LlmConfig::default();
        assert_eq!((c.threads, c.ctx, c.gpu_layers, c.max_tokens), (1, 4096, 0, 512));
        assert_eq!(c.sampling, SamplingTable::default());
        assert!(c.model_path.ends_with("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"));
        c.check().unwrap();
        let bad = LlmConfig { ctx: 16, ..LlmConfig::default() };
        assert!(bad.check().is_err());
    }
}
