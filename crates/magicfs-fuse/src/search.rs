//! The virtual `search/` directory: `search/<query>/` lists the files that
//! best match `<query>` as symlinks `<score>_<name>` (best first) plus
//! `.results.json`. Queries run on this module's own workers — the request
//! loop hands the reply over and goes on — and their results are cached by
//! the index until it changes.
//!
//! Inodes: `search/` is [`SEARCH_DIR_INO`]; query number `q` owns the block
//! `SEARCH_DIR_INO + (q + 1) * STRIDE ..`: the directory, `.results.json`,
//! then one inode per result slot.

use crate::pool::Pool;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEntry, ReplyOpen,
};
use magicfs_index::{Index, Results, SearchError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Name of the directory in the root.
pub const SEARCH_DIR: &[u8] = b"search";
/// Inode of `search/`.
pub const SEARCH_DIR_INO: u64 = 1 << 61;
const END: u64 = 1 << 62;
/// Inodes per query: directory, `.results.json`, results.
const STRIDE: u64 = 1024;
/// Most results a query lists.
pub const MAX_TOP_K: usize = (STRIDE - 2) as usize;
const RESULTS_JSON: &[u8] = b".results.json";
/// Handle numbers of open `.results.json` files.
const FH_BASE: u64 = (1 << 63) | (1 << 62);
/// Queries remembered before the table starts over.
const MAX_QUERIES: usize = 100_000;
/// Search entries change with the index: the kernel must not cache them.
const TTL: Duration = Duration::ZERO;

/// One entry of a search directory.
struct Listed {
    ino: u64,
    kind: FileType,
    name: Vec<u8>,
    /// The symlink target's length (0 for the others).
    size: u64,
}

impl Listed {
    fn dir(ino: u64, name: &[u8]) -> Listed {
        Listed { ino, kind: FileType::Directory, name: name.to_vec(), size: 0 }
    }
}

/// True for inodes of the search namespace.
pub fn owns(ino: u64) -> bool {
    (SEARCH_DIR_INO..END).contains(&ino)
}

/// True for handles of open `.results.json` files.
pub fn owns_fh(fh: u64) -> bool {
    fh >= FH_BASE
}

#[derive(Default)]
struct Queries {
    by_name: HashMap<Vec<u8>, u64>,
    names: Vec<Vec<u8>>,
}

/// State of the search namespace.
pub struct Search {
    index: Index,
    pool: Pool,
    queries: Mutex<Queries>,
    open: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
    next_fh: AtomicU64,
}

/// Decodes a directory name into a query: `%2F` (or `%2f`) is `/`, `%25` is `%`.
pub fn decode_query(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    let mut out = String::with_capacity(s.len());
    let mut rest = &*s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        // Bytes, not a string slice: the byte after `%` may start a
        // multi-byte character (an invalid byte decodes to U+FFFD).
        if tail.as_bytes().get(1..3).is_some_and(|b| b.eq_ignore_ascii_case(b"2f")) {
            out.push('/');
            rest = &tail[3..];
        } else if let Some(after) = tail.strip_prefix("%25") {
            out.push('%');
            rest = after;
        } else {
            out.push('%');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// True for a name that may be a query directory: at most 255 bytes
/// (`NAME_MAX`; a longer one is `ENAMETOOLONG`).
pub fn query_name_ok(name: &[u8]) -> bool {
    name.len() <= magicfs_types::NAME_MAX
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Entry names of results: `<score>_<basename>`, collisions numbered `~2`,
/// `~3` before the extension; each at most 255 bytes (the stem is shortened
/// to fit), all distinct.
pub fn entry_names(r: &Results) -> Vec<String> {
    let max = magicfs_types::NAME_MAX;
    let mut used = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(r.hits.len());
    for h in &r.hits {
        let base = h.path.rsplit('/').next().unwrap_or(&h.path);
        let base = if base.is_empty() || base.contains('\0') { "file" } else { base };
        let (stem, ext) = match base.rfind('.') {
            Some(i) if i > 0 && base.len() - i <= 32 => (&base[..i], &base[i..]),
            _ => (base, ""),
        };
        let score = format!("{:.2}_", h.score);
        let mut n = 1;
        let name = loop {
            let mark = if n == 1 { String::new() } else { format!("~{n}") };
            let room = max.saturating_sub(score.len() + mark.len() + ext.len());
            let name = format!("{score}{}{mark}{ext}", cut(stem, room));
            if used.insert(name.clone()) {
                break name;
            }
            n += 1;
        };
        out.push(name);
    }
    out
}

/// Symlink target of a hit seen from `search/<query>/`.
fn target(h: &magicfs_index::Hit) -> String {
    if h.in_mount {
        format!("../../{}", h.path)
    } else {
        h.path.clone()
    }
}

fn owner() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

fn attr(ino: u64, kind: FileType, size: u64) -> FileAttr {
    let now = SystemTime::now();
    let (uid, gid) = owner();
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm: match kind {
            FileType::Directory => 0o555,
            FileType::Symlink => 0o777,
            _ => 0o444,
        },
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid,
        gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// What a search inode is.
enum Node {
    Root,
    Query(u64),
    Json(u64),
    Hit(u64, usize),
}

fn node(ino: u64) -> Option<Node> {
    if ino == SEARCH_DIR_INO {
        return Some(Node::Root);
    }
    if !owns(ino) {
        return None;
    }
    let rel = ino - SEARCH_DIR_INO;
    let (q, slot) = (rel / STRIDE, rel % STRIDE);
    let q = q.checked_sub(1)?;
    Some(match slot {
        0 => Node::Query(q),
        1 => Node::Json(q),
        s => Node::Hit(q, (s - 2) as usize),
    })
}

fn qdir_ino(q: u64) -> u64 {
    SEARCH_DIR_INO + (q + 1) * STRIDE
}

impl Search {
    /// Serves queries of `index` on `workers` threads of their own.
    pub fn new(index: Index, workers: usize) -> Search {
        Search {
            index,
            pool: Pool::new(workers, 1024),
            queries: Mutex::default(),
            open: Mutex::default(),
            next_fh: AtomicU64::new(0),
        }
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    fn k(&self) -> usize {
        self.index.top_k().clamp(1, MAX_TOP_K)
    }

    fn query_number(&self, name: &[u8]) -> u64 {
        let mut q = self.queries.lock();
        if let Some(&n) = q.by_name.get(name) {
            return n;
        }
        if q.names.len() >= MAX_QUERIES {
            *q = Queries::default();
        }
        let n = q.names.len() as u64;
        q.names.push(name.to_vec());
        q.by_name.insert(name.to_vec(), n);
        n
    }

    fn query_text(&self, q: u64) -> Option<String> {
        self.queries.lock().names.get(q as usize).map(|n| decode_query(n))
    }

    /// Results of query `q` now if cached, else `None` (run [`Search::run`] on a worker).
    fn cached(&self, q: &str) -> Option<Result<Arc<Results>, SearchError>> {
        match self.index.cached(q, self.k(), self.index.min_score()) {
            Some(r) => Some(Ok(r)),
            None if magicfs_index::normalize_query(q).is_err() => Some(Err(SearchError::EmptyQuery)),
            None => None,
        }
    }

    fn run(&self, q: &str) -> Result<Arc<Results>, SearchError> {
        self.index.search(q, self.k(), self.index.min_score())
    }

    /// Answers `f` with the results of `q`: at once when cached, else from a worker.
    fn with_results<F>(self: &Arc<Self>, q: String, f: F)
    where
        F: FnOnce(Result<Arc<Results>, SearchError>) + Send + 'static,
    {
        if let Some(r) = self.cached(&q) {
            return f(r);
        }
        let me = self.clone();
        self.pool.spawn(move || f(me.run(&q)));
    }

    /// `lookup` in the search namespace (or of `search` in the root).
    pub fn lookup(self: &Arc<Self>, parent: u64, name: &[u8], reply: ReplyEntry) {
        match node(parent) {
            Some(Node::Root) => {
                if !query_name_ok(name) {
                    return reply.error(Errno::ENAMETOOLONG);
                }
                let q = self.query_number(name);
                reply.entry(&TTL, &attr(qdir_ino(q), FileType::Directory, 0), Generation(0))
            }
            Some(Node::Query(q)) => {
                let Some(text) = self.query_text(q) else { return reply.error(Errno::ENOENT) };
                let base = qdir_ino(q);
                if name == RESULTS_JSON {
                    return reply.entry(&TTL, &attr(base + 1, FileType::RegularFile, 0), Generation(0));
                }
                let name = name.to_vec();
                self.with_results(text, move |r| match r {
                    Ok(r) => match entry_names(&r).iter().position(|n| n.as_bytes() == name.as_slice()) {
                        Some(i) => {
                            let len = target(&r.hits[i]).len() as u64;
                            reply.entry(&TTL, &attr(base + 2 + i as u64, FileType::Symlink, len), Generation(0))
                        }
                        None => reply.error(Errno::ENOENT),
                    },
                    Err(_) => reply.error(Errno::ENOENT),
                });
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    /// Attributes of `search/` as seen from the root.
    pub fn root_attr() -> FileAttr {
        attr(SEARCH_DIR_INO, FileType::Directory, 0)
    }

    /// `getattr` of a search inode.
    pub fn getattr(self: &Arc<Self>, ino: u64, reply: ReplyAttr) {
        match node(ino) {
            Some(Node::Root) | Some(Node::Query(_)) => reply.attr(&TTL, &attr(ino, FileType::Directory, 0)),
            Some(Node::Json(_)) => reply.attr(&TTL, &attr(ino, FileType::RegularFile, 0)),
            Some(Node::Hit(q, i)) => {
                let Some(text) = self.query_text(q) else { return reply.error(Errno::ENOENT) };
                self.with_results(text, move |r| match r.ok().and_then(|r| r.hits.get(i).map(target)) {
                    Some(t) => reply.attr(&TTL, &attr(ino, FileType::Symlink, t.len() as u64)),
                    None => reply.error(Errno::ENOENT),
                });
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    /// `readlink` of a result.
    pub fn readlink(self: &Arc<Self>, ino: u64, reply: ReplyData) {
        let Some(Node::Hit(q, i)) = node(ino) else { return reply.error(Errno::EINVAL) };
        let Some(text) = self.query_text(q) else { return reply.error(Errno::ENOENT) };
        self.with_results(text, move |r| match r.ok().and_then(|r| r.hits.get(i).map(target)) {
            Some(t) => reply.data(t.as_bytes()),
            None => reply.error(Errno::ENOENT),
        });
    }

    /// `opendir` of a search directory.
    pub fn opendir(&self, ino: u64, reply: ReplyOpen) {
        match node(ino) {
            Some(Node::Root) | Some(Node::Query(_)) => reply.opened(FileHandle(1 << 63), FopenFlags::empty()),
            Some(_) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// The entries of a search directory, handed to `f` (from a worker when
    /// the query has to run): `search/` itself lists nothing (any name is a
    /// query); a query directory lists its results.
    fn listing<F>(self: &Arc<Self>, ino: u64, f: F)
    where
        F: FnOnce(Result<Vec<Listed>, Errno>) + Send + 'static,
    {
        match node(ino) {
            Some(Node::Root) => {
                f(Ok(vec![Listed::dir(SEARCH_DIR_INO, b"."), Listed::dir(magicfs_types::ROOT_INO, b"..")]))
            }
            Some(Node::Query(q)) => {
                let Some(text) = self.query_text(q) else { return f(Err(Errno::ENOENT)) };
                let base = qdir_ino(q);
                self.with_results(text, move |r| {
                    let mut all = vec![
                        Listed::dir(base, b"."),
                        Listed::dir(SEARCH_DIR_INO, b".."),
                        Listed { ino: base + 1, kind: FileType::RegularFile, name: RESULTS_JSON.to_vec(), size: 0 },
                    ];
                    // An error is explained in .results.json.
                    if let Ok(r) = &r {
                        for (i, n) in entry_names(r).into_iter().enumerate() {
                            let size = target(&r.hits[i]).len() as u64;
                            all.push(Listed {
                                ino: base + 2 + i as u64,
                                kind: FileType::Symlink,
                                name: n.into_bytes(),
                                size,
                            });
                        }
                    }
                    f(Ok(all))
                });
            }
            Some(_) => f(Err(Errno::ENOTDIR)),
            None => f(Err(Errno::ENOENT)),
        }
    }

    /// `readdir` of a search directory.
    pub fn readdir(self: &Arc<Self>, ino: u64, offset: u64, mut reply: ReplyDirectory) {
        self.listing(ino, move |r| match r {
            Ok(all) => {
                for (i, e) in all.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(e.ino), i as u64 + 1, e.kind, std::ffi::OsStr::from_bytes(&e.name)) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        });
    }

    /// `readdirplus` of a search directory: the entries with their attributes.
    pub fn readdirplus(self: &Arc<Self>, ino: u64, offset: u64, mut reply: ReplyDirectoryPlus) {
        self.listing(ino, move |r| match r {
            Ok(all) => {
                for (i, e) in all.iter().enumerate().skip(offset as usize) {
                    let a = attr(e.ino, e.kind, e.size);
                    if reply.add(
                        INodeNo(e.ino),
                        i as u64 + 1,
                        std::ffi::OsStr::from_bytes(&e.name),
                        &TTL,
                        &a,
                        Generation(0),
                    ) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        });
    }

    /// `open` of `.results.json` (read-only; computed now, from a worker if needed).
    pub fn open(self: &Arc<Self>, ino: u64, write: bool, reply: ReplyOpen) {
        let Some(Node::Json(q)) = node(ino) else {
            return reply.error(if write { Errno::EACCES } else { Errno::EISDIR });
        };
        if write {
            return reply.error(Errno::EACCES);
        }
        let Some(text) = self.query_text(q) else { return reply.error(Errno::ENOENT) };
        let me = self.clone();
        self.with_results(text.clone(), move |r| {
            let doc = results_json(&text, &r);
            let fh = FH_BASE | me.next_fh.fetch_add(1, Ordering::Relaxed);
            me.open.lock().insert(fh, Arc::new(doc));
            reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO)
        });
    }

    /// `read` of an open `.results.json`.
    pub fn read(&self, fh: u64, offset: u64, size: u32, reply: ReplyData) {
        let data = self.open.lock().get(&fh).cloned().unwrap_or_default();
        let s = (offset as usize).min(data.len());
        let e = (s + size as usize).min(data.len());
        reply.data(&data[s..e])
    }

    /// `release` of an open `.results.json`.
    pub fn release(&self, fh: u64) {
        self.open.lock().remove(&fh);
    }

    /// The index's status for `.magic/status`.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(self.index.status()).unwrap_or(serde_json::Value::Null)
    }
}

/// `.magic/status` with the index's status added as `"search"`.
pub fn with_status(status: Vec<u8>, s: &Search) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&status) else { return status };
    if let Some(o) = v.as_object_mut() {
        o.insert("search".into(), s.status_json());
    }
    let mut out = serde_json::to_vec_pretty(&v).unwrap_or(status);
    out.push(b'\n');
    out
}

/// `.results.json`: `{"query", "generation", "results": [{"name", "path", "score", "passage"}]}`,
/// or `{"query", "error"}`.
fn results_json(query: &str, r: &Result<Arc<Results>, SearchError>) -> Vec<u8> {
    let v = match r {
        Ok(r) => {
            let names = entry_names(r);
            let results: Vec<serde_json::Value> = r
                .hits
                .iter()
                .zip(names)
                .map(|(h, n)| {
                    serde_json::json!({
                        "name": n,
                        "path": h.path,
                        "in_mount": h.in_mount,
                        "score": (h.score as f64 * 10_000.0).round() / 10_000.0,
                        "passage": h.passage,
                    })
                })
                .collect();
            serde_json::json!({ "query": r.query, "generation": r.generation, "results": results })
        }
        Err(e) => serde_json::json!({ "query": query, "error": e.to_string() }),
    };
    let mut out = serde_json::to_vec_pretty(&v).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use magicfs_index::Hit;

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(decode_query(b"tcp%2Fip and 100%25"), "tcp/ip and 100%");
        assert_eq!(decode_query(b"50% off"), "50% off");
    }

    #[test]
    fn names_are_ranked_and_unique() {
        let hit = |p: &str, s: f32| Hit { path: p.into(), in_mount: true, score: s, passage: String::new() };
        let r = Results {
            query: "q".into(),
            hits: vec![hit("a/notes.md", 0.871), hit("b/notes.md", 0.866), hit("c/notes.md", 0.87)],
            generation: 0,
        };
        assert_eq!(entry_names(&r), ["0.87_notes.md", "0.87_notes~2.md", "0.87_notes~3.md"]);
        assert!(node(qdir_ino(3) + 2).is_some());
    }
}
