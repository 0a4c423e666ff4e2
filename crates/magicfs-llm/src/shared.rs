//! One language model per process, opened on first use and shared by
//! everything that generates (chat sessions, generated files, the Python
//! package's stores).

use crate::{
    open_backend, BackendStatus, ChatMessage, Completion, GenParams, LlmBackend, LlmConfig, LlmError, Unavailable,
};
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The model `cfg` describes, opened once, on first use.
pub struct SharedLlm {
    cfg: LlmConfig,
    cell: OnceLock<Arc<dyn LlmBackend>>,
}

impl SharedLlm {
    /// A handle on the model `cfg` describes; nothing is loaded yet.
    pub fn new(cfg: LlmConfig) -> Arc<SharedLlm> {
        Arc::new(SharedLlm { cfg, cell: OnceLock::new() })
    }

    /// The configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.cfg
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
