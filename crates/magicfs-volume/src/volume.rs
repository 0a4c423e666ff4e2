//! [`Volume`]: a backend with the limits every front end shares.

use crate::compute::{self, ComputeOut, ComputeRequest};
use crate::error::{VResult, VolumeError};
use crate::types::{Entry, Hit, Planned, WriteMode};
use crate::{Backend, VPath};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default cap of one read: 1 MiB.
pub const DEFAULT_MAX_READ: u64 = 1 << 20;
/// Default cap of one write or upload: 16 MiB.
pub const DEFAULT_MAX_WRITE: u64 = 16 << 20;
/// Most entries one listing returns.
const MAX_LIST: usize = 10_000;
/// Most entries one recursive delete removes.
const MAX_DELETE: usize = 100_000;
/// Most files a generated tree is searched for.
const MAX_TREE_FILES: usize = 500;

/// What a volume allows.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most bytes one read returns (longer reads are cut and say so).
    pub max_read: u64,
    /// Most bytes one write or upload carries.
    pub max_write: u64,
    /// Refuse every change (writes, moves, deletes, chat turns, generation).
    pub read_only: bool,
    /// Longest wait for one chat reply.
    pub chat_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_read: DEFAULT_MAX_READ,
            max_write: DEFAULT_MAX_WRITE,
            read_only: false,
            chat_timeout: Duration::from_secs(600),
        }
    }
}

