//! [`StoreBackend`]: an unmounted store opened in process, with the parts a
//! mount would have — the search index, the chat sessions engine and the
//! generation engine — told about every change as the FUSE adapter tells
//! them. Paths are walked component by component through the inode table;
//! symlinks are followed inside the volume (a relative target is spliced in,
//! an absolute one or one that climbs above the root is refused).

use crate::chat::{check_session_id, finish, user_turn, wait_or_give_up, ReplyText};
use crate::error::{VResult, VolumeError};
use crate::types::{Entry, Hit, WriteMode};
use crate::{Backend, VPath};
use magicfs_chat::Sessions;
use magicfs_core::{Ctx, Fs, OpenOptions, RenameFlags};
use magicfs_gen::{Engine, GenError};
use magicfs_index::Index;
use magicfs_types::{Attr, FileKind, FsError, Ino, ROOT_INO};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Most symlinks followed while resolving one path.
const MAX_HOPS: usize = 40;
/// Names the mount reserves in its root (virtual directories).
const RESERVED: [&str; 2] = [".magic", "search"];

/// What a store volume is made of: the filesystem and the engines a mount
/// would run over it (each optional).
pub struct StoreParts {
    /// The open store.
    pub fs: Arc<Fs>,
    /// Where it lives (shown in status).
    pub data_dir: String,
    /// The search index (started over `fs`).
    pub index: Option<Index>,
    /// The chat sessions engine (started over `fs`).
    pub sessions: Option<Arc<Sessions>>,
    /// The generation engine over `fs`.
    pub engine: Option<Arc<Engine>>,
}

/// An unmounted store served in process.
pub struct StoreBackend {
    parts: StoreParts,
}

fn me() -> Ctx {
    // SAFETY: getuid/getgid cannot fail.
    unsafe { Ctx { uid: libc::getuid(), gid: libc::getgid() } }
}

fn kind_of(k: FileKind) -> &'static str {
    match k {
        FileKind::File => "file",
        FileKind::Dir => "dir",
        FileKind::Symlink => "symlink",
        _ => "other",
    }
}

fn gen_error(e: GenError, p: &VPath) -> VolumeError {
    match e {
        GenError::Fs(fe) => VolumeError::fs(fe, p.as_str()),
        GenError::NoRule(_) => VolumeError::BadArgument(format!(
            "{}: no prompt or generator (own or inherited); give the file a prompt first",
            p.display()
        )),
        GenError::Tree(m) => {
            VolumeError::Unavailable(format!("{}: the model's tree could not be used: {m}", p.display()))
        }
        other => VolumeError::Unavailable(format!("{}: {other}", p.display())),
    }
}

impl StoreBackend {
    /// A volume over `parts`.
    pub fn new(parts: StoreParts) -> StoreBackend {
        StoreBackend { parts }
    }

    /// Stops the engines and flushes the store (call before exit).
    pub fn shutdown(&self) -> VResult<()> {
        if let Some(s) = &self.parts.sessions {
            s.shutdown();
        }
        if let Some(e) = &self.parts.engine {
            e.cancel_all();
        }
        if let Some(i) = &self.parts.index {
            if let Err(e) = i.shutdown() {
                log::warn!("search index: {e}");
            }
        }
        self.parts.fs.shutdown().map_err(|e| VolumeError::Io(format!("flushing the store: {e}")))
    }

    fn fs(&self) -> &Fs {
        &self.parts.fs
    }

