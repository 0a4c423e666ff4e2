//! A MagicFS volume as one set of operations, for the MCP server and the web
//! console: files (list, read, write, mkdir, move, delete, stat), search,
//! chat, generation, compute and status.
//!
//! [`Backend`] is the one trait both kinds of volume implement:
//! [`MountBackend`] works through a mounted filesystem (or any host
//! directory, without the MagicFS features), [`StoreBackend`] opens an
//! unmounted store in process with its own index, sessions and generators.
//! [`Volume`] wraps a backend with the limits every front end shares: paths
//! are checked ([`VPath`]: no `..`; symlinks are resolved by the backend and
//! must stay inside), reads and writes are capped, and a read-only volume
//! refuses every change. [`conformance`] is the suite every backend passes.
#![warn(missing_docs)]

mod chat;
mod compute;
pub mod conformance;
mod error;
mod mount;
mod path;
mod store;
mod types;
mod volume;

pub use chat::{check_session_id, send_on_mount};
pub use compute::{ComputeOut, ComputeRequest};
pub use error::{VResult, VolumeError};
pub use mount::{encode_query, MountBackend};
pub use path::{VPath, MAX_NAME, MAX_PATH, URI_SCHEME};
pub use store::{StoreBackend, StoreParts};
pub use types::{Entry, Hit, Planned, WriteMode};
pub use volume::{Limits, ReadOut, Volume, DEFAULT_MAX_READ, DEFAULT_MAX_WRITE};

use std::time::Instant;

/// What a volume is made of: the operations a mount and a store answer alike.
/// Paths are already checked ([`VPath`]); a backend resolves symlinks and
/// refuses any that lead outside its root ([`VolumeError::Escape`]).
pub trait Backend: Send + Sync {
    /// `mount`, `directory` (a host directory that is no MagicFS mount) or `store`.
    fn kind(&self) -> &'static str;
    /// Where the volume lives (mount point or data directory).
    fn root(&self) -> String;
    /// The entries of a directory (symlinks in the path are followed inside the volume).
    fn list(&self, dir: &VPath) -> VResult<Vec<Entry>>;
    /// An entry itself (a symlink is described, not followed), with its
    /// `user.*` attributes when `xattrs`.
    fn stat(&self, path: &VPath, xattrs: bool) -> VResult<Entry>;
    /// Up to `len` bytes at `offset` of a regular file (symlinks followed
    /// inside the volume), and the file's size.
    fn read(&self, path: &VPath, offset: u64, len: u64) -> VResult<(Vec<u8>, u64)>;
    /// Writes `data` to a file; the parent directory must exist.
    fn write(&self, path: &VPath, data: &[u8], mode: WriteMode) -> VResult<()>;
    /// Creates one directory; its parent must exist.
    fn mkdir(&self, path: &VPath) -> VResult<()>;
    /// Moves an entry; `replace` allows replacing what is at `to`.
    fn rename(&self, from: &VPath, to: &VPath, replace: bool) -> VResult<()>;
    /// Removes a file, a symlink or an empty directory.
    fn remove(&self, path: &VPath) -> VResult<()>;
    /// The `k` files that best match `query`, best first.
    fn search(&self, query: &str, k: usize) -> VResult<Vec<Hit>>;
    /// Appends a User turn to `sessions/<id>` and waits for the reply,
    /// handing each new piece to `on_piece`; returns the whole reply.
    fn chat(&self, id: &str, message: &str, deadline: Instant, on_piece: &mut dyn FnMut(&str)) -> VResult<String>;
    /// Sets the generation prompt of an existing empty file.
    fn set_prompt(&self, path: &VPath, prompt: &str) -> VResult<()>;
    /// Asks the model for a tree of empty, prompted files under directory `dir`.
    fn plan_tree(&self, dir: &VPath, prompt: &str) -> VResult<()>;
    /// Generates a prompted empty file now; returns its size.
    fn fill(&self, path: &VPath) -> VResult<u64>;
    /// A `user.*` attribute of an entry, as text.
    fn xattr(&self, path: &VPath, name: &str) -> Option<String>;
    /// The bytes of a regular file, read-only, for compute.
    fn map(&self, path: &VPath) -> VResult<memmap2::Mmap>;
    /// The volume's status (the content of `.magic/status`).
    fn status(&self) -> VResult<serde_json::Value>;
}
