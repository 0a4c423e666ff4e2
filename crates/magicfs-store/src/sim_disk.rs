//! A disk in memory that loses power, for crash tests.
//!
//! [`SimDisk`] keeps, for every file, the bytes that are durable and the
//! writes and length changes made since its last `sync_data`, and for the
//! namespace (creations and removals of files and directories) a journal of
//! changes, each durable once its directory was synced. [`SimDisk::cut_after`]
//! makes the disk lose power once that many more changing operations were
//! attempted: the operation at the cut and every one after it fail with
//! `EIO` and change nothing. [`SimDisk::after_power_loss`] then gives the
//! disk as it would come back: everything synced, plus a random part of
//! what was not — each unsynced write kept whole, dropped, or torn (every
//! 512-byte sector kept or not, the length extended or not), each length
//! change kept or not, and a random prefix of the unsynced namespace
//! changes (a journal commits in order).
//!
//! The rules are strict POSIX: `sync_data` of a file does not make its
//! directory entry durable; only syncing the directory does.

use crate::disk::{Disk, DiskFile, DiskLock, Space};
use magicfs_types::noise::XorShift64;
use memmap2::Mmap;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Sector size of torn writes.
const SECTOR: u64 = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir,
}

#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
struct FileState {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

/// One change of the namespace: `path` gets `node` (or is removed), and
/// `moved_from` (a rename's source) goes, in one step.
#[derive(Clone, Debug)]
struct NameChange {
    path: PathBuf,
    node: Option<Node>,
    moved_from: Option<PathBuf>,
    durable: bool,
}

impl NameChange {
    fn apply(&self, names: &mut BTreeMap<PathBuf, Node>) {
        if let Some(f) = &self.moved_from {
            names.remove(f);
        }
        match self.node {
            Some(n) => names.insert(self.path.clone(), n),
            None => names.remove(&self.path),
        };
    }

    fn in_dir(&self, dir: &Path) -> bool {
        self.path.parent() == Some(dir) || self.moved_from.as_deref().and_then(Path::parent) == Some(dir)
    }
}

#[derive(Default)]
struct State {
    files: HashMap<u64, FileState>,
    next_id: u64,
    names: BTreeMap<PathBuf, Node>,
    /// The namespace when the disk came up; `journal` holds every change since.
    base_names: BTreeMap<PathBuf, Node>,
    journal: Vec<NameChange>,
    locks: HashSet<PathBuf>,
    /// Changing operations attempted so far.
    ops: u64,
    /// Power is lost when `ops` reaches this.
    cut: Option<u64>,
    dead: bool,
}

fn dead() -> io::Error {
    io::Error::other("the simulated disk lost power")
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", p.display()))
}

impl State {
    /// Counts a changing operation; an error once power is lost.
    fn change(&mut self) -> io::Result<()> {
        if self.dead {
            return Err(dead());
        }
        self.ops += 1;
        if self.cut.is_some_and(|c| self.ops >= c) {
            self.dead = true;
            return Err(dead());
        }
        Ok(())
    }

    fn alive(&self) -> io::Result<()> {
        if self.dead {
            Err(dead())
        } else {
            Ok(())
        }
    }

    fn rename_node(&mut self, path: &Path, node: Option<Node>, moved_from: Option<&Path>) {
        let c = NameChange {
            path: path.to_path_buf(),
            node,
            moved_from: moved_from.map(Path::to_path_buf),
            durable: false,
        };
        c.apply(&mut self.names);
        self.journal.push(c);
    }

    fn parent_is_dir(&self, path: &Path) -> bool {
        match path.parent() {
            None => true,
            Some(p) if p.as_os_str().is_empty() => true,
            Some(p) => self.names.get(p) == Some(&Node::Dir),
        }
    }
}

/// A disk in memory that can lose power (see the module documentation).
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk::new()
    }
}

impl SimDisk {
    /// An empty disk; the root directory `/` exists.
    pub fn new() -> SimDisk {
        let mut s = State::default();
        s.names.insert(PathBuf::from("/"), Node::Dir);
        s.base_names.insert(PathBuf::from("/"), Node::Dir);
        SimDisk { state: Arc::new(Mutex::new(s)) }
    }

