//! Chunk byte storage. Chunks are appended to pack files (never rewritten in
//! place); the chunk index in the metadata says where each one lives. Pack
//! files avoid redb's power-of-two value rounding for large values.

use crate::disk::{Disk, DiskFile, OsDisk};
use crate::keys::Location;
use memmap2::Mmap;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Where chunk bytes are kept: one implementation per backend, each passing
/// the conformance suite (`crates/magicfs-objects/tests/chunk_store.rs`).
///
/// Chunks are appended to segments (pack files, objects) that are never
/// rewritten; a [`Location`] names a segment and a byte range in it.
pub trait ChunkStore: Send + Sync {
    /// Appends stored chunk bytes and returns where they went.
    fn put(&self, bytes: &[u8]) -> io::Result<Location>;
    /// Reads the stored bytes at `loc`.
    fn read(&self, loc: Location) -> io::Result<Vec<u8>> {
        self.share(loc).map(|b| b.to_vec())
    }
    /// The stored bytes at `loc`, shared instead of copied (an in-memory
    /// chunk, a window of a mapped pack file, or a cached object range).
    fn share(&self, loc: Location) -> io::Result<SharedBytes>;
    /// Makes everything put so far durable.
    fn sync(&self) -> io::Result<()>;
    /// Makes everything put so far readable by every process sharing the
    /// store (the other mounts of a cluster volume). Called before metadata
    /// that refers to new chunks commits. Stores only this process reads
    /// have nothing to do.
    fn persist(&self) -> io::Result<()> {
        Ok(())
    }
    /// [`ChunkStore::persist`], except that a store opened to defer its
    /// staging returns the small tail it would stage, for the metadata
    /// engine to write in the transaction of the batch that names it.
    fn persist_deferred(&self) -> io::Result<Option<crate::Staged>> {
        self.persist().map(|()| None)
    }
    /// The batch carrying `staged` (from [`ChunkStore::persist_deferred`])
    /// committed: those bytes are staged.
    fn staged_committed(&self, _staged: &crate::Staged) {}
    /// Whether reading `loc` is answered from this machine (memory or local
    /// disk) without waiting on a network service. A latency-critical
    /// thread hands reads that are not local to a worker.
    fn is_local(&self, _loc: Location) -> bool {
        true
    }
    /// True when every read is local (the backend has no network side), so
    /// callers can skip asking [`ChunkStore::is_local`] per chunk.
    fn always_local(&self) -> bool {
        true
    }
    /// Bytes held, including space of chunks no longer referenced.
    fn bytes(&self) -> u64;
    /// Tells the backend a chunk is no longer referenced; backends that can
    /// release its space at once do (memory), the others leave it to
    /// compaction.
    fn free(&self, _loc: Location) {}
    /// Every segment with its size in bytes, oldest first, for compaction.
    /// The segment being appended to may be among them.
    fn segments(&self) -> io::Result<Vec<(u32, u64)>>;
    /// Closes the segment being appended to: later puts start a new one.
    fn roll(&self) -> io::Result<()>;
    /// Deletes a segment no chunk refers to any more: at once where only
    /// this process reads the store, after a grace period where other
    /// mounts may still be reading it with locations they looked up before.
    fn retire(&self, id: u32) -> io::Result<()>;
    /// Deletes retired segments whose grace period has passed; returns how
    /// many went.
    fn reap(&self) -> io::Result<usize> {
        Ok(0)
    }
    /// Space the segments take on their medium; less than the sum of
    /// [`ChunkStore::segments`] where holes were punched.
    fn allocated(&self) -> io::Result<u64> {
        Ok(self.segments()?.iter().map(|(_, s)| s).sum())
    }
    /// Frees the space of `len` bytes at `offset` of segment `id`, which no
    /// chunk may use. `EOPNOTSUPP` where the medium cannot (objects are
    /// whole; compaction frees them).
    fn punch(&self, _id: u32, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }
    /// True while the medium under the store has no room for more chunk
    /// bytes (a put was refused with `ENOSPC`, until space is free again).
    fn out_of_space(&self) -> bool {
        false
    }
}

/// Largest pack file before a new one is started.
const PACK_LIMIT: u64 = 1 << 30;

/// Space kept free under a data directory for the log and the redb image:
/// chunk bytes are refused (`ENOSPC`) before the disk is this close to full,
/// so that deleting files, checkpoints and `magicfs gc` still work on a full
/// disk. 1/32 of the filesystem, at least 4 MiB and at most 256 MiB.
pub fn space_reserve(total: u64) -> u64 {
    (total / 32).clamp(4 << 20, 256 << 20)
}

