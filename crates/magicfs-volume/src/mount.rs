//! [`MountBackend`]: a volume reached through a mounted MagicFS (or any host
//! directory, without search, chat and generation). Paths are resolved with
//! the host's `realpath` and must stay under the canonical root; the final
//! open uses `O_NOFOLLOW` on the resolved path, so a symlink swapped in after
//! the check is refused rather than followed.

use crate::chat::{check_session_id, send_on_mount};
use crate::error::{VResult, VolumeError};
use crate::types::{Entry, Hit, WriteMode};
use crate::{Backend, VPath};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A mounted MagicFS, or a plain host directory.
pub struct MountBackend {
    root: PathBuf,
    magic: bool,
}

impl MountBackend {
    /// A volume over directory `dir`: a MagicFS mount point (search, chat and
    /// generation answer) or any other directory (files, compute and status only).
    pub fn open(dir: &Path) -> VResult<MountBackend> {
        let root = dir.canonicalize().map_err(|e| {
            VolumeError::BadArgument(format!(
                "{}: {e}; give an existing directory or MagicFS mount point",
                dir.display()
            ))
        })?;
        if !root.is_dir() {
            return Err(VolumeError::BadArgument(format!("{} is not a directory", dir.display())));
        }
        let magic = root.join(".magic/status").is_file();
        Ok(MountBackend { root, magic })
    }

    /// True when the directory is a MagicFS mount (it has `.magic/status`).
    pub fn is_magicfs(&self) -> bool {
        self.magic
    }

    fn outside(&self, p: &VPath, to: &Path) -> VolumeError {
        VolumeError::Escape(format!(
            "{}: resolves to {}, outside the volume {}; symlinks must stay inside it",
            p.display(),
            to.display(),
            self.root.display()
        ))
    }

    /// The canonical host path of `p`, every symlink followed; it must lie inside.
    fn resolve(&self, p: &VPath) -> VResult<PathBuf> {
        let host = self.root.join(p.as_str());
        let canon = host.canonicalize().map_err(|e| VolumeError::io(e, p.as_str()))?;
        if !canon.starts_with(&self.root) {
            return Err(self.outside(p, &canon));
        }
        Ok(canon)
    }

    /// The host path of `p` with its directory resolved (inside) and its last
    /// component left as it is.
    fn resolve_parent(&self, p: &VPath) -> VResult<PathBuf> {
        let Some((dir, name)) = p.split() else {
            return Err(VolumeError::BadArgument(
                "the volume's root itself cannot be written, moved or deleted".into(),
            ));
        };
        let d = self.resolve(&dir)?;
        if !d.is_dir() {
            return Err(VolumeError::fs(magicfs_types::FsError::NotDir, p.as_str()));
        }
        Ok(d.join(name))
    }

    fn entry(&self, p: &VPath, host: &Path, xattrs: bool) -> VResult<Entry> {
        let m = std::fs::symlink_metadata(host).map_err(|e| VolumeError::io(e, p.as_str()))?;
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            "symlink"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else {
            "other"
        };
        let mtime = m.modified().unwrap_or(std::time::UNIX_EPOCH);
        let mut e = Entry::new(p.as_str(), kind, m.len(), m.mode(), mtime);
        if ft.is_symlink() {
            e.target = std::fs::read_link(host).ok().map(|t| t.to_string_lossy().into_owned());
        }
        if xattrs {
            e.xattrs = Some(list_xattrs(host));
        }
        Ok(e)
    }

    /// Opens a regular file for reading without blocking on a FIFO and without
    /// following a symlink swapped in after [`MountBackend::resolve`].
    fn open_regular(&self, p: &VPath) -> VResult<File> {
        let host = self.resolve(p)?;
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&host)
            .map_err(|e| VolumeError::io(e, p.as_str()))?;
        let m = f.metadata().map_err(|e| VolumeError::io(e, p.as_str()))?;
        if !m.is_file() {
            return Err(VolumeError::BadArgument(format!("{}: not a regular file", p.display())));
        }
        // Reads of a file being generated wait for it: blocking from here on.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
        Ok(f)
    }

    fn need_magic(&self, what: &str) -> VResult<()> {
        if self.magic {
            Ok(())
        } else {
            Err(VolumeError::Unavailable(format!(
                "{what} needs a MagicFS mount; {} is a plain directory",
                self.root.display()
            )))
        }
    }

    /// The daemon's last generation error about `p`, if any.
    fn generation_error(&self, p: &VPath) -> Option<String> {
        let st = self.status().ok()?;
        st["generation"]["recent_errors"]
            .as_array()?
            .iter()
            .rev()
            .find(|e| e["path"] == p.display())
            .and_then(|e| e["error"].as_str())
            .map(String::from)
    }

    fn generation_failed(&self, p: &VPath, e: std::io::Error) -> VolumeError {
        match e.raw_os_error() {
            Some(libc::ENODATA) => VolumeError::BadArgument(format!(
                "{}: no prompt or generator (own or inherited); give the file a prompt first",
                p.display()
            )),
            Some(libc::EBUSY) => VolumeError::Exists(format!("{}: is being generated right now", p.display())),
            _ => match self.generation_error(p) {
                Some(m) => VolumeError::Unavailable(format!("{}: {m}", p.display())),
                None => VolumeError::io(e, p.as_str()),
            },
        }
    }
}

