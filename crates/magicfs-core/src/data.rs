//! File contents: reads, buffered writes, and commits that turn dirty pages
//! into content-defined, deduplicated, compressed chunks.
//!
//! Written bytes land in 64 KiB dirty pages (copy-on-write `Arc`s, so a
//! commit can snapshot them without stopping writers). A commit re-chunks
//! only the byte ranges the dirty pages touch, widened to the boundaries of
//! the extents they overlap, so a 4 KiB write into a large file rewrites one
//! or two chunks.

use crate::fs::{store_failed, Fs};
use crate::node::{page_covers, CommitLock, Committed, FileData, Meta, Node, Page, PAGE};
use crate::parts::{ReadParts, Source};
use magicfs_store::chunker::{chunk_id, split_file_range, MIN_CHUNK};
use magicfs_store::codec::{compress, decompress, encode};
use magicfs_store::keys::extent_key;
use magicfs_store::{Batch, ChunkMeta, Codec, Extent, Table};
use magicfs_types::{ChunkId, FileKind, FsError, FsResult, Ino, Timespec};
use rayon::prelude::*;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Largest file size accepted.
pub const MAX_FILE_SIZE: u64 = 1 << 50;

/// The xattr choosing a file's codec.
pub const CODEC_XATTR: &[u8] = b"user.magic.codec";

fn file_of(meta: &Meta, ino: Ino) -> FsResult<(&Node, &FileData)> {
    let n = meta.nodes.get(&ino).ok_or(FsError::NotFound)?;
    match n.file() {
        Some(f) => Ok((n, f)),
        None if n.attr.kind == FileKind::Dir => Err(FsError::IsDir),
        None => Err(FsError::Invalid),
    }
}

/// Extents overlapping `[start, end)`, with their file offsets.
fn extents_in(f: &FileData, start: u64, end: u64) -> Vec<(u64, Extent)> {
    let mut v = Vec::new();
    if let Some((&o, e)) = f.extents.range(..start).next_back() {
        if o + e.len as u64 > start {
            v.push((o, *e));
        }
    }
    v.extend(f.extents.range(start..end).map(|(o, e)| (*o, *e)));
    v
}

/// How often a read starts over when concurrent commits free its chunks.
const READ_ATTEMPTS: usize = 8;

/// Why a chunk could not be read.
enum ReadFail {
    /// A real error.
    Fs(FsError),
    /// The chunk is no longer referenced by anything (freed meanwhile).
    Gone(ChunkId),
    /// The chunk was freed and stored again at another location meanwhile.
    Moved,
}

impl From<FsError> for ReadFail {
    fn from(e: FsError) -> ReadFail {
        ReadFail::Fs(e)
    }
}

/// Runs a chunk read, repeating it when the chunk moved under it; a chunk
/// that is gone is an error here (the caller holds no extent to re-plan).
fn retry_moved<T>(mut f: impl FnMut() -> Result<T, ReadFail>) -> FsResult<T> {
    for _ in 0..READ_ATTEMPTS {
        match f() {
            Ok(v) => return Ok(v),
            Err(ReadFail::Moved) => continue,
            Err(ReadFail::Gone(id)) => {
                log::error!("chunk {id:?} is referenced but missing from the index");
                return Err(FsError::Io);
            }
            Err(ReadFail::Fs(e)) => return Err(e),
        }
    }
    Err(FsError::Io)
}

/// The parts of `[s, t)` that none of `covered` (sorted, disjoint) overlaps.
fn uncovered(s: u64, t: u64, covered: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = s;
    for &(a, b) in covered {
        if b <= pos || a >= t {
            continue;
        }
        if a > pos {
            out.push((pos, a));
        }
        pos = pos.max(b);
    }
    if pos < t {
        out.push((pos, t));
    }
    out
}

/// What installing a commit's chunks came to.
enum Install {
    /// The extents are in place.
    Done,
    /// Nothing changed: these chunks (offset, length, id) were thought to be
    /// in the index but were freed meanwhile, and must be stored first.
    Missing(Vec<(u64, u32, ChunkId)>),
}

/// What a commit snapshotted: the dirty pages it commits and the
/// attributes that go with them.
struct Snapshot {
    pages: Vec<(u64, Arc<Page>)>,
    attr: Committed,
}

impl Snapshot {
    /// Whether `f` holds no dirty page but those snapshotted (unchanged).
    fn is_all_of(&self, f: &FileData) -> bool {
        f.pages.len() == self.pages.len()
            && self.pages.iter().all(|(i, p)| f.pages.get(i).is_some_and(|cur| Arc::ptr_eq(cur, p)))
    }
}

