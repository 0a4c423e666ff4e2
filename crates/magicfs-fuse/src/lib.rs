//! The FUSE adapter of MagicFS. It is the only crate that imports `fuser`.
//!
//! Every callback either answers from memory (the inode table, the chunk
//! cache) or moves its `Reply` into the [`pool::Pool`] of workers and
//! returns, so the request loop never waits on slow work such as committing
//! a large file (see ARCHITECTURE.md, "the concurrency rule").

mod adapter;
mod digest;
mod generated;
mod mount;
mod pool;
mod search;
mod virt;

pub use mount::{atime_rule, is_kernel_flag, mount, mount_with_chat, MountOptions, Mounted};
pub use search::{decode_query, entry_names, query_name_ok};