/// Stored chunk bytes held without copying them: the bytes stay valid while
/// this value lives, even if the chunk is freed or its pack removed meanwhile.
#[derive(Clone)]
pub enum SharedBytes {
    /// A chunk of the memory backend.
    Mem(Arc<[u8]>),
    /// A range of a fetched or cached object (reference counted, no copy).
    Bytes(bytes::Bytes),
    /// `len` bytes at `start` of a mapped pack file.
    Mapped {
        /// The mapping of the whole pack.
        map: Arc<Mmap>,
        /// Where the chunk starts in the pack.
        start: usize,
        /// The chunk's stored length.
        len: usize,
    },
}

impl std::ops::Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SharedBytes::Mem(b) => b,
            SharedBytes::Bytes(b) => b,
            SharedBytes::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }
}

struct Current {
    id: u32,
    file: Arc<dyn DiskFile>,
    size: u64,
    dirty: bool,
}

/// Pack files in a directory: `000001.pack`, `000002.pack`, …
pub struct FilePacks {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    current: Mutex<Current>,
    readers: RwLock<HashMap<u32, Arc<dyn DiskFile>>>,
    /// Read-only mappings of the packs, made on first shared read. Packs
    /// only grow (appends) and are removed whole, never truncated, so a
    /// mapping stays valid for every location handed out.
    maps: RwLock<HashMap<u32, Arc<Mmap>>>,
    unsynced: Mutex<Vec<Arc<dyn DiskFile>>>,
    /// Set when chunk bytes were refused for lack of space.
    full: AtomicBool,
}

fn pack_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:06}.pack"))
}

impl FilePacks {
    /// Opens (creating if needed) the packs in `dir`; appends go to the newest.
    pub fn open(dir: &Path) -> io::Result<FilePacks> {
        Self::open_on(OsDisk::shared(), dir)
    }

    /// [`FilePacks::open`] on `disk`.
    pub fn open_on(disk: Arc<dyn Disk>, dir: &Path) -> io::Result<FilePacks> {
        disk.create_dir_all(dir)?;
        let newest = pack_ids(&*disk, dir)?.into_iter().max().unwrap_or(0);
        let id = newest.max(1);
        let file = disk.open(&pack_path(dir, id), true)?;
        if newest == 0 {
            disk.sync_dir(dir)?;
        }
        let size = file.len()?;
        let mut readers = HashMap::new();
        readers.insert(id, file.clone());
        Ok(FilePacks {
            disk,
            dir: dir.to_path_buf(),
            current: Mutex::new(Current { id, file, size, dirty: false }),
            readers: RwLock::new(readers),
            maps: RwLock::new(HashMap::new()),
            unsynced: Mutex::new(Vec::new()),
            full: AtomicBool::new(false),
        })
    }

    /// Every pack file with its size, oldest first.
    pub fn sizes(&self) -> io::Result<Vec<(u32, u64)>> {
        let mut v = Vec::new();
        for id in pack_ids(&*self.disk, &self.dir)? {
            v.push((id, self.reader(id)?.len()?));
        }
        v.sort_unstable();
        Ok(v)
    }

    /// Disk space all pack files take (holes punched by [`FilePacks::punch`]
    /// excluded).
    pub fn allocated(&self) -> io::Result<u64> {
        let mut n = 0;
        for id in pack_ids(&*self.disk, &self.dir)? {
            n += self.reader(id)?.allocated()?;
        }
        Ok(n)
    }

    /// Frees the disk space of `len` bytes at `offset` of pack `id`, which no
    /// chunk may use (they read as zeros after). Needs no free space, so it
    /// works on a full disk. Only while no reader maps the range: offline.
    pub fn punch(&self, id: u32, offset: u64, len: u64) -> io::Result<()> {
        self.reader(id)?.punch_hole(offset, len)
    }

    fn roll_locked(&self, cur: &mut Current) -> io::Result<u32> {
        let id = cur.id + 1;
        let file = self.disk.open(&pack_path(&self.dir, id), true)?;
        self.disk.sync_dir(&self.dir)?;
        if cur.dirty {
            self.unsynced.lock().push(cur.file.clone());
        }
        self.readers.write().insert(id, file.clone());
        *cur = Current { id, file, size: 0, dirty: false };
        Ok(id)
    }

    /// Deletes a pack that no chunk refers to any more.
    fn remove(&self, id: u32) -> io::Result<()> {
        if self.current.lock().id == id {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot remove the pack being appended to"));
        }
        self.readers.write().remove(&id);
        self.maps.write().remove(&id);
        self.disk.remove_file(&pack_path(&self.dir, id))?;
        self.disk.sync_dir(&self.dir)
    }