/// A commit's snapshot: its pages, the ranges they rewrite, the codec, and
/// the pages left to an earlier commit in flight.
struct Dirty {
    snap: Snapshot,
    ranges: Vec<(u64, u64)>,
    codec: Codec,
    skipped: Vec<(u64, Arc<Page>)>,
}

/// The chunks a commit produced per range, those it stored (by id), and
/// whether it stored any.
struct Stored {
    produced: Vec<((u64, u64), Vec<NewChunk>)>,
    placed: HashMap<ChunkId, ChunkMeta>,
    wrote: bool,
}

/// Replaces the extents of `ino` over each committed range with the
/// range's new chunks, adjusting reference counts, and moves the committed
/// size and modification time to the snapshot's; `release` gets the chunks
/// that became unreferenced.
fn install(
    meta: &mut Meta,
    b: &mut Batch,
    ino: Ino,
    snap: &Snapshot,
    produced: &[((u64, u64), Vec<NewChunk>)],
    placed: &HashMap<ChunkId, ChunkMeta>,
    release: &mut dyn FnMut(Vec<ChunkMeta>),
) -> Install {
    let missing: Vec<(u64, u32, ChunkId)> = produced
        .iter()
        .flat_map(|(_, chunks)| chunks)
        .filter(|c| !meta.chunks.contains_key(&c.id) && !placed.contains_key(&c.id))
        .map(|c| (c.offset, c.len, c.id))
        .collect();
    if !missing.is_empty() {
        return Install::Missing(missing);
    }
    if meta.nodes.get(&ino).and_then(Node::file).is_none() {
        return Install::Done;
    }
    let mut dropped = Vec::new();
    for ((s, e), chunks) in produced {
        dropped.extend(meta.clear_range(b, ino, *s, *e));
        let Some(f) = meta.nodes.get_mut(&ino).and_then(Node::file_mut) else { return Install::Done };
        for c in chunks {
            let x = Extent { chunk: c.id, skip: 0, len: c.len };
            f.extent_bytes += c.len as u64;
            f.extents.insert(c.offset, x);
            b.put(Table::Extents, extent_key(ino, c.offset), x.encode());
        }
        for c in chunks {
            if let (Entry::Vacant(v), Some(m)) = (meta.chunks.entry(c.id), placed.get(&c.id)) {
                v.insert(*m);
            }
            meta.incref(b, c.id);
        }
    }
    let mut freed = Vec::new();
    for id in dropped {
        freed.extend(meta.decref(b, id));
    }
    if let Some(f) = meta.nodes.get_mut(&ino).and_then(Node::file_mut) {
        // Pages written since the snapshot stay uncommitted: the stored
        // attributes are the snapshot's until they are committed too.
        f.committed = match f.committed {
            _ if snap.is_all_of(f) => None,
            Some(c) => Some(Committed { size: c.size.max(snap.attr.size), mtime: c.mtime.max(snap.attr.mtime) }),
            None => Some(snap.attr),
        };
    }
    meta.log_node(b, ino);
    release(freed);
    Install::Done
}

/// A chunk produced by a commit.
struct NewChunk {
    offset: u64,
    len: u32,
    id: ChunkId,
}

impl Fs {
    /// Raw bytes of a chunk, from the cache or the store.
    fn try_chunk_bytes(&self, id: &ChunkId) -> Result<Arc<Vec<u8>>, ReadFail> {
        if let Some(d) = self.cache.get(id) {
            return Ok(d);
        }
        let m = self.meta.read().chunks.get(id).copied().ok_or(ReadFail::Gone(*id))?;
        self.chunk_reads.fetch_add(1, Ordering::Relaxed);
        let stored = self.store.read_chunk(m.location()).map_err(|e| self.read_failed(id, &m, e))?;
        let raw = decompress(m.codec, stored, m.raw_len as usize).map_err(|e| {
            log::error!("decoding chunk {id:?}: {e}");
            ReadFail::Fs(FsError::Io)
        })?;
        self.check_hash(id, &m, &raw)?;
        let raw = Arc::new(raw);
        self.cache.put(*id, raw.clone());
        Ok(raw)
    }

    /// A chunk's raw bytes without copying them: from the cache, straight
    /// from the store for raw (uncompressed) chunks, or decoded whole and
    /// kept in the cache.
    fn try_chunk_source(&self, id: &ChunkId) -> Result<Source, ReadFail> {
        if let Some(d) = self.cache.get(id) {
            return Ok(Source::Cached(d));
        }
        let m = self.meta.read().chunks.get(id).copied().ok_or(ReadFail::Gone(*id))?;
        if m.codec != Codec::None {
            return self.try_chunk_bytes(id).map(Source::Cached);
        }
        self.chunk_reads.fetch_add(1, Ordering::Relaxed);
        let shared = self.store.share_chunk(m.location()).map_err(|e| self.read_failed(id, &m, e))?;
        if !self.verified.contains(id) {
            self.check_hash(id, &m, &shared)?;
            self.verified.insert(*id);
        }
        Ok(Source::Stored(shared))
    }