fn cstr(p: &Path) -> VResult<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| VolumeError::BadArgument("the path contains a NUL byte".into()))
}

/// The `user.*` attributes of `host` (not following a symlink), as text.
fn list_xattrs(host: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(c) = cstr(host) else { return out };
    let mut names = vec![0u8; 64 << 10];
    // SAFETY: valid C string and buffer.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return out;
    }
    names.truncate(n as usize);
    for name in names.split(|b| *b == 0).filter(|n| n.starts_with(b"user.")) {
        let name = String::from_utf8_lossy(name).into_owned();
        if let Some(v) = get_xattr(host, &name) {
            out.insert(name, v);
        }
    }
    out
}

fn get_xattr(host: &Path, name: &str) -> Option<String> {
    let c = cstr(host).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn set_xattr(host: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let c = CString::new(host.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let n = CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Encodes a query as one path component of `search/`: `%` → `%25`,
/// `/` → `%2F`, cut to 255 bytes.
pub fn encode_query(q: &str) -> String {
    let mut out = String::new();
    for c in q.chars() {
        let piece = match c {
            '%' => "%25".to_string(),
            '/' => "%2F".to_string(),
            '\0' => " ".to_string(),
            c => c.to_string(),
        };
        if out.len() + piece.len() > 255 {
            break;
        }
        out.push_str(&piece);
    }
    out
}

impl Backend for MountBackend {
    fn kind(&self) -> &'static str {
        if self.magic {
            "mount"
        } else {
            "directory"
        }
    }

    fn root(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, dir: &VPath) -> VResult<Vec<Entry>> {
        let host = self.resolve(dir)?;
        let rd = std::fs::read_dir(&host).map_err(|e| VolumeError::io(e, dir.as_str()))?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(p) = dir.join(&name) else { continue };
            if let Ok(entry) = self.entry(&p, &e.path(), false) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    fn stat(&self, path: &VPath, xattrs: bool) -> VResult<Entry> {
        let host = if path.is_root() { self.root.clone() } else { self.resolve_parent(path)? };
        self.entry(path, &host, xattrs)
    }

    fn read(&self, path: &VPath, offset: u64, len: u64) -> VResult<(Vec<u8>, u64)> {
        let mut f = self.open_regular(path)?;
        f.seek(SeekFrom::Start(offset)).map_err(|e| VolumeError::io(e, path.as_str()))?;
        let mut buf = Vec::new();
        (&mut f).take(len).read_to_end(&mut buf).map_err(|e| match e.raw_os_error() {
            Some(libc::EIO) => self.generation_failed(path, e),
            _ => VolumeError::io(e, path.as_str()),
        })?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok((buf, size))
    }

    fn write(&self, path: &VPath, data: &[u8], mode: WriteMode) -> VResult<()> {
        let host = self.resolve_parent(path)?;
        let mut o = OpenOptions::new();
        o.write(true).mode(0o644).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        match mode {
            WriteMode::Overwrite => o.create(true).truncate(true),
            WriteMode::Append => o.create(true).append(true),
            WriteMode::CreateNew => o.create_new(true),
        };
        let mut f = o.open(&host).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                VolumeError::BadArgument(format!("{}: is a symlink; write to its target", path.display()))
            }
            _ => VolumeError::io(e, path.as_str()),
        })?;
        if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
            return Err(VolumeError::BadArgument(format!("{}: not a regular file", path.display())));
        }
        f.write_all(data).map_err(|e| VolumeError::io(e, path.as_str()))?;
        // close() commits (and, for a session file, queues its reply).
        let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
        // SAFETY: closing the descriptor we own, once.
        if unsafe { libc::close(fd) } != 0 {
            return Err(VolumeError::io(std::io::Error::last_os_error(), path.as_str()));
        }
        Ok(())
    }

    fn mkdir(&self, path: &VPath) -> VResult<()> {
        let host = self.resolve_parent(path)?;
        std::fs::create_dir(&host).map_err(|e| VolumeError::io(e, path.as_str()))
    }

    fn rename(&self, from: &VPath, to: &VPath, replace: bool) -> VResult<()> {
        let (a, b) = (self.resolve_parent(from)?, self.resolve_parent(to)?);
        let (ca, cb) = (cstr(&a)?, cstr(&b)?);
        let flags = if replace { 0 } else { libc::RENAME_NOREPLACE };
        // SAFETY: valid C strings.
        let r = unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), flags) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            let shown = if e.raw_os_error() == Some(libc::EEXIST) { to } else { from };
            return Err(VolumeError::io(e, shown.as_str()));
        }
        Ok(())
    }

    fn remove(&self, path: &VPath) -> VResult<()> {
        let host = self.resolve_parent(path)?;
        let m = std::fs::symlink_metadata(&host).map_err(|e| VolumeError::io(e, path.as_str()))?;
        let r = if m.is_dir() { std::fs::remove_dir(&host) } else { std::fs::remove_file(&host) };
        r.map_err(|e| VolumeError::io(e, path.as_str()))
    }

    fn search(&self, query: &str, k: usize) -> VResult<Vec<Hit>> {
        self.need_magic("search")?;
        let dir = self.root.join("search").join(encode_query(query));
        let text = std::fs::read_to_string(dir.join(".results.json")).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => {
                VolumeError::Unavailable("search is off on this mount (mounted with --no-search)".into())
            }
            _ => VolumeError::Io(format!("search: {e}")),
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| VolumeError::Io(format!("search results: {e}")))?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Err(if e.contains("empty") {
                VolumeError::BadArgument(format!("search: {e}"))
            } else {
                VolumeError::Unavailable(format!("search: {e}"))
            });
        }
        let hits = v.get("results").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(hits
            .iter()
            .take(k)
            .map(|h| {
                let path = h["path"].as_str().unwrap_or("");
                let in_mount = h["in_mount"].as_bool().unwrap_or(true);
                Hit {
                    path: if in_mount { format!("/{}", path.trim_start_matches('/')) } else { path.to_string() },
                    score: h["score"].as_f64().unwrap_or(0.0) as f32,
                    passage: h["passage"].as_str().unwrap_or("").to_string(),
                }
            })
            .collect())
    }

    fn chat(&self, id: &str, message: &str, deadline: Instant, on_piece: &mut dyn FnMut(&str)) -> VResult<String> {
        self.need_magic("chat")?;
        check_session_id(id)?;
        let dir = self.root.join("sessions");
        if !dir.is_dir() {
            return Err(VolumeError::Unavailable("chat is off on this mount (no sessions/ directory)".into()));
        }
        send_on_mount(&dir, id, message, deadline, on_piece)
    }

    fn set_prompt(&self, path: &VPath, prompt: &str) -> VResult<()> {
        self.need_magic("generation")?;
        let host = self.resolve_parent(path)?;
        set_xattr(&host, "user.magic.prompt", prompt.as_bytes()).map_err(|e| VolumeError::io(e, path.as_str()))
    }

    fn plan_tree(&self, dir: &VPath, prompt: &str) -> VResult<()> {
        self.need_magic("generation")?;
        let host = self.resolve(dir)?;
        // The daemon answers this setxattr once the tree is planned.
        set_xattr(&host, "user.magic.generate", prompt.as_bytes()).map_err(|e| self.generation_failed(dir, e))
    }

    fn fill(&self, path: &VPath) -> VResult<u64> {
        self.need_magic("generation")?;
        let mut f = self.open_regular(path)?;
        let mut sink = Vec::new();
        f.read_to_end(&mut sink).map_err(|e| self.generation_failed(path, e))?;
        Ok(sink.len() as u64)
    }

    fn xattr(&self, path: &VPath, name: &str) -> Option<String> {
        let host = if path.is_root() { self.root.clone() } else { self.resolve_parent(path).ok()? };
        get_xattr(&host, name)
    }

    fn map(&self, path: &VPath) -> VResult<memmap2::Mmap> {
        let f = self.open_regular(path)?;
        // SAFETY: a read-only map that lives while one compute request runs;
        // a file truncated meanwhile raises SIGBUS, as for any reader of a mapped file.
        unsafe { memmap2::Mmap::map(&f) }.map_err(|e| VolumeError::io(e, path.as_str()))
    }

    fn status(&self) -> VResult<Value> {
        if !self.magic {
            return Ok(serde_json::json!({}));
        }
        let text =
            std::fs::read(self.root.join(".magic/status")).map_err(|e| VolumeError::Io(format!("status: {e}")))?;
        serde_json::from_slice(&text).map_err(|e| VolumeError::Io(format!("status is not JSON: {e}")))
    }
}
