//! `magicfs fsck`: checks every invariant of a store's image, independently
//! of the in-memory table: decodability, reachability, link counts, extents,
//! chunk reference counts and chunk hashes.

use crate::node::NEXT_INO_KEY;
use magicfs_store::chunker::chunk_id;
use magicfs_store::codec::decompress;
use magicfs_store::keys::{be_u64, split_key};
use magicfs_store::{ChunkMeta, Extent, Store, Table};
use magicfs_types::{Attr, ChunkId, FileKind, Ino, ROOT_INO};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// What fsck found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Inodes checked.
    pub inodes: u64,
    /// Directory entries checked.
    pub dirents: u64,
    /// Extents checked.
    pub extents: u64,
    /// Chunks checked (and hashed).
    pub chunks: u64,
    /// Broken invariants.
    pub errors: Vec<String>,
    /// Noteworthy but harmless findings.
    pub notes: Vec<String>,
}

impl Report {
    /// True when no invariant is broken.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    fn err(&mut self, m: String) {
        if self.errors.len() < 1000 {
            self.errors.push(m);
        }
    }
}

/// Checks the store; `verify_data` also reads and hashes every chunk.
pub fn check(store: &Store, verify_data: bool) -> Result<Report, magicfs_store::StoreError> {
    check_with_progress(store, verify_data, &|_, _| {})
}