    /// Checks bytes read from the packs against the chunk's name (its
    /// BLAKE3 hash): a damaged pack file or object is an I/O error, never
    /// wrong data. Each chunk is checked once per mount.
    fn check_hash(&self, id: &ChunkId, used: &ChunkMeta, raw: &[u8]) -> Result<(), ReadFail> {
        if chunk_id(raw) == *id {
            return Ok(());
        }
        Err(self.read_failed(id, used, "its bytes in the pack file do not match its hash (the file is damaged; `magicfs fsck` lists every such chunk)"))
    }

    /// Copies bytes `from..from + out.len()` of a chunk into `out`.
    pub(crate) fn chunk_slice(&self, id: &ChunkId, from: u64, out: &mut [u8]) -> FsResult<()> {
        retry_moved(|| {
            let src = self.try_chunk_source(id)?;
            let bytes = src.bytes().get(from as usize..from as usize + out.len()).ok_or(ReadFail::Fs(FsError::Io))?;
            out.copy_from_slice(bytes);
            Ok(())
        })
    }

    /// Classifies a failed chunk read: a chunk freed (or stored again
    /// elsewhere) by a concurrent commit since its location was looked up is
    /// not an error, the read is repeated; anything else is.
    fn read_failed(&self, id: &ChunkId, used: &ChunkMeta, e: impl std::fmt::Display) -> ReadFail {
        match self.meta.read().chunks.get(id) {
            None => ReadFail::Gone(*id),
            Some(now) if now.location() != used.location() => ReadFail::Moved,
            Some(_) => {
                log::error!("reading chunk {id:?}: {e}");
                ReadFail::Fs(FsError::Io)
            }
        }
    }

    /// Dirty bytes of one file above which its pages are committed early.
    pub fn spill_bytes(&self) -> usize {
        self.cfg.spill_bytes
    }

    /// Bytes written to `ino` and not yet committed.
    pub fn dirty_bytes(&self, ino: Ino) -> usize {
        self.meta.read().nodes.get(&ino).and_then(Node::file).map_or(0, |f| f.dirty_bytes)
    }

    /// A buffer for assembling a commit's byte ranges (reused: a fresh
    /// allocation of tens of MiB costs more in page faults than the copy).
    fn flush_buffer(&self) -> Vec<u8> {
        self.flush_buf.try_lock().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default()
    }

    fn return_flush_buffer(&self, buf: Vec<u8>) {
        if let Some(mut b) = self.flush_buf.try_lock() {
            if buf.capacity() <= 2 * self.cfg.spill_bytes + (8 << 20) {
                *b = buf;
            }
        }
    }

    /// Reads up to `size` bytes at `offset`.
    pub fn read(&self, ino: Ino, offset: u64, size: u64) -> FsResult<Vec<u8>> {
        let mut out = Vec::new();
        self.read_into(ino, offset, size, &mut out)?;
        Ok(out)
    }

    /// Reads up to `size` bytes at `offset` into `out` (replacing its
    /// contents). `out`'s existing allocation is reused without zeroing.
    pub fn read_into(&self, ino: Ino, offset: u64, size: u64, out: &mut Vec<u8>) -> FsResult<()> {
        let parts = self.read_parts(ino, offset, size)?;
        if out.len() < parts.len() {
            out.resize(parts.len(), 0);
        }
        out.truncate(parts.len());
        parts.copy_to(out);
        Ok(())
    }

