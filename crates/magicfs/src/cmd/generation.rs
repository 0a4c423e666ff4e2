//! Wiring of generated content for `magicfs mount`: the registry of
//! generators (built-ins plus `--plugin` programs) over the daemon's one
//! language model.

use crate::cli::GenMountArgs;
use anyhow::bail;
use magicfs_core::Fs;
use magicfs_gen::exec::ExecGenerator;
use magicfs_gen::llm::LlmSettings;
use magicfs_gen::Engine;
use magicfs_llm::{
    open_backend, BackendStatus, ChatMessage, Completion, GenParams, LlmBackend, LlmConfig, LlmError, SamplingTable,
    Unavailable,
};
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The generation engine of a mount; `llm` is the daemon's shared model,
/// `sampling` the defaults of file contents and tree plans.
pub fn engine(
    fs: Arc<Fs>,
    a: &GenMountArgs,
    llm: Option<Arc<dyn LlmBackend>>,
    sampling: &SamplingTable,
) -> anyhow::Result<Arc<Engine>> {
    if !(a.plugin_timeout.is_finite() && a.plugin_timeout > 0.0 && a.plugin_timeout <= 86_400.0) {
        bail!("--plugin-timeout must be between 0 and 86400 seconds (got {})", a.plugin_timeout);
    }
    if a.gen_max_tokens == 0 {
        bail!("--gen-max-tokens must be at least 1");
    }
    if a.gen_attempts == 0 {
        bail!("--gen-attempts must be at least 1");
    }
    let settings = LlmSettings { max_tokens: a.gen_max_tokens, sampling: sampling.file.clone() };
    let mut registry = magicfs_gen::builtin_registry(llm.clone(), settings);
    let timeout = Duration::from_secs_f64(a.plugin_timeout);
    for spec in &a.plugins {
        match ExecGenerator::parse_spec(spec, timeout) {
            Ok(g) => registry.register(Arc::new(g)),
            Err(e) => bail!("--plugin {e}"),
        }
    }
    Ok(Arc::new(Engine::new(fs, registry, llm).with_attempts(a.gen_attempts).with_tree_sampling(sampling.tree.clone())))
}

/// The daemon's one language model: opened once, on first use, and shared
/// by chat sessions and generated content.
pub struct SharedLlm {
    cfg: LlmConfig,
    cell: OnceLock<Arc<dyn LlmBackend>>,
}

impl SharedLlm {
    /// A handle on the model `cfg` describes; nothing is loaded yet.
    pub fn new(cfg: LlmConfig) -> Arc<SharedLlm> {
        Arc::new(SharedLlm { cfg, cell: OnceLock::new() })
    }

    /// The backend, opened now if it was not (a backend that cannot be
    /// opened answers every request with the reason).
    pub fn open(&self) -> Arc<dyn LlmBackend> {
        self.cell
            .get_or_init(|| match open_backend(&self.cfg) {
                Ok(b) => b,
                Err(e) => {
                    log::error!("language model: {e}");
                    Arc::new(Unavailable { reason: e.to_string() })
                }
            })
            .clone()
    }

    /// A backend that opens the shared model on its first request.
    pub fn handle(self: &Arc<Self>) -> Arc<dyn LlmBackend> {
        Arc::new(LazyLlm(self.clone()))
    }
}

struct LazyLlm(Arc<SharedLlm>);

impl LlmBackend for LazyLlm {
    fn model_id(&self) -> String {
        match self.0.cell.get() {
            Some(b) => b.model_id(),
            None => match &self.0.cfg.url {
                Some(u) => u.clone(),
                None => self.0.cfg.model_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            },
        }
    }

    fn chat(
        &self,
        messages: &[ChatMessage],
        params: &GenParams,
        sink: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, LlmError> {
        self.0.open().chat(messages, params, sink)
    }

    fn status(&self) -> BackendStatus {
        self.0.open().status()
    }

    fn forget(&self, session: &str) {
        if let Some(b) = self.0.cell.get() {
            b.forget(session);
        }
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), LlmError> {
        self.0.open().wait_ready(timeout)
    }
}
