//! The native module `magicfs._magicfs` of the Python package `magicfs`
//! (`python/`, built with maturin): a MagicFS store in the Python process.
//!
//! - [`store`]: `Store` — files, directories, links, xattrs, memfd export,
//!   `save`/`load` (the `magicfs export` JSON), `search`, `generate_structure`
//!   and generation on first read.
//! - [`handle`]: `Handle` — an open file, wrapped as `io.RawIOBase` by the
//!   package.
//! - [`shared`]: what a store and its files share (engine, index).
//! - [`errors`]: errors as the matching Python exceptions.
//!
//! Every call releases the GIL while it works, so threads run in parallel;
//! a store is safe to use from several threads at once.

mod errors;
mod handle;
mod shared;
mod store;

use pyo3::prelude::*;

#[pymodule]
fn _magicfs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    if std::env::var_os("MAGICFS_LOG").is_some() {
        let _ = env_logger::Builder::from_env(env_logger::Env::new().filter("MAGICFS_LOG")).try_init();
    }
    m.add_class::<store::Store>()?;
    m.add_class::<handle::Handle>()?;
    m.add("GenerationError", m.py().get_type::<errors::GenerationError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