    /// Reads up to `size` bytes at `offset` and hands them to `f`, using a
    /// buffer kept per thread (no allocation or zeroing per read).
    pub fn read_with<R>(&self, ino: Ino, offset: u64, size: u64, f: impl FnOnce(&[u8]) -> R) -> FsResult<R> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with(|b| {
            let mut b = b.borrow_mut();
            self.read_into(ino, offset, size, &mut b)?;
            let r = f(&b);
            if b.capacity() > 4 << 20 {
                *b = Vec::new();
            }
            Ok(r)
        })
    }

    /// Reads up to `size` bytes at `offset` (clamped to the file size) as
    /// shared pieces, without copying chunk bytes: for replies sent as one
    /// vectored write.
    pub fn read_parts(&self, ino: Ino, offset: u64, size: u64) -> FsResult<ReadParts> {
        let want = self.readable(ino, offset, size)?;
        // A commit or truncate running alongside may free a chunk this read
        // planned to use; the read then starts over from the new extents.
        let mut gone = None;
        for _ in 0..READ_ATTEMPTS {
            match self.plan_read(ino, offset, want) {
                Err(ReadFail::Gone(id)) => gone = Some(id),
                Err(ReadFail::Moved) => {}
                Err(ReadFail::Fs(e)) => return Err(e),
                Ok(parts) => return Ok(parts),
            }
        }
        match gone {
            Some(id) => log::error!("inode {ino}: chunk {id:?} is referenced but missing from the index"),
            None => log::error!("inode {ino}: its chunks kept moving during {READ_ATTEMPTS} read attempts"),
        }
        Err(FsError::Io)
    }

    /// Whether a read of `size` bytes at `offset` is answered from this
    /// machine (memory, local disk) without waiting on a network service;
    /// a FUSE request thread hands the others to a worker.
    pub fn read_is_local(&self, ino: Ino, offset: u64, size: u64) -> bool {
        if self.store.chunks().always_local() {
            return true;
        }
        let meta = self.meta.read();
        let Ok((n, f)) = file_of(&meta, ino) else { return true };
        let end = n.attr.size.min(offset.saturating_add(size));
        if end <= offset {
            return true;
        }
        extents_in(f, offset, end).iter().all(|(_, e)| {
            self.cache.contains(&e.chunk)
                || meta.chunks.get(&e.chunk).is_none_or(|m| self.store.chunk_is_local(m.location()))
        })
    }

    /// How many bytes a read of `size` at `offset` returns.
    fn readable(&self, ino: Ino, offset: u64, size: u64) -> FsResult<usize> {
        let meta = self.meta.read();
        let (n, _) = file_of(&meta, ino)?;
        Ok(n.attr.size.saturating_sub(offset).min(size) as usize)
    }

    /// The pieces of the `want` bytes at `offset`: committed extents, with
    /// dirty pages over them, and zeros for holes and anything past the
    /// current size. Each byte comes from exactly one piece.
    fn plan_read(&self, ino: Ino, offset: u64, want: usize) -> Result<ReadParts, ReadFail> {
        let mut parts = ReadParts::default();
        if want == 0 {
            return Ok(parts);
        }
        let stop = offset + want as u64;
        let (extents, pages, end) = {
            let meta = self.meta.read();
            let (n, f) = file_of(&meta, ino)?;
            let end = n.attr.size.min(stop).max(offset);
            if end == offset {
                parts.push_zeros(want);
                return Ok(parts);
            }
            let pages: Vec<(u64, Arc<Page>)> =
                f.pages.range(offset / PAGE..=(end - 1) / PAGE).map(|(i, p)| (*i, p.clone())).collect();
            (extents_in(f, offset, end), pages, end)
        };
        // Dirty page bytes, in file offsets; they win over extents.
        let mut spans: Vec<(u64, u64, Source, u64)> = Vec::with_capacity(extents.len() + pages.len());
        for (idx, p) in &pages {
            let ps = idx * PAGE;
            let s = ps.max(offset);
            let t = (ps + p.data.len() as u64).min(end);
            if t > s {
                spans.push((s, t, Source::Page(p.clone()), s - ps));
            }
        }
        let page_spans: Vec<(u64, u64)> = spans.iter().map(|(s, t, _, _)| (*s, *t)).collect();
        for (eoff, e) in extents {
            let s = eoff.max(offset);
            let t = (eoff + e.len as u64).min(end);
            if s >= t || page_covers(&pages, s, t) {
                continue;
            }
            let src = self.try_chunk_source(&e.chunk)?;
            let base = e.skip as u64 + (s - eoff);
            if base + (t - s) > src.bytes().len() as u64 {
                log::error!("inode {ino}: chunk {:?} is shorter than its extent", e.chunk);
                return Err(ReadFail::Fs(FsError::Io));
            }
            for (a, b) in uncovered(s, t, &page_spans) {
                spans.push((a, b, src.clone(), base + (a - s)));
            }
        }
        spans.sort_unstable_by_key(|(s, ..)| *s);
        let mut pos = offset;
        for (s, t, src, from) in spans {
            parts.push_zeros((s - pos) as usize);
            parts.push(src, from as usize, (t - s) as usize);
            pos = t;
        }
        parts.push_zeros((stop - pos) as usize);
        Ok(parts)
    }

    /// Writes `data` at `offset` into the dirty pages. Returns true when the
    /// file holds enough dirty data that it should be committed.
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<bool> {
        let end = offset.checked_add(data.len() as u64).filter(|e| *e <= MAX_FILE_SIZE).ok_or(FsError::FileTooBig)?;
        if self.store.out_of_space() {
            // The disk is full: say so now rather than buffer what cannot be stored.
            return Err(FsError::NoSpace);
        }
        let mut pos = offset;
        while pos < end {
            let idx = pos / PAGE;
            let ps = idx * PAGE;
            let a = (pos - ps) as usize;
            let b = ((end - ps).min(PAGE)) as usize;
            let src = &data[(pos - offset) as usize..(ps + b as u64 - offset) as usize];
            loop {
                let mut meta = self.meta.write();
                let n = meta.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
                let size = n.attr.size;
                let f = n.file_mut().ok_or(FsError::Invalid)?;
                let need_base = if let Some(p) = f.pages.get_mut(&idx) {
                    let p = Arc::make_mut(p);
                    if p.data.len() < b {
                        f.dirty_bytes += b - p.data.len();
                        p.data.resize(b, 0);
                    }
                    p.data[a..b].copy_from_slice(src);
                    None
                } else {
                    let old_end = size.min(ps + PAGE);
                    let covers = a == 0 && ps + b as u64 >= old_end;
                    if old_end > ps && !covers && !extents_in(f, ps, old_end).is_empty() {
                        Some((f.content_gen, (old_end - ps) as u32))
                    } else {
                        let mut d = Vec::with_capacity(b);
                        d.resize(a, 0);
                        d.extend_from_slice(src);
                        f.dirty_bytes += b;
                        f.pages.insert(idx, Arc::new(Page { data: d }));
                        None
                    }
                };
                match need_base {
                    None => {
                        let now = Timespec::now();
                        let (size, mtime) = (n.attr.size, n.attr.mtime);
                        if let Some(f) = n.file_mut() {
                            f.hold_committed(size, mtime);
                        }
                        n.attr.size = n.attr.size.max(ps + b as u64);
                        n.attr.mtime = now;
                        n.attr.ctime = now;
                        break;
                    }
                    Some((gen, len)) => {
                        drop(meta);
                        let base = self.read(ino, ps, len as u64)?;
                        let mut meta = self.meta.write();
                        let f = meta.nodes.get_mut(&ino).and_then(Node::file_mut).ok_or(FsError::NotFound)?;
                        if f.content_gen == gen && !f.pages.contains_key(&idx) {
                            f.dirty_bytes += base.len();
                            f.pages.insert(idx, Arc::new(Page { data: base }));
                        }
                    }
                }
            }
            pos = ps + b as u64;
        }
        // Pages an earlier commit is committing do not count.
        let meta = self.meta.read();
        Ok(meta
            .nodes
            .get(&ino)
            .and_then(Node::file)
            .is_some_and(|f| f.dirty_bytes.saturating_sub(f.commit_lock.in_flight_bytes()) >= self.cfg.spill_bytes))
    }

    /// Commits the dirty pages of a file to the store (on close, fsync, or
    /// when too much is buffered). No-op for clean files and non-files.
    ///
    /// Two commits of a file may overlap (see [`CommitLock`]): while one
    /// waits for its uploads and installs, the next chunks and stores the
    /// pages written since, leaving the first one's pages to it. Returns
    /// once every page dirty at the call is committed.
    pub fn flush(&self, ino: Ino) -> FsResult<()> {
        let lock = match self.meta.read().nodes.get(&ino).and_then(Node::file) {
            Some(f) if !f.pages.is_empty() => f.commit_lock.clone(),
            _ => return Ok(()),
        };
        // Pages an earlier commit is installing are left to it, unless it
        // failed to install them: then this commit takes every page.
        let mut skip_in_flight = true;
        loop {
            let chunking = lock.chunking();
            let Some(dirty) = self.dirty_snapshot(ino, &lock, skip_in_flight) else {
                if !lock.any_in_flight() {
                    return Ok(());
                }
                // Nothing of its own: wait for the commit in flight, then
                // look again (it may have failed and left its pages).
                let installing = lock.installing();
                drop(chunking);
                drop(installing);
                continue;
            };
            lock.start(&dirty.snap.pages);
            let stored = match self.store_ranges(ino, &dirty.ranges, dirty.codec) {
                Ok(stored) => stored,
                Err(e) => {
                    lock.finish(&dirty.snap.pages);
                    return Err(e);
                }
            };
            let installing = lock.installing();
            drop(chunking);
            let left_behind = {
                let meta = self.meta.read();
                let f = meta.nodes.get(&ino).and_then(Node::file);
                dirty.skipped.iter().any(|(i, p)| f.and_then(|f| f.pages.get(i)).is_some_and(|c| Arc::ptr_eq(c, p)))
            };
            if left_behind {
                // The earlier commit failed: its pages are still dirty and
                // this commit's ranges do not cover them. Start again with
                // every page (the chunks stored are left to compaction).
                lock.finish(&dirty.snap.pages);
                skip_in_flight = false;
                drop(installing);
                continue;
            }
            let installed = self.install_stored(ino, &dirty, stored);
            lock.finish(&dirty.snap.pages);
            return installed;
        }
    }

    /// The dirty pages of `ino` to commit (without those in flight in an
    /// earlier commit when `skip_in_flight`), the ranges to rewrite and the
    /// codec; `None` when there are none.
    fn dirty_snapshot(&self, ino: Ino, lock: &CommitLock, skip_in_flight: bool) -> Option<Dirty> {
        let meta = self.meta.read();
        let (n, f) = file_of(&meta, ino).ok()?;
        let size = n.attr.size;
        let (pages, skipped) = match skip_in_flight {
            true => lock.split(&f.pages),
            false => (f.pages.iter().map(|(i, p)| (*i, p.clone())).collect(), Vec::new()),
        };
        if pages.is_empty() {
            return None;
        }
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (idx, _) in &pages {
            let mut s = idx * PAGE;
            let mut e = ((idx + 1) * PAGE).min(size);
            if s >= e {
                continue;
            }
            if let Some((&o, x)) = f.extents.range(..=s).next_back() {
                let xe = o + x.len as u64;
                if xe > s || (xe == s && x.len < MIN_CHUNK) {
                    s = o;
                }
            }
            if let Some((&o, x)) = f.extents.range(..e).next_back() {
                e = e.max(o + x.len as u64);
            }
            match ranges.last_mut() {
                Some(last) if last.1 >= s => last.1 = last.1.max(e),
                _ => ranges.push((s, e)),
            }
        }
        let codec = n
            .xattrs
            .get(CODEC_XATTR)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(Codec::parse)
            .unwrap_or(self.cfg.codec);
        let attr = Committed { size, mtime: n.attr.mtime };
        Some(Dirty { snap: Snapshot { pages, attr }, ranges, codec, skipped })
    }

    /// Chunks, hashes, compresses and stores the new chunk bytes of each
    /// range (once per distinct id), outside the metadata lock.
    fn store_ranges(&self, ino: Ino, ranges: &[(u64, u64)], codec: Codec) -> FsResult<Stored> {
        let mut produced = Vec::new();
        let mut placed: HashMap<ChunkId, ChunkMeta> = HashMap::new();
        let mut wrote = false;
        for (s, e) in ranges {
            let mut buf = self.flush_buffer();
            self.read_into(ino, *s, e - s, &mut buf)?;
            let cuts = split_file_range(&buf, *s);
            let known: Vec<(usize, usize, ChunkId, bool)> = cuts
                .par_iter()
                .map(|&(o, l)| {
                    let d = &buf[o..o + l];
                    (o, l, chunk_id(d), d.iter().all(|b| *b == 0))
                })
                .collect();
            let chunks: FsResult<Vec<NewChunk>> = {
                let meta = self.meta.read();
                known
                    .into_iter()
                    .filter(|(_, _, _, zero)| !zero)
                    .map(|(o, l, id, _)| {
                        let have = meta.chunks.contains_key(&id);
                        (o, l, id, have)
                    })
                    .collect::<Vec<_>>()
            }
            .into_par_iter()
            .map(|(o, l, id, have)| {
                let c = NewChunk { offset: *s + o as u64, len: l as u32, id };
                // Raw chunks are stored straight from the buffer, without a copy.
                (c, (!have).then(|| encode(codec, &buf[o..o + l])))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(c, encoded)| {
                if let (Some(encoded), false) = (encoded, placed.contains_key(&c.id)) {
                    let o = (c.offset - *s) as usize;
                    let (codec, bytes) = match &encoded {
                        Some((codec, bytes)) => (*codec, &bytes[..]),
                        None => (Codec::None, &buf[o..o + c.len as usize]),
                    };
                    placed.insert(c.id, self.place_chunk(bytes, c.len, codec)?);
                    wrote = true;
                }
                Ok(c)
            })
            .collect();
            self.return_flush_buffer(buf);
            produced.push(((*s, *e), chunks?));
        }
        Ok(Stored { produced, placed, wrote })
    }

    /// Makes a commit's chunks readable by the other mounts, commits its
    /// metadata and drops the pages it committed (those that did not change
    /// meanwhile).
    fn install_stored(&self, ino: Ino, dirty: &Dirty, stored: Stored) -> FsResult<()> {
        let Stored { produced, mut placed, mut wrote } = stored;
        let snap = &dirty.snap;
        loop {
            // Other mounts must be able to read what the batch refers to:
            // chunks already in an object, or a small tail the batch stages
            // in its own transaction.
            let mut staged = None;
            if wrote && self.cluster.is_some() {
                staged = self.store.persist_chunks_deferred().map_err(|e| {
                    log::error!("storing chunks: {e}");
                    FsError::Io
                })?;
            }
            let (installed, committed) = self.mutate(|meta, b| {
                let r = install(meta, b, ino, snap, &produced, &placed, &mut |f| self.release_chunks(f));
                b.staged = staged.clone();
                // An empty batch is not committed (and stages nothing).
                Ok((r, !b.is_empty()))
            })?;
            if let (Some(s), true) = (&staged, committed) {
                self.store.chunks_staged(s);
            }
            match installed {
                Install::Done => break,
                Install::Missing(missing) => {
                    // Chunks thought present were freed meanwhile: store them again.
                    for (off, len, id) in missing {
                        let raw = self.read(ino, off, len as u64)?;
                        let (codec, bytes) = compress(dirty.codec, &raw);
                        placed.insert(id, self.place_chunk(&bytes, len, codec)?);
                    }
                    wrote = true;
                }
            }
        }
        let mut meta = self.meta.write();
        if let Some(f) = meta.nodes.get_mut(&ino).and_then(Node::file_mut) {
            for (idx, p) in &snap.pages {
                if f.pages.get(idx).is_some_and(|cur| Arc::ptr_eq(cur, p)) {
                    f.pages.remove(idx);
                    f.dirty_bytes = f.dirty_bytes.saturating_sub(p.data.len());
                }
            }
            f.settle();
        }
        Ok(())
    }

    /// Writes encoded chunk bytes to the chunk store; their index entry
    /// (not yet referenced).
    fn place_chunk(&self, bytes: &[u8], raw_len: u32, codec: Codec) -> FsResult<ChunkMeta> {
        let loc = self.store.put_chunk(bytes).map_err(|e| store_failed("storing a chunk", &e))?;
        Ok(ChunkMeta { pack: loc.pack, offset: loc.offset, stored_len: loc.len, raw_len, codec, refs: 0 })
    }

    /// Commits a file's data and makes the whole store durable.
    pub fn fsync(&self, ino: Ino) -> FsResult<()> {
        self.flush(ino)?;
        self.sync_store()
    }

    /// Cuts the file to `size` (pages and extents); the caller holds the
    /// file's commit lock and logs the attributes.
    pub(crate) fn truncate_locked(&self, meta: &mut Meta, b: &mut Batch, ino: Ino, size: u64) -> FsResult<()> {
        let n = meta.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
        let old = n.attr.size;
        let f = n.file_mut().ok_or(FsError::Invalid)?;
        f.content_gen += 1;
        if size < old {
            let keep = size.div_ceil(PAGE);
            let gone: Vec<u64> = f.pages.range(keep..).map(|(i, _)| *i).collect();
            for i in gone {
                if let Some(p) = f.pages.remove(&i) {
                    f.dirty_bytes = f.dirty_bytes.saturating_sub(p.data.len());
                }
            }
            if !size.is_multiple_of(PAGE) {
                if let Some(p) = f.pages.get_mut(&(size / PAGE)) {
                    let p = Arc::make_mut(p);
                    let l = (size % PAGE) as usize;
                    if p.data.len() > l {
                        f.dirty_bytes -= p.data.len() - l;
                        p.data.truncate(l);
                    }
                }
            }
            let freed = meta.cut_extents(b, ino, size);
            self.release_chunks(freed);
        }
        if let Some(n) = meta.nodes.get_mut(&ino) {
            n.attr.size = size;
            if let Some(f) = n.file_mut() {
                f.resize_committed(old, size);
            }
        }
        Ok(())
    }

    /// Preallocates (mode 0: extends the size) or, with `FALLOC_FL_KEEP_SIZE`,
    /// does nothing: space is allocated as data is written. Either way a
    /// range larger than the free space of the disk under the store is
    /// refused with `ENOSPC`, as a filesystem that reserves blocks would.
    /// `FALLOC_FL_PUNCH_HOLE` (with `KEEP_SIZE`) and `FALLOC_FL_ZERO_RANGE`
    /// make the range a hole: it reads as zeros and holds no data.
    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        use libc::{FALLOC_FL_KEEP_SIZE as KEEP_SIZE, FALLOC_FL_PUNCH_HOLE as PUNCH, FALLOC_FL_ZERO_RANGE as ZERO};
        if len == 0 {
            return Err(FsError::Invalid);
        }
        let hole = match mode & !KEEP_SIZE {
            0 => false,
            PUNCH if mode & KEEP_SIZE != 0 => true,
            ZERO => true,
            _ => return Err(FsError::NotSupported),
        };
        let end = offset.checked_add(len).filter(|e| *e <= MAX_FILE_SIZE).ok_or(FsError::FileTooBig)?;
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        if hole {
            return self.make_hole(ino, offset, end, mode & KEEP_SIZE == 0);
        }
        let free = self.store.free_space();
        self.mutate(|meta, b| {
            let n = meta.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
            if n.attr.kind != FileKind::File {
                return Err(FsError::NoSys);
            }
            if let (Some(free), Some(f)) = (free, n.file()) {
                let held: u64 = extents_in(f, offset, end)
                    .into_iter()
                    .map(|(o, e)| (o + e.len as u64).min(end) - o.max(offset))
                    .sum();
                if len - held.min(len) > free {
                    return Err(FsError::NoSpace);
                }
            }
            if mode & KEEP_SIZE == 0 && end > n.attr.size {
                let old = n.attr.size;
                if let Some(f) = n.file_mut() {
                    f.resize_committed(old, end);
                }
                n.attr.size = end;
                n.attr.ctime = Timespec::now();
                meta.log_node(b, ino);
            }
            Ok(())
        })
    }

    /// Turns `[start, end)` of a file into a hole: dirty pages inside it are
    /// dropped or zeroed, extents inside it removed or trimmed, their chunks
    /// released. With `grow`, the file is extended to `end`.
    fn make_hole(&self, ino: Ino, start: u64, end: u64, grow: bool) -> FsResult<()> {
        let lock = match self.meta.read().nodes.get(&ino) {
            Some(n) => n.file().map(|f| f.commit_lock.clone()).ok_or(FsError::NoSys)?,
            None => return Err(FsError::NotFound),
        };
        let _guard = lock.lock();
        let freed = self.mutate(|meta, b| {
            let n = meta.nodes.get_mut(&ino).ok_or(FsError::NotFound)?;
            let size = n.attr.size;
            let stop = end.min(size);
            let f = n.file_mut().ok_or(FsError::NoSys)?;
            f.content_gen += 1;
            if start < stop {
                let pages: Vec<u64> = f.pages.range(start / PAGE..stop.div_ceil(PAGE)).map(|(i, _)| *i).collect();
                for i in pages {
                    let (ps, pe) = (i * PAGE, (i + 1) * PAGE);
                    if start <= ps && pe <= stop {
                        // Wholly inside: the extents under it go too.
                        if let Some(p) = f.pages.remove(&i) {
                            f.dirty_bytes = f.dirty_bytes.saturating_sub(p.data.len());
                        }
                    } else if let Some(p) = f.pages.get_mut(&i) {
                        let p = Arc::make_mut(p);
                        let a = (start.max(ps) - ps) as usize;
                        let z = ((stop.min(pe) - ps) as usize).min(p.data.len());
                        if a < z {
                            p.data[a..z].fill(0);
                        }
                    }
                }
            }
            let freed = if start < stop { meta.punch_extents(b, ino, start, stop) } else { Vec::new() };
            if let Some(n) = meta.nodes.get_mut(&ino) {
                let now = Timespec::now();
                let old = n.attr.size;
                if grow && end > old {
                    n.attr.size = end;
                }
                n.attr.mtime = now;
                n.attr.ctime = now;
                let size = n.attr.size;
                if let Some(f) = n.file_mut() {
                    // Punching a hole is a committed change of the contents.
                    if let Some(c) = &mut f.committed {
                        c.mtime = now;
                    }
                    f.resize_committed(old, size);
                }
            }
            meta.log_node(b, ino);
            Ok(freed)
        })?;
        self.release_chunks(freed);
        Ok(())
    }

    /// `SEEK_DATA` / `SEEK_HOLE` over extents and dirty pages (`ENXIO` at or
    /// past the end).
    pub fn lseek(&self, ino: Ino, offset: u64, whence: i32) -> FsResult<u64> {
        let meta = self.meta.read();
        let (n, f) = file_of(&meta, ino)?;
        let size = n.attr.size;
        if offset >= size {
            return Err(FsError::NoData);
        }
        let mut spans: Vec<(u64, u64)> = f.extents.iter().map(|(o, e)| (*o, o + e.len as u64)).collect();
        spans.extend(f.pages.keys().map(|i| (i * PAGE, ((i + 1) * PAGE).min(size))));
        spans.sort_unstable();
        match whence {
            libc::SEEK_DATA => {
                spans.iter().find(|(_, e)| *e > offset).map(|(s, _)| (*s).max(offset)).ok_or(FsError::NoData)
            }
            libc::SEEK_HOLE => {
                let mut pos = offset;
                for (s, e) in spans {
                    if s > pos {
                        break;
                    }
                    pos = pos.max(e);
                }
                Ok(pos.min(size))
            }
            _ => Err(FsError::Invalid),
        }
    }
}