    fn reader(&self, id: u32) -> io::Result<Arc<dyn DiskFile>> {
        if let Some(f) = self.readers.read().get(&id) {
            return Ok(f.clone());
        }
        let f = self.disk.open(&pack_path(&self.dir, id), false)?;
        self.readers.write().insert(id, f.clone());
        Ok(f)
    }

    /// A mapping of pack `id` that covers `end` bytes. The mapping reserves
    /// the pack's full size limit up front, so appends rarely need a new one.
    /// `None` where the disk has no mappings.
    fn mapping(&self, id: u32, end: u64) -> io::Result<Option<Arc<Mmap>>> {
        if let Some(m) = self.maps.read().get(&id) {
            if m.len() as u64 >= end {
                return Ok(Some(m.clone()));
            }
        }
        let file = self.reader(id)?;
        let len = PACK_LIMIT.max(end).max(file.len()?);
        let len = usize::try_from(len).map_err(|_| io::Error::other("pack too large to map"))?;
        // Pack files are append-only while the store is open (it is locked
        // against other processes) and are deleted whole, never truncated,
        // so every byte below a handed-out location stays mapped.
        let Some(map) = file.map(len)? else { return Ok(None) };
        let map = Arc::new(map);
        self.maps.write().insert(id, map.clone());
        Ok(Some(map))
    }

    /// Refuses `len` more bytes when they would eat into the space kept for
    /// the log and the image.
    fn check_space(&self, len: u64) -> io::Result<()> {
        let Ok(space) = self.disk.space(&self.dir) else { return Ok(()) };
        let full = space.avail < len.saturating_add(space_reserve(space.total));
        self.full.store(full, Ordering::Relaxed);
        if full {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    /// True while the disk is too full for more chunk bytes: once a chunk was
    /// refused, until space is free again (checked on each call meanwhile;
    /// one atomic load otherwise).
    pub fn out_of_space(&self) -> bool {
        // Room for a few more chunks counts as space again.
        self.full.load(Ordering::Relaxed) && self.check_space(4 * crate::chunker::MAX_CHUNK as u64).is_err()
    }
}

/// The numbers of the pack files in `dir`.
fn pack_ids(disk: &dyn Disk, dir: &Path) -> io::Result<Vec<u32>> {
    let mut v = Vec::new();
    for name in disk.list(dir)? {
        let p = Path::new(&name);
        if p.extension().and_then(|s| s.to_str()) == Some("pack") {
            if let Some(id) = p.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u32>().ok()) {
                v.push(id);
            }
        }
    }
    Ok(v)
}

impl ChunkStore for FilePacks {
    fn put(&self, bytes: &[u8]) -> io::Result<Location> {
        let mut cur = self.current.lock();
        if cur.size + bytes.len() as u64 > PACK_LIMIT && cur.size > 0 {
            self.roll_locked(&mut cur)?;
        }
        self.check_space(bytes.len() as u64)?;
        let at = cur.size;
        cur.file.write_all_at(bytes, at)?;
        cur.size += bytes.len() as u64;
        cur.dirty = true;
        Ok(Location { pack: cur.id, offset: at, len: bytes.len() as u32 })
    }

    fn read(&self, loc: Location) -> io::Result<Vec<u8>> {
        let f = self.reader(loc.pack)?;
        let mut buf = vec![0u8; loc.len as usize];
        f.read_exact_at(&mut buf, loc.offset)?;
        Ok(buf)
    }

    fn share(&self, loc: Location) -> io::Result<SharedBytes> {
        let end = loc.offset + loc.len as u64;
        match self.mapping(loc.pack, end)? {
            Some(map) => Ok(SharedBytes::Mapped { map, start: loc.offset as usize, len: loc.len as usize }),
            None => Ok(SharedBytes::Mem(self.read(loc)?.into())),
        }
    }

