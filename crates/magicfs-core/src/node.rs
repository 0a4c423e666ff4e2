//! The in-memory inode table: every inode with its attributes, xattrs and
//! body (directory entries, file extents and dirty pages, symlink target).
//! The store is the durable image of this table; every change to it is
//! written to the store as a [`Batch`] by the operation that makes it.

use magicfs_store::keys::{extent_key, ino_key, named_key};
use magicfs_store::{Batch, ChunkMeta, Extent, Table};
use magicfs_types::{Attr, ChunkId, FileKind, Ino, Timespec};
use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// Size of a dirty page: the unit in which written data is buffered.
pub const PAGE: u64 = 64 * 1024;

/// A buffered page of written data. Bytes past `data.len()` (and within the
/// file size) read as zeros.
#[derive(Clone, Debug)]
pub struct Page {
    /// Page contents from the page start.
    pub data: Vec<u8>,
}

/// True when one of `pages` (by page index) holds all of `[start, end)`:
/// an extent under it is shadowed and need not be read.
pub fn page_covers(pages: &[(u64, Arc<Page>)], start: u64, end: u64) -> bool {
    pages.iter().any(|(i, _)| i * PAGE <= start && end <= (i + 1) * PAGE)
}

/// The contents of a regular file.
#[derive(Default)]
pub struct FileData {
    /// Committed extents keyed by file offset; they never overlap.
    pub extents: BTreeMap<u64, Extent>,
    /// Dirty pages keyed by page index; they shadow the extents below them.
    pub pages: BTreeMap<u64, Arc<Page>>,
    /// Bytes held by dirty pages.
    pub dirty_bytes: usize,
    /// Bytes covered by extents.
    pub extent_bytes: u64,
    /// Serialises commits and truncation of this file (shared with the
    /// node that replaces this one when another mount's change is applied).
    pub commit_lock: Arc<CommitLock>,
    /// Bumped whenever content changes outside the page path (truncate).
    pub content_gen: u64,
    /// While written data is not committed: the size and modification time
    /// that go with the committed data. The stored inode row carries these,
    /// never the size of bytes only held in dirty pages (another mount, or
    /// this one after a crash, would read zeros there). `None` when the
    /// attributes in memory are the committed ones.
    pub committed: Option<Committed>,
}

/// Dirty pages taken by a commit, by page index.
pub type PageList = Vec<(u64, Arc<Page>)>;

/// Serialises the commits and truncation of one file, letting two commits
/// overlap: a commit chunks and stores its pages holding `chunking`, then
/// takes `installing` before it lets `chunking` go, and installs its
/// metadata holding `installing` alone. So the next commit chunks (and its
/// uploads start) while this one waits for its uploads, and the metadata
/// commits land in the order their snapshots were taken. Truncation and
/// hole punching hold both ([`CommitLock::lock`]).
#[derive(Default)]
pub struct CommitLock {
    chunking: Mutex<()>,
    installing: Mutex<()>,
    /// Pages snapshotted by a commit that has not installed yet, by page
    /// index: a later commit leaves them to it while they are unchanged.
    in_flight: Mutex<HashMap<u64, Arc<Page>>>,
    in_flight_bytes: AtomicUsize,
}

/// Both locks of a [`CommitLock`]: no commit of the file runs.
pub struct CommitGuard<'a> {
    _chunking: MutexGuard<'a, ()>,
    _installing: MutexGuard<'a, ()>,
}

impl CommitLock {
    /// Waits until no commit of the file runs and keeps others out.
    pub fn lock(&self) -> CommitGuard<'_> {
        let chunking = self.chunking.lock();
        CommitGuard { _chunking: chunking, _installing: self.installing.lock() }
    }

    /// The lock a commit holds while it chunks and stores its pages.
    pub fn chunking(&self) -> MutexGuard<'_, ()> {
        self.chunking.lock()
    }

    /// The lock a commit takes (holding [`CommitLock::chunking`]) before it
    /// installs.
    pub fn installing(&self) -> MutexGuard<'_, ()> {
        self.installing.lock()
    }

    /// Splits `pages` into those no earlier commit is committing and those
    /// one is (unchanged since it took them).
    pub fn split(&self, pages: &BTreeMap<u64, Arc<Page>>) -> (PageList, PageList) {
        let m = self.in_flight.lock();
        let (mut free, mut taken) = (Vec::new(), Vec::new());
        for (i, p) in pages {
            match m.get(i).is_some_and(|cur| Arc::ptr_eq(cur, p)) {
                true => taken.push((*i, p.clone())),
                false => free.push((*i, p.clone())),
            }
        }
        (free, taken)
    }

    /// Whether any page is being committed.
    pub fn any_in_flight(&self) -> bool {
        !self.in_flight.lock().is_empty()
    }

    /// Marks a commit's snapshotted pages as in flight.
    pub fn start(&self, pages: &[(u64, Arc<Page>)]) {
        let mut m = self.in_flight.lock();
        for (i, p) in pages {
            if let Some(old) = m.insert(*i, p.clone()) {
                self.in_flight_bytes.fetch_sub(old.data.len(), Ordering::Relaxed);
            }
            self.in_flight_bytes.fetch_add(p.data.len(), Ordering::Relaxed);
        }
    }

    /// A commit's pages are no longer in flight (installed or failed).
    pub fn finish(&self, pages: &[(u64, Arc<Page>)]) {
        let mut m = self.in_flight.lock();
        for (i, p) in pages {
            if m.get(i).is_some_and(|cur| Arc::ptr_eq(cur, p)) {
                m.remove(i);
                self.in_flight_bytes.fetch_sub(p.data.len(), Ordering::Relaxed);
            }
        }
    }

    /// Bytes of the pages in flight.
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes.load(Ordering::Relaxed)
    }
}

