//! `Store`: a MagicFS store opened in the Python process. Every call runs
//! without the GIL while it touches the filesystem, the model or the index.

use crate::errors::{host_error, index_timeout, open_error, os_error, os_error2, snapshot_error};
use crate::handle::Handle;
use crate::shared::Shared;
use magicfs_core::{Codec, Fs, FsConfig};
use magicfs_gen::llm::LlmSettings;
use magicfs_gen::Engine;
use magicfs_llm::{LlmConfig, SharedLlm};
use magicfs_posix::{Absolute, FsError, Posix, DEV_MAJOR, DEV_MINOR};
use magicfs_types::{Attr, FileKind, ROOT_INO};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyDict};
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A path argument: its bytes for the filesystem and its text for errors.
pub struct Arg {
    pub bytes: Vec<u8>,
    pub text: String,
}

impl Arg {
    pub fn new(p: &Path) -> Arg {
        Arg { bytes: p.as_os_str().as_bytes().to_vec(), text: p.to_string_lossy().into_owned() }
    }
}

/// A byte string argument given as `bytes`-like or `str` (UTF-8), held
/// without a copy for `bytes` and `str` so it can be used without the GIL.
pub enum Data {
    Bytes(PyBackedBytes),
    Text(PyBackedStr),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Data::Bytes(b) => b,
            Data::Text(s) => s.as_bytes(),
            Data::Owned(v) => v,
        }
    }
}

pub fn bytes_arg(v: &Bound<'_, PyAny>) -> PyResult<Data> {
    if let Ok(s) = v.extract::<PyBackedStr>() {
        return Ok(Data::Text(s));
    }
    if let Ok(b) = v.extract::<PyBackedBytes>() {
        return Ok(Data::Bytes(b));
    }
    let buf = pyo3::buffer::PyBuffer::<u8>::get(v)
        .map_err(|_| PyTypeError::new_err("expected str or a bytes-like object"))?;
    Ok(Data::Owned(buf.to_vec(v.py())?))
}

/// Attributes as the pair of tuples `magicfs.Store.stat` turns into
/// `os.stat_result`: `(mode, ino, dev, nlink, uid, gid, size)` and
/// `(atime_ns, mtime_ns, ctime_ns, blksize, blocks, rdev)`.
pub type StatTuple = ((u32, u64, u64, u32, u32, u32, u64), (i128, i128, i128, u64, u64, u64));

pub fn stat_tuple(a: &Attr) -> StatTuple {
    let ns = |t: magicfs_types::Timespec| t.sec as i128 * 1_000_000_000 + t.nsec as i128;
    (
        (a.mode(), a.ino, libc::makedev(DEV_MAJOR, DEV_MINOR), a.nlink, a.uid, a.gid, a.size),
        (ns(a.atime), ns(a.mtime), ns(a.ctime), magicfs_posix::BLKSIZE, a.size.div_ceil(512), a.rdev as u64),
    )
}

/// How a store reaches a language model (the constructor's keywords).
struct ModelOptions<'a> {
    model: Option<&'a str>,
    url: Option<String>,
    name: Option<String>,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    threads: Option<u32>,
}

impl ModelOptions<'_> {
    /// The model's configuration: the environment's and defaults, then
    /// these; `None` when neither a model nor a server is named.
    fn config(self) -> PyResult<Option<LlmConfig>> {
        if self.model.is_none() && self.url.is_none() {
            return Ok(None);
        }
        let mut c = LlmConfig::from_env().map_err(|e| PyValueError::new_err(e.to_string()))?;
        if let Some(p) = self.model.filter(|m| *m != "default") {
            c.model_path = PathBuf::from(p);
        }
        c.url = self.url.or(c.url);
        c.model = self.name.or(c.model);
        c.max_tokens = self.max_tokens.unwrap_or(c.max_tokens);
        if let Some(t) = self.temperature {
            c.sampling.chat.temperature = t;
        }
        c.threads = self.threads.unwrap_or(c.threads);
        c.check().map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Some(c))
    }
}