/// The answer of [`Volume::read`].
#[derive(Clone, Debug, Serialize)]
pub struct ReadOut {
    /// The file, from the volume's root.
    pub path: String,
    /// First byte returned.
    pub offset: u64,
    /// Size of the file.
    pub size: u64,
    /// True when the bytes returned reach the end of the file.
    pub eof: bool,
    /// True when fewer bytes were returned than asked because of the read cap.
    pub capped: bool,
    /// The bytes.
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// A volume: a backend and its limits. Cheap to clone.
#[derive(Clone)]
pub struct Volume {
    backend: Arc<dyn Backend>,
    limits: Limits,
}

impl Volume {
    /// `backend` under `limits`.
    pub fn new(backend: Arc<dyn Backend>, limits: Limits) -> Volume {
        Volume { backend, limits }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn writable(&self) -> VResult<()> {
        if self.limits.read_only {
            Err(VolumeError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The entries of directory `path`, sorted by name (with `user.*`
    /// attributes when `xattrs`); the flag says whether the listing was cut.
    pub fn list(&self, path: &str, xattrs: bool) -> VResult<(Vec<Entry>, bool)> {
        let p = VPath::parse(path)?;
        let mut entries = self.backend.list(&p)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let cut = entries.len() > MAX_LIST;
        entries.truncate(MAX_LIST);
        if xattrs {
            for e in &mut entries {
                if let Ok(p) = VPath::parse(&e.path) {
                    e.xattrs = self.backend.stat(&p, true).ok().and_then(|s| s.xattrs);
                }
            }
        }
        Ok((entries, cut))
    }

    /// An entry with its `user.*` attributes (a symlink is described, not followed).
    pub fn stat(&self, path: &str) -> VResult<Entry> {
        self.backend.stat(&VPath::parse(path)?, true)
    }

    /// Bytes of a file: from `offset` (default 0), `length` bytes (default:
    /// to the end), never more than the read cap.
    pub fn read(&self, path: &str, offset: Option<u64>, length: Option<u64>) -> VResult<ReadOut> {
        let p = VPath::parse(path)?;
        let offset = offset.unwrap_or(0);
        let want = length.unwrap_or(u64::MAX);
        let len = want.min(self.limits.max_read);
        let (data, size) = self.backend.read(&p, offset, len)?;
        if offset > size {
            return Err(VolumeError::BadArgument(format!(
                "offset {offset} is past the end of {} ({size} bytes)",
                p.display()
            )));
        }
        let end = offset + data.len() as u64;
        Ok(ReadOut { path: p.display(), offset, size, eof: end >= size, capped: want > len && end < size, data })
    }

    /// Writes `data` to `path` (creating missing directories above it when `parents`).
    pub fn write(&self, path: &str, data: &[u8], mode: WriteMode, parents: bool) -> VResult<Entry> {
        self.writable()?;
        let p = VPath::parse(path)?;
        if data.len() as u64 > self.limits.max_write {
            return Err(VolumeError::TooLarge(format!(
                "{} bytes is over the write limit of {} bytes",
                data.len(),
                self.limits.max_write
            )));
        }
        if parents {
            if let Some((dir, _)) = p.split() {
                self.mkdirs(&dir)?;
            }
        }
        self.backend.write(&p, data, mode)?;
        self.backend.stat(&p, false)
    }

    fn mkdirs(&self, dir: &VPath) -> VResult<()> {
        let mut cur = VPath::root();
        for part in dir.parts() {
            cur = cur.join(part)?;
            match self.backend.mkdir(&cur) {
                Ok(()) | Err(VolumeError::Exists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates directory `path` (and missing ones above it when `parents`).
    pub fn mkdir(&self, path: &str, parents: bool) -> VResult<Entry> {
        self.writable()?;
        let p = VPath::parse(path)?;
        if p.is_root() {
            return Err(VolumeError::Exists("/ already exists".into()));
        }
        if parents {
            self.mkdirs(&p)?;
        } else {
            self.backend.mkdir(&p)?;
        }
        self.backend.stat(&p, false)
    }

    /// Moves `from` to `to`; an existing `to` is replaced only with `replace`.
    pub fn rename(&self, from: &str, to: &str, replace: bool) -> VResult<Entry> {
        self.writable()?;
        let (a, b) = (VPath::parse(from)?, VPath::parse(to)?);
        if b.starts_with(&a) && a != b {
            return Err(VolumeError::BadArgument(format!("cannot move {} into itself ({})", a.display(), b.display())));
        }
        self.backend.rename(&a, &b, replace)?;
        self.backend.stat(&b, false)
    }

    /// Deletes `path` (a non-empty directory only with `recursive`); returns
    /// how many entries were removed.
    pub fn delete(&self, path: &str, recursive: bool) -> VResult<usize> {
        self.writable()?;
        let p = VPath::parse(path)?;
        if p.is_root() {
            return Err(VolumeError::BadArgument("the volume's root cannot be deleted".into()));
        }
        let mut removed = 0;
        self.delete_inner(&p, recursive, &mut removed)?;
        Ok(removed)
    }

    fn delete_inner(&self, p: &VPath, recursive: bool, removed: &mut usize) -> VResult<()> {
        let e = self.backend.stat(p, false)?;
        if e.kind == "dir" && recursive {
            for child in self.backend.list(p)? {
                let c = VPath::parse(&child.path)?;
                self.delete_inner(&c, true, removed)?;
            }
        }
        if *removed >= MAX_DELETE {
            return Err(VolumeError::TooLarge(format!(
                "stopped after deleting {MAX_DELETE} entries; run the delete again for the rest"
            )));
        }
        self.backend.remove(p)?;
        *removed += 1;
        Ok(())
    }

    /// The files that best match `query` (at most `k`, 1 to 100).
    pub fn search(&self, query: &str, k: usize) -> VResult<Vec<Hit>> {
        if query.trim().is_empty() {
            return Err(VolumeError::BadArgument("the query is empty: say what to look for".into()));
        }
        if !(1..=100).contains(&k) {
            return Err(VolumeError::BadArgument(format!("k must be between 1 and 100 (got {k})")));
        }
        self.backend.search(query.trim(), k)
    }

    /// Sends `message` to session `id` and returns the reply; each piece of
    /// it goes to `on_piece` as it is written.
    pub fn chat(&self, id: &str, message: &str, on_piece: &mut dyn FnMut(&str)) -> VResult<String> {
        self.writable()?;
        let deadline = Instant::now() + self.limits.chat_timeout;
        self.backend.chat(id, message, deadline, on_piece)
    }

    /// Writes a new file at `path` from `prompt`, now; returns the file with
    /// its provenance.
    pub fn generate_file(&self, path: &str, prompt: &str) -> VResult<Entry> {
        self.writable()?;
        if prompt.trim().is_empty() {
            return Err(VolumeError::BadArgument("the prompt is empty: say what the file should hold".into()));
        }
        let p = VPath::parse(path)?;
        match self.backend.stat(&p, false) {
            Ok(e) if e.kind != "file" || e.size > 0 => {
                return Err(VolumeError::Exists(format!(
                    "{} already has content; generate writes new or empty files (delete it, or pick another path)",
                    p.display()
                )))
            }
            Ok(_) => {}
            Err(VolumeError::NotFound(_)) => self.backend.write(&p, b"", WriteMode::CreateNew)?,
            Err(e) => return Err(e),
        }
        self.backend.set_prompt(&p, prompt.trim())?;
        self.backend.fill(&p)?;
        self.backend.stat(&p, true)
    }

    /// Asks the model for a tree under directory `dir` (created when
    /// missing) described by `prompt`: empty files with their own prompts,
    /// written on first read, or now when `fill` (`progress` hears of each).
    pub fn generate_tree(
        &self,
        dir: &str,
        prompt: &str,
        fill: bool,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> VResult<Vec<Planned>> {
        self.writable()?;
        if prompt.trim().is_empty() {
            return Err(VolumeError::BadArgument("the prompt is empty: say what the tree is about".into()));
        }
        let d = VPath::parse(dir)?;
        if !d.is_root() {
            self.mkdirs(&d)?;
        }
        self.backend.plan_tree(&d, prompt.trim())?;
        let mut files = Vec::new();
        self.lazy_files(&d, 0, &mut files);
        if fill {
            let total = files.len();
            for (i, f) in files.iter_mut().enumerate() {
                progress(i, total, &f.path);
                let p = VPath::parse(&f.path)?;
                f.size = self.backend.fill(&p)?;
            }
            progress(total, total, "");
        }
        Ok(files)
    }

    /// Empty files with a prompt under `dir`, in name order.
    fn lazy_files(&self, dir: &VPath, depth: usize, out: &mut Vec<Planned>) {
        if depth > 8 || out.len() >= MAX_TREE_FILES {
            return;
        }
        let Ok(mut entries) = self.backend.list(dir) else { return };
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in entries {
            let Ok(p) = VPath::parse(&e.path) else { continue };
            if e.kind == "dir" {
                self.lazy_files(&p, depth + 1, out);
            } else if e.kind == "file" && e.size == 0 {
                if let Some(prompt) = self.backend.xattr(&p, "user.magic.prompt") {
                    out.push(Planned { path: e.path.clone(), prompt, size: 0 });
                }
            }
        }
    }

    /// Runs a byte-window op over a file.
    pub fn compute(&self, path: &str, req: &ComputeRequest) -> VResult<ComputeOut> {
        let p = VPath::parse(path)?;
        let map = self.backend.map(&p)?;
        compute::run(&p.display(), &map, req)
    }

    /// Regular files of the volume, breadth first (the virtual `.magic/`
    /// and `search/` are left out), at most `max`.
    pub fn files(&self, max: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut queue = std::collections::VecDeque::from([VPath::root()]);
        while let Some(dir) = queue.pop_front() {
            let Ok(mut entries) = self.backend.list(&dir) else { continue };
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            for e in entries {
                if dir.is_root() && (e.name == ".magic" || e.name == "search") {
                    continue;
                }
                match e.kind {
                    "dir" => {
                        if let Ok(p) = VPath::parse(&e.path) {
                            queue.push_back(p);
                        }
                    }
                    "file" => {
                        out.push(e);
                        if out.len() >= max {
                            return out;
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// The volume's status (`.magic/status`), with a `volume` section.
    pub fn status(&self) -> VResult<Value> {
        let mut v = self.backend.status()?;
        if !v.is_object() {
            v = serde_json::json!({});
        }
        v["volume"] = serde_json::json!({
            "kind": self.backend.kind(),
            "root": self.backend.root(),
            "read_only": self.limits.read_only,
            "max_read": self.limits.max_read,
            "max_write": self.limits.max_write,
        });
        Ok(v)
    }
}
