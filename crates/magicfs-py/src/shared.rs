//! What a store and its open files share: the filesystem's calls, the
//! generation engine (when a model is configured) and the search index
//! (started on the first search). Closing the store lets all of it go, so
//! the store's directory is free for another process as soon as its open
//! files are closed.

use crate::errors::gen_error;
use magicfs_core::Fs;
use magicfs_gen::{Engine, GenError};
use magicfs_index::{Index, IndexConfig};
use magicfs_posix::{FsResult, Posix};
use magicfs_types::{Attr, Ino};
use parking_lot::{Mutex, RwLock};
use pyo3::exceptions::PyValueError;
use pyo3::PyResult;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// An open store, as its `Store` object sees it.
pub struct Shared {
    /// The store's directory (`None` in memory).
    pub dir: Option<PathBuf>,
    live: RwLock<Option<Arc<Live>>>,
}

impl Shared {
    /// A store over `posix`'s filesystem.
    pub fn new(posix: Posix, dir: Option<PathBuf>, engine: Option<Arc<Engine>>) -> Shared {
        let live =
            Live { posix, dir: dir.clone(), engine, generating: Mutex::new(HashMap::new()), index: OnceLock::new() };
        Shared { dir, live: RwLock::new(Some(Arc::new(live))) }
    }

    /// The store while it is open; `ValueError` once it is closed.
    pub fn live(&self) -> PyResult<Arc<Live>> {
        self.live.read().clone().ok_or_else(|| PyValueError::new_err("the store is closed"))
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.live.read().is_none()
    }

    /// Stops the index and generation, commits everything and closes the
    /// store; when no file of it is open, waits (a few seconds at most) for
    /// its directory to be free. Later calls do nothing.
    pub fn close(&self) -> FsResult<()> {
        let Some(live) = self.live.write().take() else { return Ok(()) };
        let result = live.shutdown();
        if Arc::strong_count(&live) == 1 {
            let fs = Arc::downgrade(live.fs());
            drop(live);
            // The index's worker lets go of the store as it stops.
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs.strong_count() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        result
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::error!("closing the store: {e}");
        }
    }
}

/// An open store: its calls, generation and search. Open files hold it too.
pub struct Live {
    /// The calls by path and descriptor.
    pub posix: Posix,
    dir: Option<PathBuf>,
    /// Generation, when a model is configured.
    pub engine: Option<Arc<Engine>>,
    /// One generation per file at a time: later readers wait for the first.
    generating: Mutex<HashMap<Ino, Arc<Mutex<()>>>>,
    index: OnceLock<Result<Index, String>>,
}

impl Live {
    /// The filesystem.
    pub fn fs(&self) -> &Arc<Fs> {
        self.posix.fs()
    }

    /// The attributes of a file about to be read, after generating its
    /// content if it is an empty file with a prompt (or a generator) and a
    /// model is configured. Slow when it generates: call without the GIL.
    pub fn generated(&self, attr: Attr, path: &str) -> PyResult<Attr> {
        let Some(engine) = &self.engine else { return Ok(attr) };
        if !engine.may_generate(&attr) {
            return Ok(attr);
        }
        let turn = self.generating.lock().entry(attr.ino).or_default().clone();
        let result = {
            let _mine = turn.lock();
            match engine.plan(attr.ino, false) {
                Ok(Some(plan)) => engine.run(&plan, false),
                Ok(None) => self.fs().getattr(attr.ino).map_err(GenError::Fs),
                Err(e) => Err(e),
            }
        };
        self.generating.lock().remove(&attr.ino);
        match result {
            Ok(a) => {
                self.note_written(a.ino);
                Ok(a)
            }
            // Someone wrote the file meanwhile: theirs is the content.
            Err(GenError::Changed) => self.fs().getattr(attr.ino).map_err(|e| crate::errors::os_error(e, path)),
            Err(e) => Err(gen_error(e, path)),
        }
    }

    /// The search index, started (model loading, first scan) on first use.
    pub fn index(&self) -> Result<&Index, String> {
        self.index
            .get_or_init(|| {
                let cfg = IndexConfig {
                    model_dir: magicfs_embed::default_model_dir(),
                    data_dir: self.dir.clone(),
                    ..IndexConfig::default()
                };
                Index::start(cfg, Some(self.fs().clone())).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A file was written: re-index it (once the index runs).
    pub fn note_written(&self, ino: Ino) {
        if let Some(Ok(i)) = self.index.get() {
            i.note_written(ino);
        }
    }

    /// A name went away: re-check its inode.
    pub fn note_unlinked(&self, ino: Ino) {
        if let Some(Ok(i)) = self.index.get() {
            i.note_unlinked(ino);
        }
    }

    /// Names changed: results may show old paths; `moved` is the renamed
    /// node (its base name is indexed).
    pub fn note_renamed(&self, moved: Option<Ino>) {
        if let Some(Ok(i)) = self.index.get() {
            i.note_renamed(moved);
        }
    }

    /// Stops the index and generation, commits everything and closes the store.
    fn shutdown(&self) -> FsResult<()> {
        if let Some(e) = &self.engine {
            e.cancel_all();
        }
        if let Some(Ok(i)) = self.index.get() {
            if let Err(e) = i.shutdown() {
                log::error!("closing the search index: {e}");
            }
        }
        self.fs().shutdown()
    }
}
