//! The plugin interface: [`ContentGenerator`] and the [`Registry`] that maps
//! the names used in `user.magic.generator` to generators.

use crate::error::GenError;
use crate::request::GenRequest;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Content a generator produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The whole content.
    pub bytes: Vec<u8>,
    /// Model or program that wrote it (recorded in provenance).
    pub model: String,
    /// `stop` when the generator finished by itself, `length` when a
    /// language model reached its token limit, `loop` when its answer began
    /// to repeat and was cut.
    pub finish: &'static str,
}

/// Progress of one generation, shared with whoever reports it.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes produced so far.
    pub bytes: std::sync::atomic::AtomicU64,
    /// Set to ask the generator to stop (the result is then dropped); shared
    /// with the model request, which stops during its prompt too.
    pub cancel: Arc<AtomicBool>,
}

impl Progress {
    /// True once cancellation was asked for.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Records `n` bytes produced so far.
    pub fn set_bytes(&self, n: u64) {
        self.bytes.store(n, Ordering::Relaxed);
    }
}

/// A source of file contents.
///
/// `generate` runs on a generation worker, never on a FUSE request thread;
/// it may take seconds. It returns the whole content or an error: nothing a
/// generator produced is stored unless it returned `Ok`, so partial output
/// is never taken for complete content.
pub trait ContentGenerator: Send + Sync {
    /// Name used in `user.magic.generator`.
    fn name(&self) -> &str;

    /// Produces the content of the file described by `req`. Implementations
    /// should update `progress.bytes` as output arrives and stop early with
    /// [`GenError::Cancelled`] once `progress.cancelled()`.
    fn generate(&self, req: &GenRequest, progress: &Progress) -> Result<Output, GenError>;
}

/// Generators by name.
#[derive(Clone, Default)]
pub struct Registry {
    by_name: BTreeMap<String, Arc<dyn ContentGenerator>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("generators", &self.names()).finish()
    }
}

/// The generator used when a prompt applies and none is named.
pub const DEFAULT_GENERATOR: &str = "llm";

/// The name that switches generation off for a file or a subtree.
pub const NO_GENERATOR: &str = "none";

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds (or replaces) a generator under its name.
    pub fn register(&mut self, g: Arc<dyn ContentGenerator>) {
        self.by_name.insert(g.name().to_string(), g);
    }

    /// The generator called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn ContentGenerator>, GenError> {
        self.by_name.get(name).cloned().ok_or_else(|| GenError::UnknownGenerator(name.to_string()))
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}
