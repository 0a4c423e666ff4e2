//! Generated content for MagicFS: files whose content a generator writes
//! the first time they are read, and trees of such files from one sentence.
//!
//! - [`plugin`]: the [`ContentGenerator`] trait every generator implements
//!   and the [`Registry`] naming them.
//! - Built-ins: [`llm`] (the daemon's language model), [`readme`] (a tree
//!   listing; live as the `README.magic` overlay) and [`exec`] (an external
//!   program: JSON request on stdin, content on stdout).
//! - [`plan`]: which files are generated, by what (prompt and generator
//!   inheritance), and the context a generator sees.
//! - [`tree`]: the parts a tree request names, the JSON schema a tree
//!   answer is constrained to, and the check of a plan against the request.
//! - [`format`]: a file's format (extension, prompt) and shape ("a haiku"),
//!   with the grammar that constrains the answer; [`validate`]: the check
//!   of an answer against them (parsers, the language's own checkers).
//! - [`engine`]: running generations against a filesystem and storing the
//!   results with provenance.
//!
//! Nothing here talks to FUSE: the adapter decides when to call the engine
//! and answers waiting readers.

pub mod engine;
pub mod error;
pub mod exec;
pub mod format;
pub mod llm;
pub mod names;
mod once;
pub mod plan;
pub mod plugin;
pub mod readme;
pub mod request;
pub mod tree;
pub mod validate;

pub use engine::Engine;
pub use error::GenError;
pub use plugin::{ContentGenerator, Output, Progress, Registry};
pub use request::GenRequest;

use std::sync::Arc;

/// A registry with the built-in generators: `llm` over `backend` (failing
/// with a clear message when there is none) and `readme`.
pub fn builtin_registry(backend: Option<Arc<dyn magicfs_llm::LlmBackend>>, settings: llm::LlmSettings) -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(llm::LlmGenerator::new(backend, settings)));
    r.register(Arc::new(readme::ReadmeGenerator));
    r
}