/// The attributes of a file's committed data while newer writes are
/// buffered (see [`FileData::committed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Size of the committed contents.
    pub size: u64,
    /// Modification time of the committed contents.
    pub mtime: Timespec,
}

impl FileData {
    /// Removes the extents starting in `range`, logging the deletions;
    /// returns the chunks they referred to (to be decref'd by the caller).
    pub fn remove_extents(&mut self, b: &mut Batch, ino: Ino, range: impl std::ops::RangeBounds<u64>) -> Vec<ChunkId> {
        let offsets: Vec<u64> = self.extents.range(range).map(|(o, _)| *o).collect();
        let mut dropped = Vec::with_capacity(offsets.len());
        for off in offsets {
            if let Some(e) = self.extents.remove(&off) {
                self.extent_bytes -= e.len as u64;
                b.del(Table::Extents, extent_key(ino, off));
                dropped.push(e.chunk);
            }
        }
        dropped
    }

    /// Records, before a write changes them, the attributes `size` and
    /// `mtime` as the committed ones (unless uncommitted writes already did).
    pub fn hold_committed(&mut self, size: u64, mtime: Timespec) {
        self.committed.get_or_insert(Committed { size, mtime });
    }

    /// A committed change of the size from `old` (in memory) to `new`
    /// (truncation, preallocation): the committed size follows it unless
    /// that would expose bytes between the committed size and `old` that
    /// are only held in dirty pages.
    pub fn resize_committed(&mut self, old: u64, new: u64) {
        if let Some(c) = &mut self.committed {
            if new <= c.size || c.size >= old {
                c.size = new;
            }
        }
        self.settle();
    }

    /// Without dirty pages every byte in memory is committed: the
    /// attributes in memory are the committed ones again.
    pub fn settle(&mut self) {
        if self.pages.is_empty() {
            self.committed = None;
        }
    }
}

/// What an inode holds besides its attributes.
pub enum Body {
    /// A directory: its entries and its parent.
    Dir {
        /// Entries by name.
        entries: BTreeMap<Vec<u8>, Ino>,
        /// The parent directory (itself for the root).
        parent: Ino,
    },
    /// A regular file.
    File(Box<FileData>),
    /// A symbolic link.
    Symlink(Vec<u8>),
    /// A fifo, socket or device node.
    Special,
}

/// One inode.
pub struct Node {
    /// Attributes.
    pub attr: Attr,
    /// Extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Contents.
    pub body: Body,
    /// Open handles on this inode (changed under the read lock).
    pub open: AtomicU32,
    /// Bumped whenever a change made by another mount of a shared volume
    /// touches this inode's attributes or contents.
    pub remote_gen: u64,
}

impl Node {
    /// A new node of `attr.kind` with an empty body.
    pub fn new(attr: Attr, parent: Ino) -> Node {
        let body = match attr.kind {
            FileKind::Dir => Body::Dir { entries: BTreeMap::new(), parent },
            FileKind::File => Body::File(Box::default()),
            FileKind::Symlink => Body::Symlink(Vec::new()),
            _ => Body::Special,
        };
        Node { attr, xattrs: BTreeMap::new(), body, open: AtomicU32::new(0), remote_gen: 0 }
    }

    /// The attributes as stored: a file with uncommitted writes keeps the
    /// size and modification time of its committed data.
    pub fn attr_stored(&self) -> Attr {
        let mut a = self.attr;
        if let Some(c) = self.file().and_then(|f| f.committed) {
            a.size = c.size;
            a.mtime = c.mtime;
        }
        a
    }