/// [`check`], calling `progress(done, total)` as chunks are checked (the
/// long part when `verify_data` hashes them).
pub fn check_with_progress(
    store: &Store,
    verify_data: bool,
    progress: &dyn Fn(u64, u64),
) -> Result<Report, magicfs_store::StoreError> {
    let mut r = Report::default();
    let mut inodes: BTreeMap<Ino, Attr> = BTreeMap::new();
    let mut bad = Vec::new();
    store.scan(Table::Inodes, |k, v| match (be_u64(k), Attr::decode(v)) {
        (Some(i), Some(a)) if a.ino == i => {
            inodes.insert(i, a);
        }
        _ => bad.push(format!("inode entry {k:02x?} does not decode")),
    })?;
    let mut dirents: Vec<(Ino, Vec<u8>, Ino)> = Vec::new();
    store.scan(Table::Dirents, |k, v| match (split_key(k), be_u64(v)) {
        (Some((p, n)), Some(c)) => dirents.push((p, n.to_vec(), c)),
        _ => bad.push(format!("dirent {k:02x?} does not decode")),
    })?;
    let mut extents: Vec<(Ino, u64, Extent)> = Vec::new();
    store.scan(Table::Extents, |k, v| {
        match (split_key(k).and_then(|(i, o)| Some((i, be_u64(o)?))), Extent::decode(v)) {
            (Some((i, o)), Some(e)) => extents.push((i, o, e)),
            _ => bad.push(format!("extent {k:02x?} does not decode")),
        }
    })?;
    let mut chunks: HashMap<ChunkId, ChunkMeta> = HashMap::new();
    store.scan(Table::Chunks, |k, v| match (<[u8; 32]>::try_from(k), ChunkMeta::decode(v)) {
        (Ok(id), Some(m)) => {
            chunks.insert(ChunkId(id), m);
        }
        _ => bad.push(format!("chunk entry {k:02x?} does not decode")),
    })?;
    let mut xattr_owners = Vec::new();
    store.scan(Table::Xattrs, |k, _| match split_key(k) {
        Some((i, _)) => xattr_owners.push(i),
        None => bad.push(format!("xattr {k:02x?} does not decode")),
    })?;
    let mut orphans = HashSet::new();
    store.scan(Table::Orphans, |k, _| orphans.extend(be_u64(k)))?;
    let mut next_ino = 0;
    store.scan(Table::Meta, |k, v| {
        if k == NEXT_INO_KEY {
            next_ino = <[u8; 8]>::try_from(v).map(u64::from_le_bytes).unwrap_or(0);
        }
    })?;
    for m in bad {
        r.err(m);
    }
    r.inodes = inodes.len() as u64;
    r.dirents = dirents.len() as u64;
    r.extents = extents.len() as u64;
    r.chunks = chunks.len() as u64;

    match inodes.get(&ROOT_INO) {
        Some(a) if a.kind == FileKind::Dir => {}
        Some(_) => r.err("the root inode is not a directory".into()),
        None if inodes.is_empty() => return Ok(r),
        None => r.err("the root inode is missing".into()),
    }
    if let Some(max) = inodes.keys().next_back() {
        if next_ino <= *max {
            r.err(format!("next inode number {next_ino} is not above the highest inode {max}"));
        }
    }

    // Directory structure and link counts.
    let mut children: HashMap<Ino, Vec<Ino>> = HashMap::new();
    let mut links: HashMap<Ino, u32> = HashMap::new();
    let mut subdirs: HashMap<Ino, u32> = HashMap::new();
    for (p, name, c) in &dirents {
        let shown = String::from_utf8_lossy(name);
        match inodes.get(p) {
            Some(a) if a.kind == FileKind::Dir => {}
            Some(_) => r.err(format!("entry '{shown}' lives in inode {p}, which is not a directory")),
            None => r.err(format!("entry '{shown}' lives in missing directory {p}")),
        }
        match inodes.get(c) {
            None => r.err(format!("entry '{shown}' in directory {p} points to missing inode {c}")),
            Some(a) => {
                *links.entry(*c).or_default() += 1;
                if a.kind == FileKind::Dir {
                    *subdirs.entry(*p).or_default() += 1;
                }
            }
        }
        children.entry(*p).or_default().push(*c);
    }
    let mut seen = HashSet::from([ROOT_INO]);
    let mut queue = VecDeque::from([ROOT_INO]);
    while let Some(d) = queue.pop_front() {
        for c in children.get(&d).into_iter().flatten() {
            if seen.insert(*c) && inodes.get(c).is_some_and(|a| a.kind == FileKind::Dir) {
                queue.push_back(*c);
            }
        }
    }
    for (ino, a) in &inodes {
        let expected = if a.kind == FileKind::Dir {
            if *ino != ROOT_INO && links.get(ino).copied().unwrap_or(0) > 1 {
                r.err(format!("directory {ino} has more than one name"));
            }
            2 + subdirs.get(ino).copied().unwrap_or(0)
        } else {
            links.get(ino).copied().unwrap_or(0)
        };
        if orphans.contains(ino) {
            // Unlinked while open (a directory too): no entry may name it.
            let names = links.get(ino).copied().unwrap_or(0);
            if names != 0 {
                r.err(format!("inode {ino} is listed as unlinked but has {names} names"));
            }
            continue;
        }
        if !seen.contains(ino) {
            r.err(format!("inode {ino} ({:?}) is not reachable from the root", a.kind));
        }
        if a.nlink != expected {
            r.err(format!("inode {ino} has link count {} but {expected} links", a.nlink));
        }
    }
    if !orphans.is_empty() {
        r.notes.push(format!(
            "{} unlinked inodes were open at the last stop; they are freed at the next mount",
            orphans.len()
        ));
    }
    for i in xattr_owners {
        if !inodes.contains_key(&i) {
            r.err(format!("an extended attribute belongs to missing inode {i}"));
        }
    }

    // Extents and reference counts.
    let mut refs: HashMap<ChunkId, u64> = HashMap::new();
    let mut last: Option<(Ino, u64)> = None;
    for (ino, off, e) in &extents {
        *refs.entry(e.chunk).or_default() += 1;
        let end = off + e.len as u64;
        match inodes.get(ino) {
            Some(a) if a.kind == FileKind::File => {
                if end > a.size {
                    r.err(format!("inode {ino}: extent at {off} ends at {end}, past the file size {}", a.size));
                }
            }
            _ => r.err(format!("extent at {off} belongs to inode {ino}, which is not a regular file")),
        }
        if let Some((li, le)) = last {
            if li == *ino && le > *off {
                r.err(format!("inode {ino}: extents overlap at offset {off}"));
            }
        }
        last = Some((*ino, end));
        match chunks.get(&e.chunk) {
            None => r.err(format!("inode {ino}: extent at {off} uses missing chunk {}", e.chunk.to_hex())),
            Some(m) if e.skip as u64 + e.len as u64 > m.raw_len as u64 => {
                r.err(format!("inode {ino}: extent at {off} reaches past the end of its chunk"))
            }
            _ => {}
        }
    }
    let total = chunks.len() as u64;
    for (done, (id, m)) in chunks.iter().enumerate() {
        progress(done as u64, total);
        let n = refs.get(id).copied().unwrap_or(0);
        if n != m.refs {
            r.err(format!("chunk {} has reference count {} but {n} references", id.to_hex(), m.refs));
        }
        if verify_data {
            match store
                .read_chunk(m.location())
                .map_err(|e| e.to_string())
                .and_then(|s| decompress(m.codec, s, m.raw_len as usize).map_err(|e| e.to_string()))
            {
                Ok(raw) if chunk_id(&raw) == *id => {}
                Ok(_) => r.err(format!("chunk {} does not match its hash", id.to_hex())),
                Err(e) => r.err(format!("chunk {} cannot be read: {e}", id.to_hex())),
            }
        }
    }
    progress(total, total);
    Ok(r)
}