    /// Resolves `p` from the root: every symlink on the way is followed (the
    /// last one only when `follow_last`), inside the volume. Returns the
    /// entry's attributes and its canonical path.
    fn walk(&self, p: &VPath, follow_last: bool) -> VResult<(Attr, String)> {
        let fs = self.fs();
        let mut stack: Vec<(String, Attr)> = Vec::new();
        let root = fs.getattr(ROOT_INO).map_err(|e| VolumeError::fs(e, ""))?;
        let mut pending: VecDeque<String> = p.parts().map(String::from).collect();
        let mut hops = 0;
        let canon = |stack: &[(String, Attr)]| stack.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join("/");
        while let Some(c) = pending.pop_front() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                if stack.pop().is_none() {
                    return Err(VolumeError::Escape(format!(
                        "{}: a symlink on the way climbs above the volume's root",
                        p.display()
                    )));
                }
                continue;
            }
            let cur = stack.last().map(|(_, a)| a.ino).unwrap_or(ROOT_INO);
            let shown = if stack.is_empty() { c.clone() } else { format!("{}/{c}", canon(&stack)) };
            let a = fs.lookup(cur, c.as_bytes()).map_err(|e| VolumeError::fs(e, &shown))?;
            if a.kind == FileKind::Symlink && (!pending.is_empty() || follow_last) {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(VolumeError::BadArgument(format!(
                        "{}: too many levels of symbolic links",
                        p.display()
                    )));
                }
                let target = fs.readlink(a.ino).map_err(|e| VolumeError::fs(e, &shown))?;
                let target = String::from_utf8_lossy(&target).into_owned();
                if target.starts_with('/') {
                    return Err(VolumeError::Escape(format!(
                        "/{shown}: the symlink points to {target}, outside the volume (absolute targets are not followed)"
                    )));
                }
                for part in target.split('/').rev() {
                    pending.push_front(part.to_string());
                }
                continue;
            }
            if !pending.is_empty() && a.kind != FileKind::Dir {
                return Err(VolumeError::fs(FsError::NotDir, p.as_str()));
            }
            stack.push((c, a));
        }
        let attr = stack.last().map(|(_, a)| *a).unwrap_or(root);
        Ok((attr, canon(&stack)))
    }

    /// The directory of `p` (resolved, inside) and `p`'s last component.
    fn parent<'a>(&self, p: &'a VPath) -> VResult<(Attr, String, &'a str)> {
        let Some((dir, name)) = p.split() else {
            return Err(VolumeError::BadArgument(
                "the volume's root itself cannot be written, moved or deleted".into(),
            ));
        };
        let (a, canon) = self.walk(&dir, true)?;
        if a.kind != FileKind::Dir {
            return Err(VolumeError::fs(FsError::NotDir, p.as_str()));
        }
        if a.ino == ROOT_INO && RESERVED.contains(&name) {
            return Err(VolumeError::BadArgument(format!(
                "/{name} is reserved: a mount shows its own virtual directory there"
            )));
        }
        Ok((a, canon, name))
    }

    fn entry(&self, p: &VPath, a: &Attr, xattrs: bool) -> Entry {
        let mtime = SystemTime::UNIX_EPOCH + Duration::new(a.mtime.sec.max(0) as u64, a.mtime.nsec.min(999_999_999));
        let mut e = Entry::new(p.as_str(), kind_of(a.kind), a.size, u32::from(a.perm), mtime);
        if a.kind == FileKind::Symlink {
            e.target = self.fs().readlink(a.ino).ok().map(|t| String::from_utf8_lossy(&t).into_owned());
        }
        if xattrs {
            let mut map = BTreeMap::new();
            for name in self.fs().listxattr(a.ino).unwrap_or_default() {
                if name.starts_with(b"user.") {
                    if let Ok(v) = self.fs().getxattr(a.ino, &name) {
                        map.insert(
                            String::from_utf8_lossy(&name).into_owned(),
                            String::from_utf8_lossy(&v).into_owned(),
                        );
                    }
                }
            }
            e.xattrs = Some(map);
        }
        e
    }

    fn regular(&self, p: &VPath) -> VResult<Attr> {
        let (a, _) = self.walk(p, true)?;
        if a.kind != FileKind::File {
            return Err(VolumeError::BadArgument(format!("{}: not a regular file", p.display())));
        }
        Ok(a)
    }

    fn note_written(&self, ino: Ino) {
        if let Some(i) = &self.parts.index {
            i.note_written(ino);
        }
    }

    fn engine(&self) -> VResult<&Arc<Engine>> {
        self.parts.engine.as_ref().ok_or_else(|| VolumeError::Unavailable("generation is off for this volume".into()))
    }
}

