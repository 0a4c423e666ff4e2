//! The chunk index a transfer peer answers "which chunks do you have" from.
//!
//! It is computed on demand and kept in memory: each offer walks the roots
//! (metadata only) and re-chunks just the files whose size or modification
//! time changed since they were last indexed; files written by a transfer
//! are entered from their recipe without being read again. A chunk is used
//! only after its bytes are read back and their BLAKE3 checked, so a file
//! changed behind the index's back costs a resend, never a wrong file.

use crate::error::{RemoteError, RemoteResult};
use crate::recipe::Recipe;
use magicfs_store::chunker::chunk_id;
use magicfs_types::ChunkId;
use memmap2::Mmap;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Part of the names of files being received; such files are not indexed.
pub const INCOMING_MARK: &str = ".magicfs-incoming-";

/// Deepest directory level walked.
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug)]
struct Indexed {
    size: u64,
    mtime: u128,
    recipe: Recipe,
}

/// Where a chunk can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// Where the chunk starts in it.
    pub offset: u64,
    /// Its length.
    pub len: u32,
}

/// Chunk id → a file and offset holding those bytes.
#[derive(Debug, Default)]
pub struct ChunkIndex {
    files: HashMap<PathBuf, Indexed>,
    by_id: HashMap<ChunkId, Location>,
}

/// Size and modification time (ns) of a regular file, not following links.
fn stamp(path: &Path) -> Option<(u64, u128)> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.file_type().is_file() {
        return None;
    }
    let mtime = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    Some((m.len(), mtime))
}

/// Opens a regular file for reading without blocking: a FIFO, device or
/// socket (one swapped in after a check, say) is refused, never waited on.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(f)
}

/// The recipe of the file at `path` (memory-mapped, read-only).
pub fn file_recipe(path: &Path) -> RemoteResult<Recipe> {
    let io = |e: std::io::Error| RemoteError::Io(format!("{}: {e}", path.display()));
    let f = open_regular(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(Recipe::of(&[]));
    }
    // SAFETY: read-only map dropped before returning; a file truncated by
    // another process meanwhile raises SIGBUS on the lost pages, as for any
    // reader of a mapped file.
    let map = unsafe { Mmap::map(&f) }.map_err(io)?;
    Ok(Recipe::of(&map))
}

impl ChunkIndex {
    /// An empty index.
    pub fn new() -> ChunkIndex {
        ChunkIndex::default()
    }

    /// Brings the index up to date with the regular files under `roots`.
    pub fn refresh(&mut self, roots: &[PathBuf]) {
        let mut seen = Vec::new();
        for root in roots {
            walk(root, 0, &mut seen);
        }
        let mut changed = false;
        let live: std::collections::HashSet<&PathBuf> = seen.iter().map(|(p, _)| p).collect();
        let before = self.files.len();
        self.files.retain(|p, _| live.contains(p));
        changed |= before != self.files.len();
        for (path, (size, mtime)) in &seen {
            if self.files.get(path).is_some_and(|e| e.size == *size && e.mtime == *mtime) {
                continue;
            }
            if let Ok(recipe) = file_recipe(path) {
                self.files.insert(path.clone(), Indexed { size: *size, mtime: *mtime, recipe });
                changed = true;
            }
        }
        if changed {
            self.rebuild();
        }
    }

    /// Enters `path` with its known `recipe` (just written by a transfer).
    pub fn insert(&mut self, path: &Path, recipe: Recipe) {
        if let Some((size, mtime)) = stamp(path) {
            self.files.insert(path.to_path_buf(), Indexed { size, mtime, recipe });
            self.rebuild();
        }
    }

    /// The recipe of `path`, from the index when the file is unchanged.
    pub fn recipe_for(&mut self, path: &Path) -> RemoteResult<Recipe> {
        let (size, mtime) =
            stamp(path).ok_or_else(|| RemoteError::Io(format!("{}: not a regular file", path.display())))?;
        if let Some(e) = self.files.get(path).filter(|e| e.size == size && e.mtime == mtime) {
            return Ok(e.recipe.clone());
        }
        let recipe = file_recipe(path)?;
        self.files.insert(path.to_path_buf(), Indexed { size, mtime, recipe: recipe.clone() });
        self.rebuild();
        Ok(recipe)
    }

    /// Where chunk `id` may be read, if any indexed file holds it.
    pub fn locate(&self, id: &ChunkId) -> Option<&Location> {
        self.by_id.get(id)
    }

    /// Number of distinct chunks known.
    pub fn chunks(&self) -> usize {
        self.by_id.len()
    }

    fn rebuild(&mut self) {
        self.by_id.clear();
        for (path, e) in &self.files {
            for c in &e.recipe.chunks {
                self.by_id.entry(c.id).or_insert_with(|| Location { path: path.clone(), offset: c.offset, len: c.len });
            }
        }
    }
}

/// Reads the chunk at `loc` and returns it only if its BLAKE3 is `id`.
pub fn read_verified(loc: &Location, id: &ChunkId) -> Option<Vec<u8>> {
    let f = open_regular(&loc.path).ok()?;
    let mut buf = vec![0u8; loc.len as usize];
    f.read_exact_at(&mut buf, loc.offset).ok()?;
    (chunk_id(&buf) == *id).then_some(buf)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, (u64, u128))>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else {
            continue;
        };
        if ft.is_dir() {
            walk(&path, depth + 1, out);
        } else if ft.is_file() && !entry.file_name().to_string_lossy().contains(INCOMING_MARK) {
            if let Some(s) = stamp(&path) {
                out.push((path, s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magicfs_types::noise::noise;

    #[test]
    fn finds_chunks_of_files_under_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir(root.join("d")).unwrap();
        let data = noise(1 << 20, 4);
        std::fs::write(root.join("d/a.bin"), &data).unwrap();
        std::fs::write(root.join(format!("x{INCOMING_MARK}1")), noise(1 << 20, 5)).unwrap();
        let mut idx = ChunkIndex::new();
        idx.refresh(std::slice::from_ref(&root));
        let r = Recipe::of(&data);
        for c in &r.chunks {
            let loc = idx.locate(&c.id).unwrap();
            assert_eq!(
                read_verified(loc, &c.id).unwrap(),
                &data[c.offset as usize..(c.offset + u64::from(c.len)) as usize]
            );
        }
        assert_eq!(idx.chunks(), r.chunks.len());
        assert_eq!(idx.recipe_for(&root.join("d/a.bin")).unwrap(), r);
        // A file rewritten behind the index: its chunks no longer verify.
        let loc = idx.locate(&r.chunks[0].id).unwrap().clone();
        std::fs::write(root.join("d/a.bin"), noise(1 << 20, 6)).unwrap();
        assert_eq!(read_verified(&loc, &r.chunks[0].id), None);
        std::fs::remove_file(root.join("d/a.bin")).unwrap();
        idx.refresh(&[root]);
        assert_eq!(idx.chunks(), 0);
    }
}