    /// Loses power when `n` more changing operations have been attempted
    /// (the `n`-th fails). `cut_after(1)` fails the next one.
    pub fn cut_after(&self, n: u64) {
        let mut s = self.state.lock();
        s.cut = Some(s.ops + n.max(1));
    }

    /// Changing operations attempted so far (writes, length changes, syncs,
    /// creations, removals).
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// True once power was lost.
    pub fn is_dead(&self) -> bool {
        self.state.lock().dead
    }

    /// Loses power now.
    pub fn cut_now(&self) {
        self.state.lock().dead = true;
    }

    /// A disk holding what this one holds now, all of it durable (as after
    /// a clean shutdown), alive whatever this one is.
    pub fn copy(&self) -> SimDisk {
        let s = self.state.lock();
        let files = s
            .files
            .iter()
            .map(|(id, f)| (*id, FileState { durable: f.data.clone(), data: f.data.clone(), pending: Vec::new() }))
            .collect();
        let state = State {
            files,
            next_id: s.next_id,
            base_names: s.names.clone(),
            names: s.names.clone(),
            ..State::default()
        };
        SimDisk { state: Arc::new(Mutex::new(state)) }
    }

    /// The disk as it comes back after losing power now: everything synced,
    /// plus a random part of the rest chosen by `seed`. This disk stays as
    /// it is (dead, if it was).
    pub fn after_power_loss(&self, seed: u64) -> SimDisk {
        let s = self.state.lock();
        let mut rng = XorShift64::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        // Namespace: durable changes, plus a prefix of the others.
        let loose = s.journal.iter().filter(|c| !c.durable).count() as u64;
        let keep_loose = rng.below(loose + 1);
        let mut names = s.base_names.clone();
        let mut seen = 0u64;
        for c in &s.journal {
            let keep = c.durable || {
                seen += 1;
                seen <= keep_loose
            };
            if keep {
                c.apply(&mut names);
            }
        }
        // A name whose directory did not survive is gone with it.
        let dirs: HashSet<PathBuf> = names.iter().filter(|(_, n)| **n == Node::Dir).map(|(p, _)| p.clone()).collect();
        names.retain(|p, _| p.parent().is_none_or(|d| dirs.contains(d)));
        let mut files = HashMap::new();
        for node in names.values() {
            let Node::File(id) = node else { continue };
            if files.contains_key(id) {
                continue;
            }
            let Some(f) = s.files.get(id) else { continue };
            let mut data = f.durable.clone();
            for p in &f.pending {
                match p {
                    Pending::SetLen(len) => {
                        if rng.below(2) == 0 {
                            data.resize(*len as usize, 0);
                        }
                    }
                    Pending::Write { offset, bytes } => match rng.below(3) {
                        0 => write_into(&mut data, *offset, bytes),
                        1 => {}
                        _ => torn_write(&mut data, *offset, bytes, &mut rng),
                    },
                }
            }
            files.insert(*id, FileState { durable: data.clone(), data, pending: Vec::new() });
        }
        let next_id = s.next_id;
        let state = State { files, next_id, base_names: names.clone(), names, ..State::default() };
        SimDisk { state: Arc::new(Mutex::new(state)) }
    }

    fn lookup_file(s: &State, path: &Path) -> io::Result<u64> {
        match s.names.get(path) {
            Some(Node::File(id)) => Ok(*id),
            Some(Node::Dir) => Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{}", path.display()))),
            None => Err(not_found(path)),
        }
    }
}

fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let end = offset as usize + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[offset as usize..end].copy_from_slice(bytes);
}

/// Keeps each sector of a write or not; the length grows to the write's end
/// or to the end of its last kept sector.
fn torn_write(data: &mut Vec<u8>, offset: u64, bytes: &[u8], rng: &mut XorShift64) {
    let end = offset + bytes.len() as u64;
    let mut at = offset;
    let mut last_kept = None;
    while at < end {
        let next = ((at / SECTOR) + 1) * SECTOR;
        let t = next.min(end);
        if rng.below(2) == 0 {
            write_into(data, at, &bytes[(at - offset) as usize..(t - offset) as usize]);
            last_kept = Some(t);
        }
        at = t;
    }
    let grow_to = if rng.below(2) == 0 { Some(end) } else { last_kept };
    if let Some(g) = grow_to {
        if (data.len() as u64) < g {
            data.resize(g as usize, 0);
        }
    }
}

