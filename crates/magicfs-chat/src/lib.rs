//! Chat sessions: files under `sessions/` that talk back.
//!
//! A writer closes `sessions/<id>` whose last turn is `User: …`; the daemon
//! creates `sessions/.generating.<id>`, asks the language model
//! ([`magicfs_llm::LlmBackend`]) and appends `Assistant: ` and the reply as
//! it streams, then removes the sentinel. [`transcript`] is the file format,
//! [`Sessions`] the engine the FUSE adapter calls into.

mod engine;
pub mod transcript;

pub use engine::{ChatConfig, Sessions, SENTINEL_PREFIX, SESSIONS_DIR};