    fn sync(&self) -> io::Result<()> {
        let (id, file) = {
            let mut cur = self.current.lock();
            (cur.id, std::mem::replace(&mut cur.dirty, false).then(|| cur.file.clone()))
        };
        let older = std::mem::take(&mut *self.unsynced.lock());
        for (i, f) in older.iter().enumerate() {
            if let Err(e) = f.sync_data() {
                // Not durable: the next sync tries again.
                self.unsynced.lock().extend(older[i..].iter().cloned());
                if file.is_some() {
                    self.current.lock().dirty = true;
                }
                return Err(e);
            }
        }
        if let Some(f) = file {
            if let Err(e) = f.sync_data() {
                let mut cur = self.current.lock();
                if cur.id == id {
                    cur.dirty = true;
                } else {
                    self.unsynced.lock().push(f);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn bytes(&self) -> u64 {
        self.sizes().map(|v| v.iter().map(|(_, size)| size).sum()).unwrap_or(0)
    }

    fn segments(&self) -> io::Result<Vec<(u32, u64)>> {
        self.sizes()
    }

    fn roll(&self) -> io::Result<()> {
        self.roll_locked(&mut self.current.lock()).map(|_| ())
    }

    /// Only this process reads a pack directory (it is locked), so a pack
    /// nothing refers to goes at once.
    fn retire(&self, id: u32) -> io::Result<()> {
        self.remove(id)
    }

    fn allocated(&self) -> io::Result<u64> {
        FilePacks::allocated(self)
    }

    fn punch(&self, id: u32, offset: u64, len: u64) -> io::Result<()> {
        FilePacks::punch(self, id, offset, len)
    }

    fn out_of_space(&self) -> bool {
        FilePacks::out_of_space(self)
    }
}

/// Chunk bytes kept in memory (the `--memory` backend).
#[derive(Default)]
pub struct MemPacks {
    chunks: RwLock<Vec<Arc<[u8]>>>,
    total: std::sync::atomic::AtomicU64,
}

impl ChunkStore for MemPacks {
    fn put(&self, bytes: &[u8]) -> io::Result<Location> {
        let mut v = self.chunks.write();
        v.push(Arc::from(bytes));
        self.total.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(Location { pack: 0, offset: (v.len() - 1) as u64, len: bytes.len() as u32 })
    }

    fn read(&self, loc: Location) -> io::Result<Vec<u8>> {
        self.chunks
            .read()
            .get(loc.offset as usize)
            .map(|c| c.to_vec())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such chunk in memory"))
    }

    fn share(&self, loc: Location) -> io::Result<SharedBytes> {
        self.chunks
            .read()
            .get(loc.offset as usize)
            .map(|c| SharedBytes::Mem(c.clone()))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such chunk in memory"))
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn bytes(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Releases the memory of a chunk no longer referenced.
    fn free(&self, loc: Location) {
        if let Some(c) = self.chunks.write().get_mut(loc.offset as usize) {
            self.total.fetch_sub(c.len() as u64, std::sync::atomic::Ordering::Relaxed);
            *c = Arc::from(&[][..]);
        }
    }

    /// One segment holds every chunk; freed chunks release their memory at
    /// once, so there is nothing to compact.
    fn segments(&self) -> io::Result<Vec<(u32, u64)>> {
        Ok(Vec::new())
    }

    fn roll(&self) -> io::Result<()> {
        Ok(())
    }

    fn retire(&self, _id: u32) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_packs_put_read_reopen() {
        let d = tempfile::tempdir().unwrap();
        let p = FilePacks::open(d.path()).unwrap();
        let a = p.put(b"hello").unwrap();
        let b = p.put(b"world!").unwrap();
        p.sync().unwrap();
        assert_eq!(p.read(b).unwrap(), b"world!");
        drop(p);
        let p = FilePacks::open(d.path()).unwrap();
        assert_eq!(p.read(a).unwrap(), b"hello");
        let c = p.put(b"more").unwrap();
        assert_eq!(c.offset, 11);
        assert_eq!(p.bytes(), 15);
    }

    #[test]
    fn shared_bytes_outlive_appends_rolls_and_removal() {
        let d = tempfile::tempdir().unwrap();
        let p = FilePacks::open(d.path()).unwrap();
        let a = p.put(b"hello").unwrap();
        let first = p.share(a).unwrap();
        let b = p.put(b"world!").unwrap();
        assert_eq!(&*p.share(b).unwrap(), b"world!");
        let old = a.pack;
        p.roll().unwrap();
        let c = p.put(b"next pack").unwrap();
        assert_eq!(&*p.share(c).unwrap(), b"next pack");
        p.remove(old).unwrap();
        assert_eq!(&*first, b"hello");
        assert!(p.share(a).is_err());
        let m = MemPacks::default();
        let x = m.put(b"in memory").unwrap();
        let shared = m.share(x).unwrap();
        m.free(x);
        assert_eq!(&*shared, b"in memory");
        assert!(m.share(x).unwrap().is_empty());
    }

    #[test]
    fn mem_packs_free() {
        let p = MemPacks::default();
        let a = p.put(&[1; 100]).unwrap();
        assert_eq!(p.bytes(), 100);
        p.free(a);
        assert_eq!(p.bytes(), 0);
    }
}