/// A MagicFS store in this process: no mount needed. Open one with
/// `magicfs.open_store(path)` or `magicfs.open_store(memory=True)`.
#[pyclass(frozen, subclass, module = "magicfs._magicfs", name = "Store")]
pub struct Store {
    pub(crate) inner: Arc<Shared>,
}

fn fs_err(path: &Arg) -> impl Fn(FsError) -> PyErr + '_ {
    move |e| os_error(e, &path.text)
}

#[pymethods]
impl Store {
    #[new]
    #[pyo3(signature = (path=None, *, memory=false, create=true, codec="zstd", model=Some("default"), llm_url=None,
                        llm_model=None, max_tokens=None, temperature=None, threads=None, import_from=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: Option<PathBuf>,
        memory: bool,
        create: bool,
        codec: &str,
        model: Option<&str>,
        llm_url: Option<String>,
        llm_model: Option<String>,
        max_tokens: Option<u32>,
        temperature: Option<f32>,
        threads: Option<u32>,
        import_from: Option<PathBuf>,
    ) -> PyResult<Store> {
        let codec = Codec::parse(codec)
            .ok_or_else(|| PyValueError::new_err(format!("codec {codec:?}: use \"zstd\", \"gzip\" or \"none\"")))?;
        let cfg = FsConfig { codec, ..FsConfig::default() };
        let dir = match (path, memory) {
            (Some(_), true) => return Err(PyValueError::new_err("give a path or memory=True, not both")),
            (None, false) => {
                return Err(PyValueError::new_err("give the store's directory, or memory=True for a store in memory"))
            }
            (p, _) => p,
        };
        let options = ModelOptions { model, url: llm_url, name: llm_model, max_tokens, temperature, threads };
        let llm = options.config()?.map(SharedLlm::new);
        let shown = dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "<memory>".into());
        let fs = py.detach(|| match &dir {
            Some(d) => Fs::open_store(d, create || import_from.is_some(), cfg).map_err(|e| open_error(e, &shown)),
            None => Ok(Fs::memory(cfg)),
        })?;
        let fs = Arc::new(fs);
        if let Some(json) = &import_from {
            let shown = json.display().to_string();
            py.detach(|| -> PyResult<()> {
                let file = std::fs::File::open(json).map_err(|e| host_error(e, "cannot open", &shown))?;
                let mut tree = magicfs_snapshot::FsTree::shared(fs.clone());
                magicfs_snapshot::import(std::io::BufReader::new(file), &mut tree)
                    .map_err(|e| snapshot_error(e, &shown))?;
                Ok(())
            })?;
        }
        let settings = LlmSettings {
            max_tokens: max_tokens.unwrap_or(LlmSettings::default().max_tokens),
            ..LlmSettings::default()
        };
        let engine = llm.map(|l| {
            let handle = l.handle();
            let registry = magicfs_gen::builtin_registry(Some(handle.clone()), settings);
            Arc::new(Engine::new(fs.clone(), registry, Some(handle)))
        });
        let posix = Posix::new(fs, Absolute::StoreRoot);
        Ok(Store { inner: Arc::new(Shared::new(posix, dir, engine)) })
    }

    /// The store's directory, or `None` for a store in memory.
    #[getter]
    fn path(&self) -> Option<PathBuf> {
        self.inner.dir.clone()
    }

    /// True once `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// True when a language model is configured (generation on first read,
    /// `generate_structure`).
    #[getter]
    fn has_model(&self) -> bool {
        self.inner.live().is_ok_and(|l| l.engine.is_some())
    }

    /// Commits everything and closes the store (also done when the object
    /// is collected). Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.close()).map_err(|e| os_error(e, "<store>"))
    }

    /// Makes everything written so far durable.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        let live = self.inner.live()?;
        py.detach(|| live.fs().sync_store()).map_err(|e| os_error(e, "<store>"))
    }

    /// Creates directory `path` (`parents`: and missing ones above it;
    /// `exist_ok`: an existing directory is fine).
    #[pyo3(signature = (path, mode=0o777, parents=false, exist_ok=false))]
    fn mkdir(&self, py: Python<'_>, path: PathBuf, mode: u32, parents: bool, exist_ok: bool) -> PyResult<()> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        py.detach(|| {
            let made = |sub: &[u8]| match live.posix.mkdir(ROOT_INO, sub, mode) {
                Err(FsError::Exists) if exist_ok || sub.len() < p.bytes.len() => {
                    match live.posix.stat(ROOT_INO, sub, true) {
                        Ok(a) if a.kind == FileKind::Dir => Ok(()),
                        _ => Err(FsError::Exists),
                    }
                }
                r => r.map(|_| ()),
            };
            if parents {
                for (i, b) in p.bytes.iter().enumerate() {
                    if *b == b'/' && i > 0 && p.bytes[i - 1] != b'/' {
                        made(&p.bytes[..i])?;
                    }
                }
            }
            made(&p.bytes)
        })
        .map_err(fs_err(&p))
    }

    /// Writes `data` (bytes-like, or str as UTF-8) as the whole content of
    /// file `path` (created when missing; with `append`, after what is
    /// there). Returns the number of bytes written.
    #[pyo3(signature = (path, data, *, append=false, mode=0o666))]
    fn write(
        &self,
        py: Python<'_>,
        path: PathBuf,
        data: &Bound<'_, PyAny>,
        append: bool,
        mode: u32,
    ) -> PyResult<usize> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let data = bytes_arg(data)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | if append { libc::O_APPEND } else { libc::O_TRUNC };
        py.detach(|| {
            let f = live.posix.open(ROOT_INO, &p.bytes, flags, mode)?;
            let n = f.write(&data)?;
            f.close()?;
            live.note_written(f.ino());
            Ok(n)
        })
        .map_err(fs_err(&p))
    }

    /// The content of file `path` (`size` bytes from `offset`; all by
    /// default). An empty file with a prompt is generated first when a
    /// model is configured.
    #[pyo3(signature = (path, size=-1, offset=0))]
    fn read<'py>(&self, py: Python<'py>, path: PathBuf, size: i64, offset: u64) -> PyResult<Bound<'py, PyBytes>> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let attr = py.detach(|| {
            let a = live.posix.stat(ROOT_INO, &p.bytes, true).map_err(fs_err(&p))?;
            match a.kind {
                FileKind::File => live.generated(a, &p.text),
                FileKind::Dir => Err(os_error(FsError::IsDir, &p.text)),
                _ => Err(os_error(FsError::Invalid, &p.text)),
            }
        })?;
        let want = attr.size.saturating_sub(offset).min(if size < 0 { u64::MAX } else { size as u64 });
        let len = usize::try_from(want).map_err(|_| os_error(FsError::FileTooBig, &p.text))?;
        read_bytes(py, live.fs(), attr.ino, offset, len).map_err(fs_err(&p))
    }

    /// The names in directory `path` (without `.` and `..`).
    #[pyo3(signature = (path=PathBuf::from("/")))]
    fn listdir(&self, py: Python<'_>, path: PathBuf) -> PyResult<Vec<String>> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let names = py
            .detach(|| {
                let d = live.posix.list(ROOT_INO, &p.bytes)?;
                Ok(d.entries().iter().skip(2).map(|e| String::from_utf8_lossy(&e.name).into_owned()).collect())
            })
            .map_err(fs_err(&p))?;
        Ok(names)
    }

    /// The attributes of `path` as a tuple (see `magicfs.Store.stat`).
    #[pyo3(signature = (path, follow_symlinks=true))]
    fn _stat(&self, py: Python<'_>, path: PathBuf, follow_symlinks: bool) -> PyResult<StatTuple> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let a = py.detach(|| live.posix.stat(ROOT_INO, &p.bytes, follow_symlinks)).map_err(fs_err(&p))?;
        Ok(stat_tuple(&a))
    }

    /// True when `path` exists (following symbolic links).
    fn exists(&self, py: Python<'_>, path: PathBuf) -> PyResult<bool> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        match py.detach(|| live.posix.stat(ROOT_INO, &p.bytes, true)) {
            Ok(_) => Ok(true),
            Err(FsError::NotFound | FsError::NotDir | FsError::Loop) => Ok(false),
            Err(e) => Err(os_error(e, &p.text)),
        }
    }

    /// Renames `src` to `dst`, replacing a file (or empty directory) there.
    fn rename(&self, py: Python<'_>, src: PathBuf, dst: PathBuf) -> PyResult<()> {
        let live = self.inner.live()?;
        let (a, b) = (Arg::new(&src), Arg::new(&dst));
        py.detach(|| {
            let replaced = live.posix.stat(ROOT_INO, &b.bytes, false).ok();
            live.posix.rename(ROOT_INO, &a.bytes, ROOT_INO, &b.bytes, 0)?;
            live.note_renamed(live.posix.stat(ROOT_INO, &b.bytes, false).ok().map(|s| s.ino));
            if let Some(r) = replaced {
                live.note_unlinked(r.ino);
            }
            Ok(())
        })
        .map_err(|e| os_error2(e, &a.text, &b.text))
    }

    /// Removes file (or symbolic link) `path`.
    fn unlink(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        py.detach(|| {
            let gone = live.posix.stat(ROOT_INO, &p.bytes, false).ok();
            live.posix.unlink(ROOT_INO, &p.bytes)?;
            if let Some(a) = gone {
                live.note_unlinked(a.ino);
            }
            Ok(())
        })
        .map_err(fs_err(&p))
    }

    /// Removes the empty directory `path`.
    fn rmdir(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        py.detach(|| live.posix.rmdir(ROOT_INO, &p.bytes)).map_err(fs_err(&p))
    }

    /// Creates symbolic link `path` pointing to `target` (absolute targets
    /// are read from the store's root).
    fn symlink(&self, py: Python<'_>, target: PathBuf, path: PathBuf) -> PyResult<()> {
        let live = self.inner.live()?;
        let (t, p) = (Arg::new(&target), Arg::new(&path));
        py.detach(|| live.posix.symlink(&t.bytes, ROOT_INO, &p.bytes).map(|_| ())).map_err(fs_err(&p))
    }

    /// The target of symbolic link `path`.
    fn readlink(&self, py: Python<'_>, path: PathBuf) -> PyResult<String> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let t = py.detach(|| live.posix.readlink(ROOT_INO, &p.bytes)).map_err(fs_err(&p))?;
        Ok(String::from_utf8_lossy(&t).into_owned())
    }

    /// Makes `dst` another name (hard link) of file `src`.
    fn link(&self, py: Python<'_>, src: PathBuf, dst: PathBuf) -> PyResult<()> {
        let live = self.inner.live()?;
        let (a, b) = (Arg::new(&src), Arg::new(&dst));
        py.detach(|| live.posix.link(ROOT_INO, &a.bytes, ROOT_INO, &b.bytes, false).map(|_| ()))
            .map_err(|e| os_error2(e, &a.text, &b.text))
    }

    /// Changes the permission bits of `path`.
    fn chmod(&self, py: Python<'_>, path: PathBuf, mode: u32) -> PyResult<()> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let set = magicfs_core::SetAttr { mode: Some(mode & 0o7777), ..Default::default() };
        py.detach(|| live.posix.set_attr(ROOT_INO, &p.bytes, true, set).map(|_| ())).map_err(fs_err(&p))
    }

    /// Cuts or extends file `path` to `length` bytes.
    fn truncate(&self, py: Python<'_>, path: PathBuf, length: u64) -> PyResult<()> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let set = magicfs_core::SetAttr { size: Some(length), ..Default::default() };
        py.detach(|| live.posix.set_attr(ROOT_INO, &p.bytes, true, set).map(|_| ())).map_err(fs_err(&p))
    }

    /// Extended attribute `name` of `path`.
    #[pyo3(signature = (path, name, *, follow_symlinks=true))]
    fn getxattr<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        name: &str,
        follow_symlinks: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let v = py
            .detach(|| live.posix.getxattr(ROOT_INO, &p.bytes, name.as_bytes(), follow_symlinks))
            .map_err(fs_err(&p))?;
        Ok(PyBytes::new(py, &v))
    }

    /// Sets extended attribute `name` of `path` to `value` (bytes-like or
    /// str); `flags`: `os.XATTR_CREATE` or `os.XATTR_REPLACE`.
    #[pyo3(signature = (path, name, value, flags=0, *, follow_symlinks=true))]
    fn setxattr(
        &self,
        py: Python<'_>,
        path: PathBuf,
        name: &str,
        value: &Bound<'_, PyAny>,
        flags: i32,
        follow_symlinks: bool,
    ) -> PyResult<()> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let value = bytes_arg(value)?;
        py.detach(|| live.posix.setxattr(ROOT_INO, &p.bytes, name.as_bytes(), &value, flags, follow_symlinks))
            .map_err(fs_err(&p))?;
        if let Some(e) = &live.engine {
            if magicfs_gen::names::affects_rules(name.as_bytes()) {
                e.rules_changed();
            }
        }
        Ok(())
    }

    /// The names of `path`'s extended attributes.
    #[pyo3(signature = (path, *, follow_symlinks=true))]
    fn listxattr(&self, py: Python<'_>, path: PathBuf, follow_symlinks: bool) -> PyResult<Vec<String>> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let names = py.detach(|| live.posix.listxattr(ROOT_INO, &p.bytes, follow_symlinks)).map_err(fs_err(&p))?;
        Ok(names.iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect())
    }

    /// Removes extended attribute `name` of `path`.
    #[pyo3(signature = (path, name, *, follow_symlinks=true))]
    fn removexattr(&self, py: Python<'_>, path: PathBuf, name: &str, follow_symlinks: bool) -> PyResult<()> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        py.detach(|| live.posix.removexattr(ROOT_INO, &p.bytes, name.as_bytes(), follow_symlinks)).map_err(fs_err(&p))
    }

    /// Opens `path` with `open(2)` flags; the raw handle behind `Store.open`.
    #[pyo3(signature = (path, flags, mode=0o666))]
    fn _open(&self, py: Python<'_>, path: PathBuf, flags: i32, mode: u32) -> PyResult<Handle> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let reads = flags & libc::O_ACCMODE != libc::O_WRONLY && flags & libc::O_TRUNC == 0;
        let file = py.detach(|| {
            if reads {
                if let Ok(a) = live.posix.stat(ROOT_INO, &p.bytes, true) {
                    if a.kind == FileKind::File {
                        live.generated(a, &p.text)?;
                    }
                }
            }
            live.posix.open(ROOT_INO, &p.bytes, flags, mode).map_err(fs_err(&p))
        })?;
        Ok(Handle::new(file, p.text, live))
    }

    /// A descriptor of a sealed memfd holding file `path`'s contents now:
    /// `os.read`, `mmap`, `os.fstat` and child processes can use it; it
    /// cannot be written. Close it with `os.close`.
    fn export_memfd(&self, py: Python<'_>, path: PathBuf) -> PyResult<i32> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let fd = py.detach(|| live.posix.export_memfd(ROOT_INO, &p.bytes)).map_err(fs_err(&p))?;
        Ok(fd.into_raw_fd())
    }

    /// Writes the whole tree to `json_path` as a `magicfs export` document
    /// (read it back with `magicfs.load` or `magicfs import`). Returns the
    /// counts: entries, dirs, files, links, bytes.
    fn save<'py>(&self, py: Python<'py>, json_path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
        let live = self.inner.live()?;
        let shown = json_path.display().to_string();
        let s = py.detach(|| -> PyResult<magicfs_snapshot::Summary> {
            let tmp = json_path.with_extension("json.partial");
            let file = std::fs::File::create(&tmp).map_err(|e| host_error(e, "cannot create", &shown))?;
            let mut out = std::io::BufWriter::new(file);
            let mut tree = magicfs_snapshot::FsTree::shared(live.fs().clone());
            let r = magicfs_snapshot::export(&mut tree, &mut out).and_then(|s| {
                use std::io::Write;
                out.flush().map_err(|e| magicfs_snapshot::SnapshotError::io(format!("writing {shown}"), e))?;
                Ok(s)
            });
            let s = match r {
                Ok(s) => s,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(snapshot_error(e, &shown));
                }
            };
            std::fs::rename(&tmp, &json_path).map_err(|e| host_error(e, "cannot write", &shown))?;
            Ok(s)
        })?;
        let d = PyDict::new(py);
        d.set_item("entries", s.entries)?;
        d.set_item("dirs", s.dirs)?;
        d.set_item("files", s.files)?;
        d.set_item("links", s.links)?;
        d.set_item("bytes", s.bytes)?;
        Ok(d)
    }

    /// The files whose text means what `query` asks, best first, as
    /// `(path, score, passage)`. The index is built on the first search
    /// (all-MiniLM-L6-v2 from `scripts/models.sh`) and kept current; the
    /// search waits for it up to `timeout` seconds.
    #[pyo3(signature = (query, top_k=10, min_score=0.2, timeout=300.0))]
    fn search(
        &self,
        py: Python<'_>,
        query: &str,
        top_k: usize,
        min_score: f32,
        timeout: f64,
    ) -> PyResult<Vec<(String, f32, String)>> {
        let live = self.inner.live()?;
        if !(1..=1000).contains(&top_k) {
            return Err(PyValueError::new_err("top_k must be between 1 and 1000"));
        }
        let r = py.detach(|| -> PyResult<_> {
            let index = live.index().map_err(PyRuntimeError::new_err)?;
            if !index.wait_idle(Duration::from_secs_f64(timeout.max(0.0))) {
                return Err(index_timeout(timeout));
            }
            index.search(query, top_k, min_score).map_err(|e| match e {
                magicfs_index::SearchError::EmptyQuery => PyValueError::new_err("the query is empty"),
                e => PyRuntimeError::new_err(e.to_string()),
            })
        })?;
        Ok(r.hits.iter().map(|h| (h.path.clone(), h.score, h.passage.clone())).collect())
    }

    /// Asks the model for a tree of files described by `sentence` and
    /// creates it under directory `path`: every file empty, with its own
    /// prompt, written on first read. Returns the created paths.
    #[pyo3(signature = (sentence, path=PathBuf::from("/")))]
    fn generate_structure(&self, py: Python<'_>, sentence: &str, path: PathBuf) -> PyResult<Vec<String>> {
        let live = self.inner.live()?;
        let p = Arg::new(&path);
        let engine = live.engine.clone().ok_or_else(|| {
            crate::errors::GenerationError::new_err((
                libc::EIO,
                "no language model is configured: open the store with model=\"default\" (or a GGUF path, or llm_url=...)",
            ))
        })?;
        let applied = py.detach(|| {
            let dir = live.posix.stat(ROOT_INO, &p.bytes, true).map_err(fs_err(&p))?;
            if dir.kind != FileKind::Dir {
                return Err(os_error(FsError::NotDir, &p.text));
            }
            engine.make_tree(dir.ino, sentence, live.posix.ctx()).map_err(|e| crate::errors::gen_error(e, &p.text))
        })?;
        let base = p.text.trim_end_matches('/');
        Ok(applied.created.iter().map(|c| format!("{base}/{c}")).collect())
    }

    fn __repr__(&self) -> String {
        match &self.inner.dir {
            Some(d) => format!("<magicfs.Store {}>", d.display()),
            None => "<magicfs.Store in memory>".into(),
        }
    }
}

/// Reads `len` bytes of `ino` at `offset` straight into a new `bytes`
/// object, without the GIL.
pub fn read_bytes<'py>(
    py: Python<'py>,
    fs: &Arc<Fs>,
    ino: u64,
    offset: u64,
    len: usize,
) -> Result<Bound<'py, PyBytes>, FsError> {
    let mut got = Ok(0);
    let out = PyBytes::new_with(py, len, |buf| {
        let target = crate::handle::RawBuf::new(buf);
        got = py.detach(|| {
            let parts = fs.read_parts(ino, offset, len as u64)?;
            let n = parts.len();
            // SAFETY: the bytes object is ours alone until returned.
            parts.copy_to(unsafe { &mut target.slice()[..n] });
            Ok(n)
        });
        Ok(())
    })
    .map_err(|_| FsError::NoSpace)?;
    let n = got?;
    if n == len {
        return Ok(out);
    }
    // The file shrank meanwhile: keep what was read.
    Ok(PyBytes::new(py, &out.as_bytes()[..n]))
}