struct SimFile {
    state: Arc<Mutex<State>>,
    id: u64,
}

impl DiskFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let s = self.state.lock();
        s.alive()?;
        let f = s.files.get(&self.id).ok_or_else(dead)?;
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= f.data.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of a simulated file"))?;
        buf.copy_from_slice(&f.data[offset as usize..end as usize]);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.change()?;
        let f = s.files.get_mut(&self.id).ok_or_else(dead)?;
        write_into(&mut f.data, offset, buf);
        f.pending.push(Pending::Write { offset, bytes: buf.to_vec() });
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.state.lock();
        s.alive()?;
        Ok(s.files.get(&self.id).ok_or_else(dead)?.data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.change()?;
        let f = s.files.get_mut(&self.id).ok_or_else(dead)?;
        f.data.resize(len as usize, 0);
        f.pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        s.change()?;
        let f = s.files.get_mut(&self.id).ok_or_else(dead)?;
        f.durable = f.data.clone();
        f.pending.clear();
        Ok(())
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.change()?;
        let f = s.files.get_mut(&self.id).ok_or_else(dead)?;
        let end = (offset + len).min(f.data.len() as u64);
        if offset < end {
            let zeros = vec![0u8; (end - offset) as usize];
            write_into(&mut f.data, offset, &zeros);
            f.pending.push(Pending::Write { offset, bytes: zeros });
        }
        Ok(())
    }

    fn allocated(&self) -> io::Result<u64> {
        self.len()
    }

    fn map(&self, _len: usize) -> io::Result<Option<Mmap>> {
        Ok(None)
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let mut s = self.state.lock();
        s.alive()?;
        let id = match Self::lookup_file(&s, path) {
            Ok(id) => id,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                if !s.parent_is_dir(path) {
                    return Err(not_found(path));
                }
                s.change()?;
                let id = s.next_id;
                s.next_id += 1;
                s.files.insert(id, FileState::default());
                s.rename_node(path, Some(Node::File(id)), None);
                id
            }
            Err(e) => return Err(e),
        };
        Ok(Arc::new(SimFile { state: self.state.clone(), id }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.alive()?;
        Self::lookup_file(&s, path)?;
        s.change()?;
        s.rename_node(path, None, None);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.alive()?;
        let id = Self::lookup_file(&s, from)?;
        if !s.parent_is_dir(to) || s.names.get(to) == Some(&Node::Dir) {
            return Err(not_found(to));
        }
        s.change()?;
        s.rename_node(to, Some(Node::File(id)), Some(from));
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let s = self.state.lock();
        s.alive()?;
        if s.names.get(dir) != Some(&Node::Dir) {
            return Err(not_found(dir));
        }
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.alive()?;
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(p) = at {
            match s.names.get(p) {
                Some(Node::Dir) => break,
                Some(Node::File(_)) => {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{}", p.display())))
                }
                None => missing.push(p.to_path_buf()),
            }
            at = p.parent();
        }
        for p in missing.into_iter().rev() {
            s.change()?;
            s.rename_node(&p, Some(Node::Dir), None);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.alive()?;
        if s.names.get(dir) != Some(&Node::Dir) {
            return Err(not_found(dir));
        }
        s.change()?;
        for c in s.journal.iter_mut().filter(|c| !c.durable && c.in_dir(dir)) {
            c.durable = true;
        }
        Ok(())
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.state.lock().names.get(path) == Some(&Node::Dir)
    }

    fn is_file(&self, path: &Path) -> bool {
        matches!(self.state.lock().names.get(path), Some(Node::File(_)))
    }

    fn lock(&self, path: &Path) -> io::Result<DiskLock> {
        let mut s = self.state.lock();
        s.alive()?;
        if !s.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "another opener"));
        }
        Ok(DiskLock::new(SimLock { state: self.state.clone(), path: path.to_path_buf() }))
    }

    fn space(&self, _dir: &Path) -> io::Result<Space> {
        Ok(Space { total: 1 << 40, free: 1 << 40, avail: 1 << 40 })
    }
}

struct SimLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.state.lock().locks.remove(&self.path);
    }
}