    /// The encoded `inodes` table value: the stored attributes, then the
    /// symlink target.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.attr_stored().encode().to_vec();
        if let Body::Symlink(t) = &self.body {
            v.extend_from_slice(t);
        }
        v
    }

    /// The attributes as handed out, with `blocks` counted from the data
    /// held (extents and dirty pages, holes excluded). Directories and
    /// symlinks hold no data blocks (as on tmpfs, and as ext4's inline
    /// symlinks), whichever reply hands their attributes out.
    pub fn attr_out(&self) -> Attr {
        let mut a = self.attr;
        let held = match self.file() {
            // Dirty pages may overlap extents: never more than the size.
            Some(f) => (f.extent_bytes + f.dirty_bytes as u64).min(a.size),
            None => 0,
        };
        a.blocks = held.div_ceil(512);
        a
    }

    /// Takes stored attributes `attr` (another mount's change, or the
    /// volume loaded again) while keeping what this mount's unflushed
    /// writes gave the file: its size and mtime, which the flush writes up
    /// to. The stored row carries the committed size and time; they are kept
    /// as the committed ones until the flush.
    pub fn take_stored_attr(&mut self, attr: Attr) {
        let local = self.attr;
        self.attr = attr;
        if let Some(f) = self.file_mut().filter(|f| !f.pages.is_empty()) {
            f.committed = Some(Committed { size: attr.size, mtime: attr.mtime });
            self.attr.size = attr.size.max(local.size);
            self.attr.mtime = attr.mtime.max(local.mtime);
        }
    }

    /// The file data, if this is a regular file.
    pub fn file(&self) -> Option<&FileData> {
        match &self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }

    /// The file data, mutably.
    pub fn file_mut(&mut self) -> Option<&mut FileData> {
        match &mut self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }

    /// Directory entries, if this is a directory.
    pub fn entries(&self) -> Option<&BTreeMap<Vec<u8>, Ino>> {
        match &self.body {
            Body::Dir { entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// Directory entries, mutably.
    pub fn entries_mut(&mut self) -> Option<&mut BTreeMap<Vec<u8>, Ino>> {
        match &mut self.body {
            Body::Dir { entries, .. } => Some(entries),
            _ => None,
        }
    }
}

/// All metadata: the inode table and the chunk index, under one lock.
pub struct Meta {
    /// Inodes by number.
    pub nodes: HashMap<Ino, Node>,
    /// The chunk index.
    pub chunks: HashMap<ChunkId, ChunkMeta>,
    /// Next inode number to hand out.
    pub next_ino: Ino,
}

/// Meta key of the next inode number.
pub const NEXT_INO_KEY: &[u8] = b"next_ino";

impl Meta {
    /// An empty table (no root yet).
    pub fn empty() -> Meta {
        Meta { nodes: HashMap::new(), chunks: HashMap::new(), next_ino: magicfs_types::ROOT_INO + 1 }
    }

    /// Records the node's attributes (and symlink target) in `b`.
    pub fn log_node(&self, b: &mut Batch, ino: Ino) {
        if let Some(n) = self.nodes.get(&ino) {
            b.put(Table::Inodes, ino_key(ino), n.encode());
        }
    }

    /// Hands out a new inode number, logging the new counter.
    pub fn alloc_ino(&mut self, b: &mut Batch) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        b.put(Table::Meta, NEXT_INO_KEY.to_vec(), self.next_ino.to_le_bytes().to_vec());
        ino
    }

    /// Adds one reference to a chunk that is known to the index.
    pub fn incref(&mut self, b: &mut Batch, id: ChunkId) {
        if let Some(m) = self.chunks.get_mut(&id) {
            m.refs += 1;
            b.put(Table::Chunks, id.0.to_vec(), m.encode());
        }
    }

    /// Drops one reference to a chunk; returns its meta if it became unreferenced
    /// (and was removed from the index).
    pub fn decref(&mut self, b: &mut Batch, id: ChunkId) -> Option<ChunkMeta> {
        let m = self.chunks.get_mut(&id)?;
        m.refs = m.refs.saturating_sub(1);
        if m.refs == 0 {
            let m = self.chunks.remove(&id);
            b.del(Table::Chunks, id.0.to_vec());
            m
        } else {
            b.put(Table::Chunks, id.0.to_vec(), m.encode());
            None
        }
    }

    /// Makes `[start, end)` of `ino` free of extents, keeping the bytes
    /// around it: an extent reaching into the range from before is cut at
    /// `start`, one reaching out of it past `end` keeps its tail (a new
    /// extent over the same chunk). Returns the chunks of removed extents
    /// (to be decref'd by the caller). A commit widens its ranges to whole
    /// extents, so on one mount nothing is cut; extents written meanwhile
    /// by another mount of a shared volume may be.
    pub fn clear_range(&mut self, b: &mut Batch, ino: Ino, start: u64, end: u64) -> Vec<ChunkId> {
        let Some(f) = self.nodes.get_mut(&ino).and_then(Node::file_mut) else { return Vec::new() };
        let tail = |off: u64, e: &Extent| Extent { chunk: e.chunk, skip: e.skip + (end - off) as u32, len: 0 };
        let mut tails = Vec::new();
        if let Some((&off, e)) = f.extents.range_mut(..start).next_back() {
            let e_end = off + e.len as u64;
            if e_end > start {
                if e_end > end {
                    tails.push(Extent { len: (e_end - end) as u32, ..tail(off, e) });
                }
                f.extent_bytes -= e_end - start;
                e.len = (start - off) as u32;
                b.put(Table::Extents, extent_key(ino, off), e.encode());
            }
        }
        if let Some((&off, e)) = f.extents.range(start..end).next_back() {
            let e_end = off + e.len as u64;
            if e_end > end {
                tails.push(Extent { len: (e_end - end) as u32, ..tail(off, e) });
            }
        }
        let dropped = f.remove_extents(b, ino, start..end);
        for e in &tails {
            f.extent_bytes += e.len as u64;
            f.extents.insert(end, *e);
            b.put(Table::Extents, extent_key(ino, end), e.encode());
        }
        for e in tails {
            self.incref(b, e.chunk);
        }
        dropped
    }

    /// Removes every extent of `ino` at or after `from`, trimming one that
    /// straddles it. Returns chunks that became unreferenced.
    pub fn cut_extents(&mut self, b: &mut Batch, ino: Ino, from: u64) -> Vec<ChunkMeta> {
        let mut dropped = Vec::new();
        let mut freed = Vec::new();
        if let Some(f) = self.nodes.get_mut(&ino).and_then(Node::file_mut) {
            if let Some((&off, e)) = f.extents.range_mut(..from).next_back() {
                let end = off + e.len as u64;
                if end > from {
                    e.len = (from - off) as u32;
                    f.extent_bytes -= end - from;
                    b.put(Table::Extents, extent_key(ino, off), e.encode());
                }
            }
            dropped = f.remove_extents(b, ino, from..);
        }
        for c in dropped {
            freed.extend(self.decref(b, c));
        }
        freed
    }

    /// Removes the extents of `ino` inside `[start, end)`, trimming those
    /// across its edges (one across both becomes two that share its chunk).
    /// Returns chunks that became unreferenced.
    pub fn punch_extents(&mut self, b: &mut Batch, ino: Ino, start: u64, end: u64) -> Vec<ChunkMeta> {
        let mut dropped = Vec::new();
        let mut split = None;
        if let Some(f) = self.nodes.get_mut(&ino).and_then(Node::file_mut) {
            // An extent across `start`: keep its head (and its tail past `end`).
            let mut tail = None;
            if let Some((&off, e)) = f.extents.range_mut(..start).next_back() {
                let e_end = off + e.len as u64;
                if e_end > start {
                    let whole = *e;
                    e.len = (start - off) as u32;
                    f.extent_bytes -= e_end - start;
                    b.put(Table::Extents, extent_key(ino, off), e.encode());
                    if e_end > end {
                        tail = Some((off, whole));
                        split = Some(whole.chunk);
                    }
                }
            }
            // The last extent starting inside may reach past `end`: keep its tail.
            let last = f.extents.range(start..end).next_back().map(|(o, e)| (*o, *e));
            dropped = f.remove_extents(b, ino, start..end);
            if let Some((off, e)) = last.filter(|(o, e)| o + e.len as u64 > end) {
                dropped.pop(); // the tail still refers to its chunk
                tail = Some((off, e));
            }
            if let Some((off, e)) = tail {
                let cut = (end - off) as u32;
                let rest = Extent { chunk: e.chunk, skip: e.skip + cut, len: e.len - cut };
                f.extents.insert(end, rest);
                f.extent_bytes += rest.len as u64;
                b.put(Table::Extents, extent_key(ino, end), rest.encode());
            }
        }
        if let Some(c) = split {
            self.incref(b, c);
        }
        let mut freed = Vec::new();
        for c in dropped {
            freed.extend(self.decref(b, c));
        }
        freed
    }

    /// Deletes an inode and everything it owns. Returns chunks that became
    /// unreferenced.
    pub fn free_node(&mut self, b: &mut Batch, ino: Ino) -> Vec<ChunkMeta> {
        let freed = self.cut_extents(b, ino, 0);
        if let Some(n) = self.nodes.remove(&ino) {
            for name in n.xattrs.keys() {
                b.del(Table::Xattrs, named_key(ino, name));
            }
        }
        b.del(Table::Inodes, ino_key(ino));
        b.del(Table::Orphans, ino_key(ino));
        freed
    }
}
