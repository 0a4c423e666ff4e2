//! Wiring of generated content for `magicfs mount`: the registry of
//! generators (built-ins plus `--plugin` programs) over the daemon's one
//! language model.

use crate::cli::GenMountArgs;
use crate::exit::usage_bail;
use magicfs_core::Fs;
use magicfs_gen::exec::ExecGenerator;
use magicfs_gen::llm::LlmSettings;
use magicfs_gen::Engine;
use magicfs_llm::{LlmBackend, SamplingTable};
use std::sync::Arc;
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
        usage_bail!("--plugin-timeout must be between 0 and 86400 seconds (got {})", a.plugin_timeout);
    }
    if a.gen_max_tokens == 0 {
        usage_bail!("--gen-max-tokens must be at least 1");
    }
    if a.gen_attempts == 0 {
        usage_bail!("--gen-attempts must be at least 1");
    }
    let settings = LlmSettings { max_tokens: a.gen_max_tokens, sampling: sampling.file.clone() };
    let mut registry = magicfs_gen::builtin_registry(llm.clone(), settings);
    let timeout = Duration::from_secs_f64(a.plugin_timeout);
    for spec in &a.plugins {
        match ExecGenerator::parse_spec(spec, timeout) {
            Ok(g) => registry.register(Arc::new(g)),
            Err(e) => usage_bail!("--plugin {e}"),
        }
    }
    Ok(Arc::new(Engine::new(fs, registry, llm).with_attempts(a.gen_attempts).with_tree_sampling(sampling.tree.clone())))
}