impl Backend for StoreBackend {
    fn kind(&self) -> &'static str {
        "store"
    }

    fn root(&self) -> String {
        self.parts.data_dir.clone()
    }

    fn list(&self, dir: &VPath) -> VResult<Vec<Entry>> {
        let (a, canon) = self.walk(dir, true)?;
        if a.kind != FileKind::Dir {
            return Err(VolumeError::fs(FsError::NotDir, dir.as_str()));
        }
        let entries = self.fs().read_dir_path(&canon).map_err(|e| VolumeError::fs(e, dir.as_str()))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let (Ok(attr), Ok(p)) = (self.fs().getattr(e.ino), dir.join(&name)) else { continue };
            out.push(self.entry(&p, &attr, false));
        }
        Ok(out)
    }

    fn stat(&self, path: &VPath, xattrs: bool) -> VResult<Entry> {
        let (a, _) = self.walk(path, false)?;
        Ok(self.entry(path, &a, xattrs))
    }

    fn read(&self, path: &VPath, offset: u64, len: u64) -> VResult<(Vec<u8>, u64)> {
        let a = self.regular(path)?;
        if offset >= a.size {
            return Ok((Vec::new(), a.size));
        }
        let data =
            self.fs().read(a.ino, offset, len.min(a.size - offset)).map_err(|e| VolumeError::fs(e, path.as_str()))?;
        Ok((data, a.size))
    }

    fn write(&self, path: &VPath, data: &[u8], mode: WriteMode) -> VResult<()> {
        let (dir, canon, name) = self.parent(path)?;
        match self.fs().lookup(dir.ino, name.as_bytes()) {
            Ok(a) if a.kind == FileKind::Symlink => {
                return Err(VolumeError::BadArgument(format!("{}: is a symlink; write to its target", path.display())))
            }
            Ok(a) if a.kind != FileKind::File => {
                return Err(VolumeError::BadArgument(format!("{}: not a regular file", path.display())))
            }
            _ => {}
        }
        let full = if canon.is_empty() { name.to_string() } else { format!("{canon}/{name}") };
        let mut o = OpenOptions::new();
        o.write(true);
        match mode {
            WriteMode::Overwrite => o.create(true).truncate(true),
            WriteMode::Append => o.create(true).append(true),
            WriteMode::CreateNew => o.create_new(true),
        };
        let mut f = self.parts.fs.open_path(&full, &o).map_err(|e| VolumeError::fs(e, path.as_str()))?;
        f.write_all(data).map_err(|e| VolumeError::io(e, path.as_str()))?;
        let ino = f.ino();
        f.close().map_err(|e| VolumeError::fs(e, path.as_str()))?;
        self.note_written(ino);
        Ok(())
    }

    fn mkdir(&self, path: &VPath) -> VResult<()> {
        let (dir, _, name) = self.parent(path)?;
        self.fs()
            .mkdir(dir.ino, name.as_bytes(), 0o755, me())
            .map(|_| ())
            .map_err(|e| VolumeError::fs(e, path.as_str()))
    }

    fn rename(&self, from: &VPath, to: &VPath, replace: bool) -> VResult<()> {
        let (a, _, an) = self.parent(from)?;
        let (b, _, bn) = self.parent(to)?;
        let replaced = self.fs().lookup(b.ino, bn.as_bytes()).ok();
        if let Some(i) = &self.parts.index {
            i.note_renamed();
            if let Some(r) = &replaced {
                i.note_unlinked(r.ino);
            }
        }
        let flags = RenameFlags { noreplace: !replace, exchange: false };
        self.fs().rename(a.ino, an.as_bytes(), b.ino, bn.as_bytes(), flags).map_err(|e| match e {
            FsError::Exists => VolumeError::fs(e, to.as_str()),
            e => VolumeError::fs(e, from.as_str()),
        })
    }

    fn remove(&self, path: &VPath) -> VResult<()> {
        let (dir, _, name) = self.parent(path)?;
        let a = self.fs().lookup(dir.ino, name.as_bytes()).map_err(|e| VolumeError::fs(e, path.as_str()))?;
        let r = if a.kind == FileKind::Dir {
            self.fs().rmdir(dir.ino, name.as_bytes())
        } else {
            if let Some(i) = &self.parts.index {
                i.note_unlinked(a.ino);
            }
            self.fs().unlink(dir.ino, name.as_bytes())
        };
        r.map_err(|e| VolumeError::fs(e, path.as_str()))?;
        if let Some(s) = &self.parts.sessions {
            s.unlinked(dir.ino, name.as_bytes());
        }
        Ok(())
    }

    fn search(&self, query: &str, k: usize) -> VResult<Vec<Hit>> {
        let index = self
            .parts
            .index
            .as_ref()
            .ok_or_else(|| VolumeError::Unavailable("search is off for this volume".into()))?;
        let r = index.search(query, k, index.min_score()).map_err(|e| {
            let m = e.to_string();
            if m.contains("empty") {
                VolumeError::BadArgument(format!("search: {m}"))
            } else {
                VolumeError::Unavailable(format!("search: {m}"))
            }
        })?;
        Ok(r.hits
            .iter()
            .map(|h| Hit {
                path: if h.in_mount { format!("/{}", h.path.trim_start_matches('/')) } else { h.path.clone() },
                score: h.score,
                passage: h.passage.clone(),
            })
            .collect())
    }

    fn chat(&self, id: &str, message: &str, deadline: Instant, on_piece: &mut dyn FnMut(&str)) -> VResult<String> {
        let sessions = self
            .parts
            .sessions
            .as_ref()
            .ok_or_else(|| VolumeError::Unavailable("chat is off for this volume".into()))?;
        check_session_id(id)?;
        let turn = user_turn(message)?;
        let fs = &self.parts.fs;
        let shown = format!("sessions/{id}");
        let dir = fs.lookup(ROOT_INO, b"sessions").map_err(|e| VolumeError::fs(e, "sessions"))?;
        // As the FUSE adapter would: create or look up the file, note it,
        // open a writer, append through the engine, flush, close.
        let ino = match fs.lookup(dir.ino, id.as_bytes()) {
            Ok(a) if a.kind == FileKind::File => a.ino,
            Ok(_) => return Err(VolumeError::BadArgument(format!("{shown}: not a regular file"))),
            Err(FsError::NotFound) => {
                let (a, fh) = fs
                    .create(dir.ino, id.as_bytes(), 0o644, libc::O_WRONLY, me())
                    .map_err(|e| VolumeError::fs(e, &shown))?;
                fs.release(fh).map_err(|e| VolumeError::fs(e, &shown))?;
                a.ino
            }
            Err(e) => return Err(VolumeError::fs(e, &shown)),
        };
        sessions.note_entry(dir.ino, id.as_bytes(), ino);
        let start = fs.getattr(ino).map_err(|e| VolumeError::fs(e, &shown))?.size;
        let flags = libc::O_WRONLY | libc::O_APPEND;
        let fh = fs.open(ino, flags).map_err(|e| VolumeError::fs(e, &shown))?;
        sessions.opened(ino, fh, flags);
        let wrote = match sessions.write(ino, start, turn.as_bytes(), true) {
            Some(r) => r.map(|_| ()),
            None => fs.write(ino, start, turn.as_bytes()).map(|_| ()),
        };
        let flushed = wrote.and_then(|()| fs.flush(ino));
        if flushed.is_ok() {
            sessions.flushed(ino, fh, me());
        }
        sessions.released(fh);
        let released = fs.release(fh);
        flushed.and(released).map_err(|e| VolumeError::fs(e, &shown))?;
        self.note_written(ino);
        // Follow the file until the sentinel is gone.
        let sentinel = format!("{}{id}", magicfs_chat::SENTINEL_PREFIX);
        let mut offset = start + turn.len() as u64;
        let mut reply = ReplyText::default();
        loop {
            let generating = fs.lookup(dir.ino, sentinel.as_bytes()).is_ok();
            let size = fs.getattr(ino).map_err(|e| VolumeError::fs(e, &shown))?.size;
            if size > offset {
                let bytes = fs.read(ino, offset, size - offset).map_err(|e| VolumeError::fs(e, &shown))?;
                offset += bytes.len() as u64;
                reply.push(&bytes, on_piece);
            } else if !generating {
                return finish(reply, on_piece);
            }
            wait_or_give_up(deadline, &shown)?;
        }
    }

    fn set_prompt(&self, path: &VPath, prompt: &str) -> VResult<()> {
        let engine = self.engine()?;
        let (a, _) = self.walk(path, false)?;
        self.fs()
            .setxattr(a.ino, magicfs_gen::names::PROMPT, prompt.as_bytes(), 0)
            .map_err(|e| VolumeError::fs(e, path.as_str()))?;
        engine.rules_changed();
        Ok(())
    }

    fn plan_tree(&self, dir: &VPath, prompt: &str) -> VResult<()> {
        let engine = self.engine()?;
        let (a, _) = self.walk(dir, true)?;
        engine.make_tree(a.ino, prompt, me()).map(|_| ()).map_err(|e| gen_error(e, dir))
    }

    fn fill(&self, path: &VPath) -> VResult<u64> {
        let engine = self.engine()?;
        let a = self.regular(path)?;
        match engine.plan(a.ino, false).map_err(|e| gen_error(e, path))? {
            Some(plan) => engine.run(&plan, false).map(|a| a.size).map_err(|e| gen_error(e, path)),
            None => Ok(a.size),
        }
    }

    fn xattr(&self, path: &VPath, name: &str) -> Option<String> {
        let (a, _) = self.walk(path, false).ok()?;
        self.fs().getxattr(a.ino, name.as_bytes()).ok().map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    fn map(&self, path: &VPath) -> VResult<memmap2::Mmap> {
        let a = self.regular(path)?;
        let fd = self.fs().export_memfd(a.ino).map_err(|e| VolumeError::fs(e, path.as_str()))?;
        let f = std::fs::File::from(fd);
        // SAFETY: a sealed memfd: nobody can change or shrink it.
        unsafe { memmap2::Mmap::map(&f) }.map_err(|e| VolumeError::io(e, path.as_str()))
    }

    fn status(&self) -> VResult<Value> {
        let mut v = serde_json::to_value(self.fs().status()).map_err(|e| VolumeError::Io(e.to_string()))?;
        if let Some(i) = &self.parts.index {
            v["search"] = serde_json::to_value(i.status()).unwrap_or_default();
        }
        if let Some(s) = &self.parts.sessions {
            v["chat"] = s.status();
        }
        if let Some(e) = &self.parts.engine {
            v["generation"] = e.status();
        }
        Ok(v)
    }
}
