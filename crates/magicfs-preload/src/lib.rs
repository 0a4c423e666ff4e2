//! `libmagicfs_preload.so`: unmodified dynamically linked programs use a
//! MagicFS store under a path prefix, with no FUSE and no root.
//!
//! ```sh
//! MAGICFS_PRELOAD_STORE=~/store MAGICFS_PRELOAD_PREFIX=/magic \
//!   LD_PRELOAD=target/release/libmagicfs_preload.so cat /magic/notes.txt
//! ```
//!
//! The library defines the C library's file functions; the dynamic linker
//! binds the program's calls to them first. A call whose path lies under the
//! prefix (or whose descriptor came from such a path) is answered from the
//! store, opened in the process on first use (`MAGICFS_PRELOAD_STORE`,
//! created when missing); everything else goes on to the C library
//! unchanged.
//!
//! Descriptors of store files are real descriptor numbers: each one holds an
//! `O_PATH` descriptor of `/dev/null`, so the kernel never hands the number
//! to anything else, and a call the shim does not know fails (`EBADF`)
//! instead of reading the wrong file. Calls the shim knows but does not
//! support on store files (`mmap`, `sendfile`, `copy_file_range`, locks,
//! `fchdir`, …) fail with `ENOTSUP`.
//!
//! Modules: [`state`] (configuration, the store, the descriptor table, how a
//! path or descriptor is routed), [`fd_calls`] (I/O on descriptors),
//! [`path_calls`] (calls by name), [`stat_calls`] (the `stat` family),
//! [`dirs`] (`opendir`/`readdir`), [`stdio`] (`fopen`/`fdopen` over
//! `fopencookie`), [`real`] (the C library's own functions).
//!
//! Limits: statically linked programs and anything that makes system calls
//! itself (io_uring, raw `syscall(2)`, Go programs) bypass the shim; one
//! process holds a store at a time (a second waits two seconds, then gets
//! `EBUSY`); a child made by `fork` may read the parent's files but not
//! change the store; descriptors do not survive `exec`; the current
//! directory is never inside the store.

#![allow(clippy::missing_safety_doc)]

#[macro_use]
pub mod real;
pub mod dirs;
pub mod fd_calls;
pub mod path_calls;
pub mod stat_calls;
pub mod state;
pub mod stdio;
