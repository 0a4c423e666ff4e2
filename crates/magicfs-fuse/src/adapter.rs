//! `fuser::Filesystem` over [`magicfs_core::Fs`]: argument conversion, errno
//! mapping, the virtual `.magic/` namespace, and the hand-off of slow
//! replies to workers.

use crate::digest::{Digest, DigestCache};
use crate::generated::{self, Generated};
use crate::pool::Pool;
use crate::search::{self, Search};
use crate::virt;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    IoctlFlags, KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use magicfs_chat::Sessions;
use magicfs_core::{Ctx, Fs, SetAttr, TimeSet};
use magicfs_types::{Attr, FileKind, FsError, FsResult, ROOT_INO};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// First handle number of virtual files (core handles count up from 1).
const VIRT_FH: u64 = 1 << 63;
/// Directory offsets at and above this belong to virtual entries.
const VIRT_OFFSET: u64 = 1 << 62;
/// Dirty bytes a commit may handle on the request thread: committing this
/// little takes well under a millisecond, less than a hand-off to a worker.
const INLINE_COMMIT: usize = 256 << 10;
/// Files larger than this are unlinked (or replaced by rename) on a worker:
/// their extents are many.
const LARGE_UNLINK: u64 = 64 << 20;
/// Reads at least this large are answered by a worker: the request thread
/// goes back for the next request (readahead keeps several in flight) while
/// the reply is assembled and copied.
const LARGE_READ: u32 = 256 << 10;
/// Dirty bytes of one file above which writers wait for a commit (or three
/// times the file system's spill size, if larger: one commit installing,
/// one chunking, one filling).
const HARD_DIRTY: usize = 128 << 20;
/// Background commits of one file at a time: one waits for its uploads and
/// installs while the next chunks (see `magicfs_core::node::CommitLock`).
const SPILLS_PER_FILE: u32 = 2;

/// The FUSE filesystem object.
pub struct Adapter {
    fs: Arc<Fs>,
    pool: Arc<Pool>,
    ttl: Duration,
    virt_handles: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
    next_virt: AtomicU64,
    /// Background commits running, per inode.
    spilling: Arc<Mutex<HashMap<u64, u32>>>,
    /// Directory handles opened with `O_NOATIME`: listing them moves no
    /// access time (backup tools and `magicfs export` leave atimes alone).
    noatime_dirs: Mutex<HashSet<u64>>,
    digests: Arc<DigestCache>,
    search: Option<Arc<Search>>,
    chat: Option<Arc<Sessions>>,
    gen: Option<Arc<Generated>>,
    /// Set by the session once requests travel over FUSE over io_uring.
    ring: Arc<OnceLock<Arc<AtomicBool>>>,
    /// A mount of a shared volume: mutations and opens wait on the
    /// database, so they are answered by workers.
    cluster: bool,
    /// Set by the session: notifications to the kernel.
    notifier: Arc<OnceLock<Notifier>>,
}

impl Adapter {
    /// Wraps `fs`, answering slow requests on `pool`.
    pub fn new(fs: Arc<Fs>, pool: Arc<Pool>, ttl: Duration) -> Adapter {
        let cluster = fs.is_cluster();
        Adapter {
            fs,
            pool,
            ttl,
            virt_handles: Mutex::new(HashMap::new()),
            next_virt: AtomicU64::new(0),
            spilling: Arc::default(),
            noatime_dirs: Mutex::default(),
            digests: Arc::default(),
            search: None,
            chat: None,
            gen: None,
            ring: Arc::default(),
            cluster,
            notifier: Arc::default(),
        }
    }

    /// Runs `job` on a worker on a mount of a shared volume (it waits on the
    /// database), on the request thread otherwise (it takes microseconds).
    fn mutation(&self, job: impl FnOnce() + Send + 'static) {
        if self.cluster {
            self.pool.spawn(job)
        } else {
            job()
        }
    }

    /// Where the session will report whether requests travel over FUSE
    /// over io_uring (shown in `.magic/status`).
    pub fn ring_flag(&self) -> Arc<OnceLock<Arc<AtomicBool>>> {
        self.ring.clone()
    }

    /// How requests reach the daemon: `io_uring` or `/dev/fuse`.
    fn transport(&self) -> &'static str {
        match self.ring.get() {
            Some(f) if f.load(Ordering::Acquire) => "io_uring",
            _ => "/dev/fuse",
        }
    }

    /// Answers chat sessions under `sessions/` with `chat`.
    pub fn with_chat(mut self, chat: Option<Arc<Sessions>>) -> Adapter {
        self.chat = chat;
        self
    }

    /// Attribute and entry lifetime for `ino`: zero for session files, whose
    /// size the daemon changes behind the kernel's back.
    fn ttl_for(&self, ino: u64) -> Duration {
        match &self.chat {
            Some(c) if c.is_session(ino) => Duration::ZERO,
            _ => self.ttl,
        }
    }

    fn in_sessions(&self, parent: u64) -> bool {
        self.chat.as_ref().is_some_and(|c| c.is_sessions_dir(parent))
    }

    /// Adds generated content (files filled on first read, overlays).
    pub fn with_generation(mut self, gen: Arc<Generated>) -> Adapter {
        self.gen = Some(gen);
        self
    }

    /// Tells the kernel through `notifier` (set once the session runs)
    /// when attributes change behind a request that does not return them.
    pub fn with_notifier(mut self, notifier: Arc<OnceLock<Notifier>>) -> Adapter {
        self.notifier = notifier;
        self
    }

    /// What a change of a file's data by `req` does to its privileges
    /// (see [`Fs::kill_privs`]). The kernel keeps the mode it has cached
    /// across a write or fallocate: a cleared setuid bit must reach it
    /// before the next stat.
    fn kill_privs(&self, req: &Request, ino: u64) -> FsResult<()> {
        let w = Writer::of(req);
        if self.fs.kill_privs(ino, w.privileged(), &|g| w.in_group(g))?.is_some() {
            self.attributes_changed(ino);
        }
        Ok(())
    }

    /// Drops the kernel's cached attributes of `ino` (its pages stay).
    fn attributes_changed(&self, ino: u64) {
        forget_attributes(&self.notifier, ino);
    }

    /// Serves `search/` from `s`.
    pub fn with_search(mut self, s: Option<Arc<Search>>) -> Adapter {
        self.search = s;
        self
    }
}

fn errno(e: FsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn kind_of(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime.to_system(),
        mtime: a.mtime.to_system(),
        ctime: a.ctime.to_system(),
        crtime: a.crtime.to_system(),
        kind: kind_of(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 65536,
        flags: 0,
    }
}

/// Who changes a file's data, for what that does to its setuid and setgid
/// bits (see [`Fs::kill_privs`]).
#[derive(Clone, Copy)]
struct Writer {
    uid: u32,
    gid: u32,
    pid: u32,
}

impl Writer {
    fn of(req: &Request) -> Writer {
        Writer { uid: req.uid(), gid: req.gid(), pid: req.pid() }
    }

    fn privileged(&self) -> bool {
        self.uid == 0
    }

    /// Whether the writer is in group `gid`: its own group or one of its
    /// supplementary groups (read from /proc only when a setgid file asks).
    fn in_group(&self, gid: u32) -> bool {
        gid == self.gid
            || std::fs::read_to_string(format!("/proc/{}/status", self.pid)).is_ok_and(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Groups:"))
                    .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
            })
    }
}

fn ctx(req: &Request) -> Ctx {
    Ctx { uid: req.uid(), gid: req.gid() }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(t.into()),
    }
}

fn reserved(parent: INodeNo, name: &OsStr) -> bool {
    parent.0 == ROOT_INO && (name.as_bytes() == virt::MAGIC_DIR || name.as_bytes() == search::SEARCH_DIR)
}

impl Adapter {
    /// Virtual entries listed after a directory's own: `.magic` (and
    /// `search`) in the root, the files of `.magic/`, a `README.magic` overlay.
    fn virtual_entries(&self, ino: u64) -> Vec<(u64, FileType, &'static [u8])> {
        let mut virtuals: Vec<(u64, FileType, &'static [u8])> = match ino {
            ROOT_INO if self.search.is_some() => vec![
                (virt::MAGIC_DIR_INO, FileType::Directory, virt::MAGIC_DIR),
                (search::SEARCH_DIR_INO, FileType::Directory, search::SEARCH_DIR),
            ],
            ROOT_INO => vec![(virt::MAGIC_DIR_INO, FileType::Directory, virt::MAGIC_DIR)],
            virt::MAGIC_DIR_INO => {
                let mut v = vec![
                    (virt::MAGIC_DIR_INO, FileType::Directory, &b"."[..]),
                    (ROOT_INO, FileType::Directory, &b".."[..]),
                ];
                v.extend(virt::FILES.iter().map(|(n, i)| (*i, FileType::RegularFile, *n)));
                v
            }
            _ => Vec::new(),
        };
        if let Some(o) = self.gen.as_ref().and_then(|g| g.overlay_entries(ino)) {
            virtuals.push(o);
        }
        virtuals
    }

    /// Attributes, their lifetime and the generation of an inode outside
    /// `search/` (`None`: there is no such inode, e.g. gone since a listing
    /// was opened). `getattr` and `readdirplus` answer from it.
    fn listed_attr(&self, ino: u64) -> Option<(FileAttr, Duration, u64)> {
        if ino == search::SEARCH_DIR_INO && self.search.is_some() {
            return Some((Search::root_attr(), self.ttl, 0));
        }
        if virt::is_virtual(ino) {
            return Some((virt::attr(ino), self.ttl, 0));
        }
        if generated::is_overlay(ino) {
            return self.gen.as_ref().and_then(|g| g.overlay_attr(ino)).map(|a| (a, Duration::ZERO, 0));
        }
        let a = self.fs.getattr(ino).ok()?;
        Some((file_attr(&a), self.ttl_for(ino), a.generation))
    }

    fn entry(ttl: Duration, reply: ReplyEntry, r: FsResult<Attr>) {
        match r {
            Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(a.generation)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn empty(reply: ReplyEmpty, r: FsResult<()>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn xattr_reply(reply: ReplyXattr, size: u32, data: FsResult<Vec<u8>>) {
        match data {
            Err(e) => reply.error(errno(e)),
            Ok(d) if size == 0 => reply.size(d.len() as u32),
            Ok(d) if d.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(d) => reply.data(&d),
        }
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        // We clear setuid/setgid and file capabilities on write and truncate
        // ourselves. With V2 the kernel marks the superblock SB_NOSEC, so it
        // asks for `security.capability` once per inode, not on every write.
        // Lookups and readdirs in one directory may run side by side.
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        // Listings carry attributes (`ls -l` and `find` need no LOOKUP per
        // entry); the kernel picks plain or plus per call.
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        if config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2).is_err() {
            let _ = config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV);
        }
        // File handles (name_to_handle_at, NFS export) outlive the kernel's
        // inode cache: it looks an evicted inode up again as "." of its
        // number, which `lookup` answers from the inode table.
        let _ = config.add_capabilities(InitFlags::FUSE_EXPORT_SUPPORT);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Some(c) = &self.chat {
            c.shutdown();
        }
        if let Some(g) = &self.gen {
            g.shutdown();
        }
        if let Err(e) = self.fs.shutdown() {
            log::error!("shutdown at unmount: {e}");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if let Some(s) = &self.search {
            if parent.0 == ROOT_INO && name.as_bytes() == search::SEARCH_DIR {
                return reply.entry(&self.ttl, &Search::root_attr(), Generation(0));
            }
            if search::owns(parent.0) {
                return s.lookup(parent.0, name.as_bytes(), reply);
            }
        }
        if let Some(ino) = virt::lookup(parent.0, name.as_bytes()) {
            return reply.entry(&self.ttl, &virt::attr(ino), Generation(0));
        }
        if virt::is_virtual(parent.0) {
            return reply.error(Errno::ENOENT);
        }
        let r = self.fs.lookup(parent.0, name.as_bytes());
        if self.in_sessions(parent.0) {
            // Entries of sessions/ (sentinels included) come and go behind the kernel's back.
            return match r {
                Ok(a) => {
                    if let Some(c) = &self.chat {
                        c.note_entry(parent.0, name.as_bytes(), a.ino);
                    }
                    reply.entry(&Duration::ZERO, &file_attr(&a), Generation(a.generation))
                }
                Err(e) => reply.error(errno(e)),
            };
        }
        if let (Err(FsError::NotFound), Some(g)) = (&r, &self.gen) {
            if let Some(a) = g.overlay_lookup(parent.0, name.as_bytes()).and_then(|o| g.overlay_attr(o)) {
                return reply.entry(&Duration::ZERO, &a, Generation(0));
            }
        }
        Self::entry(self.ttl, reply, r)
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if let (Some(s), true) = (&self.search, search::owns(ino.0)) {
            return s.getattr(ino.0, reply);
        }
        match self.listed_attr(ino.0) {
            Some((a, ttl, _)) => reply.attr(&ttl, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if virt::is_virtual(ino.0) || generated::is_overlay(ino.0) {
            return reply.error(Errno::EPERM);
        }
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime: ctime.map(Into::into),
        };
        let (fs, ttl, chat) = (self.fs.clone(), self.ttl_for(ino.0), self.chat.clone());
        let (kill, w) = (size.is_some(), Writer::of(req));
        let index = self.search.as_ref().filter(|_| size.is_some()).map(|s| s.index().clone());
        let run = move || match fs.setattr(ino.0, set).and_then(|a| {
            Ok(if kill { fs.kill_privs(ino.0, w.privileged(), &|g| w.in_group(g))?.unwrap_or(a) } else { a })
        }) {
            Ok(a) => {
                if let (Some(c), Some(_)) = (&chat, size) {
                    c.truncated(ino.0);
                }
                reply.attr(&ttl, &file_attr(&a));
                if let Some(i) = index {
                    i.note_written(ino.0);
                }
            }
            Err(e) => reply.error(errno(e)),
        };
        // Truncation waits for a running commit of the same file.
        if size.is_some() {
            self.pool.spawn(run);
        } else {
            self.mutation(run);
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        if let (Some(s), true) = (&self.search, search::owns(ino.0)) {
            return s.readlink(ino.0, reply);
        }
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        if reserved(parent, name) {
            return reply.error(Errno::EEXIST);
        }
        let mode = (mode & libc::S_IFMT) | (mode & 0o7777 & !umask);
        let (fs, ttl, name, who) = (self.fs.clone(), self.ttl, name.as_bytes().to_vec(), ctx(req));
        self.mutation(move || Self::entry(ttl, reply, fs.mknod(parent.0, &name, mode, rdev, who)))
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        if reserved(parent, name) {
            return reply.error(Errno::EEXIST);
        }
        let (fs, ttl, name, who) = (self.fs.clone(), self.ttl, name.as_bytes().to_vec(), ctx(req));
        self.mutation(move || Self::entry(ttl, reply, fs.mkdir(parent.0, &name, mode & 0o7777 & !umask, who)))
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if reserved(parent, name) || virt::is_virtual(parent.0) {
            return reply.error(Errno::EPERM);
        }
        // Freeing a large file drops one extent per chunk: a worker's job.
        let victim = self.fs.lookup(parent.0, name.as_bytes()).ok();
        if let (Some(s), Some(a)) = (&self.search, &victim) {
            s.index().note_unlinked(a.ino);
        }
        let large = victim.is_some_and(|a| a.size > LARGE_UNLINK);
        if large {
            let (fs, name) = (self.fs.clone(), name.as_bytes().to_vec());
            return self.pool.spawn(move || Self::empty(reply, fs.unlink(parent.0, &name)));
        }
        let (fs, chat, name) = (self.fs.clone(), self.chat.clone(), name.as_bytes().to_vec());
        self.mutation(move || {
            let r = fs.unlink(parent.0, &name);
            if let (Ok(()), Some(c)) = (&r, &chat) {
                c.unlinked(parent.0, &name);
            }
            Self::empty(reply, r)
        })
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if reserved(parent, name) || virt::is_virtual(parent.0) {
            return reply.error(Errno::EPERM);
        }
        let (fs, name) = (self.fs.clone(), name.as_bytes().to_vec());
        self.mutation(move || Self::empty(reply, fs.rmdir(parent.0, &name)))
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        if reserved(parent, link_name) {
            return reply.error(Errno::EEXIST);
        }
        let (fs, ttl, who) = (self.fs.clone(), self.ttl, ctx(req));
        let (name, target) = (link_name.as_bytes().to_vec(), target.as_os_str().as_bytes().to_vec());
        self.mutation(move || Self::entry(ttl, reply, fs.symlink(parent.0, &name, &target, who)))
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if reserved(parent, name) || reserved(newparent, newname) || virt::is_virtual(newparent.0) {
            return reply.error(Errno::EPERM);
        }
        let bits = flags.bits();
        if bits & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 {
            return reply.error(Errno::EINVAL);
        }
        let f = magicfs_core::RenameFlags {
            noreplace: bits & libc::RENAME_NOREPLACE != 0,
            exchange: bits & libc::RENAME_EXCHANGE != 0,
        };
        // Replacing a large file frees its extents: a worker's job.
        let replaced = self.fs.lookup(newparent.0, newname.as_bytes()).ok();
        if let Some(s) = &self.search {
            s.index().note_renamed(self.fs.lookup(parent.0, name.as_bytes()).ok().map(|a| a.ino));
            if let Some(a) = &replaced {
                s.index().note_unlinked(a.ino);
            }
        }
        let large = replaced.is_some_and(|a| a.size > LARGE_UNLINK);
        let (fs, name, newname) = (self.fs.clone(), name.as_bytes().to_vec(), newname.as_bytes().to_vec());
        let run = move || Self::empty(reply, fs.rename(parent.0, &name, newparent.0, &newname, f));
        if large {
            return self.pool.spawn(run);
        }
        self.mutation(run)
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        if reserved(newparent, newname) || virt::is_virtual(ino.0) {
            return reply.error(Errno::EPERM);
        }
        let (fs, ttl, name) = (self.fs.clone(), self.ttl, newname.as_bytes().to_vec());
        self.mutation(move || Self::entry(ttl, reply, fs.link(ino.0, newparent.0, &name)))
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if let (Some(s), true) = (&self.search, search::owns(ino.0)) {
            return s.open(ino.0, flags.0 & libc::O_ACCMODE != libc::O_RDONLY, reply);
        }
        if virt::is_virtual(ino.0) {
            if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
                return reply.error(Errno::EACCES);
            }
            let fh = VIRT_FH | self.next_virt.fetch_add(1, Ordering::Relaxed);
            let mut extra: Vec<(&str, serde_json::Value)> = self.chat.iter().map(|c| ("chat", c.status())).collect();
            extra.extend(self.gen.iter().map(|g| ("generation", g.status())));
            extra.push(("fuse", serde_json::json!({ "transport": self.transport() })));
            let mut content = virt::content(ino.0, &self.fs, &extra);
            if let (Some(s), virt::STATUS_INO) = (&self.search, ino.0) {
                content = search::with_status(content, s);
            }
            self.virt_handles.lock().insert(fh, Arc::new(content));
            return reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
        }
        if generated::is_overlay(ino.0) {
            let Some(g) = &self.gen else { return reply.error(Errno::ENOENT) };
            if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
                return reply.error(Errno::EACCES);
            }
            let fh = VIRT_FH | self.next_virt.fetch_add(1, Ordering::Relaxed);
            self.virt_handles.lock().insert(fh, Arc::new(g.overlay_content(ino.0)));
            return reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
        }
        // A file that may be generated on read is read past the kernel's cache.
        let direct = self.gen.as_ref().is_some_and(|g| g.direct_io(ino.0));
        // On a shared volume the kernel's idea of the size may be behind: an
        // appending handle reads and writes past its cache, and the daemon
        // places each append at the end it knows (see `write`).
        let direct = direct || (self.cluster && flags.0 & libc::O_APPEND != 0);
        let (fs, chat, notifier, cluster) = (self.fs.clone(), self.chat.clone(), self.notifier.clone(), self.cluster);
        // On a shared volume the open first catches up with other mounts
        // (close-to-open), and the kernel keeps its pages only if no other
        // mount changed the file since this mount last opened it.
        self.mutation(move || match fs.open_cached(ino.0, flags.0) {
            Ok((fh, _)) if chat.as_ref().is_some_and(|c| c.is_session(ino.0)) => {
                // Session files grow behind the kernel's back: no page cache.
                if let Some(c) = &chat {
                    c.opened(ino.0, fh, flags.0);
                }
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO)
            }
            Ok((fh, keep)) => {
                // Under strictatime a read served from the kernel's cache
                // would move no access time: the first read of each open
                // comes here.
                let keep = keep && !fs.strict_atime();
                if cluster && !keep {
                    // Changed on another mount: the kernel asks for fresh
                    // attributes (size) before it next uses them.
                    forget_attributes(&notifier, ino.0);
                }
                let mut cache = match (direct, keep) {
                    (true, _) => FopenFlags::FOPEN_DIRECT_IO,
                    (false, true) => FopenFlags::FOPEN_KEEP_CACHE,
                    (false, false) => FopenFlags::empty(),
                };
                // A read-only handle has nothing to commit at close: no FLUSH
                // round trip (locks are the kernel's own, see the README).
                if flags.0 & libc::O_ACCMODE == libc::O_RDONLY {
                    cache |= FopenFlags::FOPEN_NOFLUSH;
                }
                reply.opened(FileHandle(fh), cache)
            }
            Err(e) => reply.error(errno(e)),
        })
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if let (Some(s), true) = (&self.search, search::owns_fh(fh.0)) {
            return s.read(fh.0, offset, size, reply);
        }
        if fh.0 >= VIRT_FH {
            let data = self.virt_handles.lock().get(&fh.0).cloned().unwrap_or_default();
            let s = (offset as usize).min(data.len());
            let e = (s + size as usize).min(data.len());
            return reply.data(&data[s..e]);
        }
        let reply = match &self.gen {
            Some(g) => match g.read(ino.0, offset, size, flags.0, reply) {
                Some(r) => r,
                None => return,
            },
            None => reply,
        };
        if flags.0 & libc::O_NOATIME == 0 {
            self.fs.accessed(ino.0);
        }
        // A read that would wait on the network (chunks held only in an
        // object store) is a worker's too.
        if size >= LARGE_READ || !self.fs.read_is_local(ino.0, offset, size as u64) {
            let fs = self.fs.clone();
            return self.pool.spawn(move || read_reply(&fs, ino.0, offset, size, reply));
        }
        read_reply(&self.fs, ino.0, offset, size, reply);
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let n = data.len() as u32;
        let w = Writer::of(req);
        if self.cluster && self.fs.must_kill_privs(ino.0, w.privileged(), &|g| w.in_group(g)) {
            // Dropping privileges is a metadata commit: a worker's job.
            let (fs, data, notifier) = (self.fs.clone(), data.to_vec(), self.notifier.clone());
            return self.pool.spawn(move || {
                let killed = fs.kill_privs(ino.0, w.privileged(), &|g| w.in_group(g));
                if let Ok(Some(_)) = killed {
                    forget_attributes(&notifier, ino.0);
                }
                match killed.and_then(|_| fs.write(ino.0, offset, &data)) {
                    Ok(_) => reply.written(n),
                    Err(e) => reply.error(errno(e)),
                }
            });
        }
        if let Err(e) = self.kill_privs(req, ino.0) {
            return reply.error(errno(e));
        }
        let append = flags.0 & libc::O_APPEND != 0;
        let hooked = self.chat.as_ref().and_then(|c| c.write(ino.0, offset, data, append));
        let written = hooked.unwrap_or_else(|| match (self.cluster, append) {
            // The kernel's end of file may predate another mount's append:
            // append at the end this mount knows (current since the open),
            // and have the kernel ask for the size again.
            (true, true) => {
                let end = self.fs.getattr(ino.0).map(|a| a.size);
                let r = end.and_then(|end| self.fs.write(ino.0, end, data));
                forget_attributes(&self.notifier, ino.0);
                r
            }
            _ => self.fs.write(ino.0, offset, data),
        });
        match written {
            Ok(false) => reply.written(n),
            Ok(true) if self.fs.dirty_bytes(ino.0) >= HARD_DIRTY.max(3 * self.fs.spill_bytes()) => {
                // Far too much buffered: commit before acknowledging
                // (backpressure for the writer, not for the request loop).
                let fs = self.fs.clone();
                self.pool.spawn(move || match fs.flush(ino.0) {
                    Ok(()) => reply.written(n),
                    Err(e) => reply.error(errno(e)),
                });
            }
            Ok(true) => {
                // Commit in the background while the writer goes on.
                reply.written(n);
                let start = {
                    let mut spilling = self.spilling.lock();
                    let running = spilling.entry(ino.0).or_default();
                    let start = *running < SPILLS_PER_FILE;
                    *running += u32::from(start);
                    start
                };
                if start {
                    let (fs, spilling) = (self.fs.clone(), self.spilling.clone());
                    self.pool.spawn(move || {
                        if let Err(e) = fs.flush(ino.0) {
                            log::error!("background commit of inode {}: {e}", ino.0);
                        }
                        let mut spilling = spilling.lock();
                        if let Some(running) = spilling.get_mut(&ino.0) {
                            *running -= 1;
                            if *running == 0 {
                                spilling.remove(&ino.0);
                            }
                        }
                    });
                }
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(&self, req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        if fh.0 >= VIRT_FH {
            return reply.ok();
        }
        // A writer closing a session file may queue a reply (and create its
        // sentinel) before close() returns.
        let (chat, who) = (self.chat.clone(), ctx(req));
        let done = move |fs: &Fs| {
            let r = fs.flush(ino.0);
            if let (Ok(()), Some(c)) = (&r, &chat) {
                c.flushed(ino.0, fh.0, who);
            }
            r
        };
        if !self.cluster && self.fs.dirty_bytes(ino.0) <= INLINE_COMMIT {
            return Self::empty(reply, done(&self.fs));
        }
        let fs = self.fs.clone();
        self.pool.spawn(move || Self::empty(reply, done(&fs)));
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let (Some(s), true) = (&self.search, search::owns_fh(fh.0)) {
            s.release(fh.0);
            return reply.ok();
        }
        if fh.0 >= VIRT_FH {
            self.virt_handles.lock().remove(&fh.0);
            return reply.ok();
        }
        // A file closed after writing is (re)indexed for search.
        let index =
            self.search.as_ref().filter(|_| flags.0 & libc::O_ACCMODE != libc::O_RDONLY).map(|s| s.index().clone());
        if let Some(c) = &self.chat {
            c.released(fh.0);
        }
        if !self.cluster && self.fs.dirty_bytes(ino.0) <= INLINE_COMMIT {
            Self::empty(reply, self.fs.release(fh.0));
            if let Some(i) = index {
                i.note_written(ino.0);
            }
            return;
        }
        let fs = self.fs.clone();
        self.pool.spawn(move || {
            Self::empty(reply, fs.release(fh.0));
            if let Some(i) = index {
                i.note_written(ino.0);
            }
        });
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        if fh.0 >= VIRT_FH {
            return reply.ok();
        }
        let fs = self.fs.clone();
        self.pool.spawn(move || Self::empty(reply, fs.fsync(ino.0)));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if let (Some(s), true) = (&self.search, search::owns(ino.0)) {
            return s.opendir(ino.0, reply);
        }
        if ino.0 == virt::MAGIC_DIR_INO {
            return reply.opened(FileHandle(VIRT_FH), FopenFlags::empty());
        }
        match self.fs.opendir(ino.0) {
            Ok(fh) => {
                if flags.0 & libc::O_NOATIME != 0 {
                    self.noatime_dirs.lock().insert(fh);
                }
                reply.opened(FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if let (Some(s), true) = (&self.search, search::owns(ino.0)) {
            return s.readdir(ino.0, offset, reply);
        }
        let virtuals = self.virtual_entries(ino.0);
        let mut full = false;
        if offset < VIRT_OFFSET && fh.0 < VIRT_FH {
            if offset == 0 && !self.noatime_dirs.lock().contains(&fh.0) {
                self.fs.accessed(ino.0);
            }
            let r = self.fs.readdir(fh.0, offset as usize, |next, e| {
                full = reply.add(INodeNo(e.ino), next as u64, kind_of(e.kind), OsStr::from_bytes(&e.name));
                full
            });
            if let Err(e) = r {
                return reply.error(errno(e));
            }
        }
        if !full {
            let from = offset.saturating_sub(VIRT_OFFSET) as usize;
            for (i, (vino, kind, name)) in virtuals.iter().enumerate().skip(from) {
                if reply.add(INodeNo(*vino), VIRT_OFFSET + i as u64 + 1, *kind, OsStr::from_bytes(name)) {
                    break;
                }
            }
        }
        reply.ok()
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        if let (Some(s), true) = (&self.search, search::owns(ino.0)) {
            return s.readdirplus(ino.0, offset, reply);
        }
        let virtuals = self.virtual_entries(ino.0);
        // Entries of sessions/ come and go behind the kernel's back (as in lookup).
        let sessions = self.in_sessions(ino.0);
        let mut full = false;
        if offset < VIRT_OFFSET && fh.0 < VIRT_FH {
            if offset == 0 && !self.noatime_dirs.lock().contains(&fh.0) {
                self.fs.accessed(ino.0);
            }
            let r = self.fs.readdir(fh.0, offset as usize, |next, e| {
                // An entry removed since opendir is left out.
                let Some((attr, ttl, gen)) = self.listed_attr(e.ino) else { return false };
                let ttl = match (sessions, &self.chat) {
                    (true, Some(c)) => {
                        c.note_entry(ino.0, &e.name, e.ino);
                        Duration::ZERO
                    }
                    _ => ttl,
                };
                full = reply.add(INodeNo(e.ino), next as u64, OsStr::from_bytes(&e.name), &ttl, &attr, Generation(gen));
                full
            });
            if let Err(e) = r {
                return reply.error(errno(e));
            }
        }
        if !full {
            let from = offset.saturating_sub(VIRT_OFFSET) as usize;
            for (i, (vino, _, name)) in virtuals.iter().enumerate().skip(from) {
                let Some((attr, ttl, gen)) = self.listed_attr(*vino) else { continue };
                let off = VIRT_OFFSET + i as u64 + 1;
                if reply.add(INodeNo(*vino), off, OsStr::from_bytes(name), &ttl, &attr, Generation(gen)) {
                    break;
                }
            }
        }
        reply.ok()
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        if fh.0 >= VIRT_FH {
            return reply.ok();
        }
        self.noatime_dirs.lock().remove(&fh.0);
        Self::empty(reply, self.fs.releasedir(fh.0))
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let fs = self.fs.clone();
        self.pool.spawn(move || Self::empty(reply, fs.sync_store()));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize);
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if virt::is_virtual(ino.0) || generated::is_overlay(ino.0) || Digest::from_xattr(name.as_bytes()).is_some() {
            return reply.error(Errno::EPERM);
        }
        let reply = match &self.gen {
            Some(g) => match g.setxattr(ino.0, name.as_bytes(), value, ctx(req), reply) {
                Some(r) => r,
                None => return,
            },
            None => reply,
        };
        let (fs, name, value) = (self.fs.clone(), name.as_bytes().to_vec(), value.to_vec());
        self.mutation(move || Self::empty(reply, fs.setxattr(ino.0, &name, &value, flags)))
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if magicfs_core::xattr_not_kept(name.as_bytes()) {
            // The same answer on every inode, so tools stop asking.
            return reply.error(Errno::EOPNOTSUPP);
        }
        if virt::is_virtual(ino.0) || generated::is_overlay(ino.0) {
            return reply.error(Errno::ENODATA);
        }
        if let Some(kind) = Digest::from_xattr(name.as_bytes()) {
            // Hashing a large file is slow work: answer from a worker.
            let (fs, digests) = (self.fs.clone(), self.digests.clone());
            let file = match fs.getattr(ino.0) {
                Ok(a) if a.kind == FileKind::File => a,
                Ok(_) => return reply.error(Errno::ENODATA),
                Err(e) => return reply.error(errno(e)),
            };
            let run = move || Self::xattr_reply(reply, size, digests.get(&fs, ino.0, kind));
            if file.size <= INLINE_COMMIT as u64 {
                run();
            } else {
                self.pool.spawn(run);
            }
            return;
        }
        Self::xattr_reply(reply, size, self.fs.getxattr(ino.0, name.as_bytes()))
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if virt::is_virtual(ino.0) || generated::is_overlay(ino.0) {
            return Self::xattr_reply(reply, size, Ok(Vec::new()));
        }
        let list = self.fs.listxattr(ino.0).map(|names| {
            let mut out = Vec::new();
            for n in names {
                out.extend_from_slice(&n);
                out.push(0);
            }
            out
        });
        Self::xattr_reply(reply, size, list)
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if virt::is_virtual(ino.0) || generated::is_overlay(ino.0) || Digest::from_xattr(name.as_bytes()).is_some() {
            return reply.error(Errno::EPERM);
        }
        if let Some(g) = &self.gen {
            g.removexattr(name.as_bytes());
        }
        let (fs, name) = (self.fs.clone(), name.as_bytes().to_vec());
        self.mutation(move || Self::empty(reply, fs.removexattr(ino.0, &name)))
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        if virt::is_virtual(ino.0) || generated::is_overlay(ino.0) {
            return reply.ok();
        }
        Self::empty(reply, self.fs.getattr(ino.0).map(|_| ()))
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if reserved(parent, name) {
            return reply.error(Errno::EEXIST);
        }
        let session = self.in_sessions(parent.0) && name.as_bytes().first() != Some(&b'.');
        let (fs, chat, ttl, name, who) =
            (self.fs.clone(), self.chat.clone(), self.ttl, name.as_bytes().to_vec(), ctx(req));
        self.mutation(move || match fs.create(parent.0, &name, mode & 0o7777 & !umask, flags, who) {
            Ok((a, fh)) if session => {
                if let Some(c) = &chat {
                    c.note_entry(parent.0, &name, a.ino);
                    c.opened(a.ino, fh, flags);
                }
                reply.created(
                    &Duration::ZERO,
                    &file_attr(&a),
                    Generation(a.generation),
                    FileHandle(fh),
                    FopenFlags::FOPEN_DIRECT_IO,
                )
            }
            Ok((a, fh)) => reply.created(
                &ttl,
                &file_attr(&a),
                Generation(a.generation),
                FileHandle(fh),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(errno(e)),
        })
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let (fs, notifier, w) = (self.fs.clone(), self.notifier.clone(), Writer::of(req));
        self.mutation(move || {
            let r = fs
                .fallocate(ino.0, offset, length, mode)
                .and_then(|()| fs.kill_privs(ino.0, w.privileged(), &|g| w.in_group(g)));
            if let Ok(Some(_)) = r {
                forget_attributes(&notifier, ino.0);
            }
            Self::empty(reply, r.map(|_| ()))
        })
    }

    /// No ioctl is served: every command answers ENOTTY, as on a file of
    /// tmpfs. Runtimes ask on each open (Python's `open()` sends TCGETS to
    /// learn whether the file is a terminal), so the answer is quiet: the
    /// library's default logs a warning per call.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn lseek(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        // SEEK_DATA / SEEK_HOLE from before the start find nothing, as on tmpfs.
        if offset < 0 {
            return reply.error(Errno::ENXIO);
        }
        match self.fs.lseek(ino.0, offset as u64, whence) {
            Ok(o) => reply.offset(o as i64),
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// Marks the kernel's cached attributes of `ino` stale (its pages stay): it
/// asks for them again before it next needs them. Safe from any thread: it
/// takes no lock a request in progress may hold.
fn forget_attributes(notifier: &OnceLock<Notifier>, ino: u64) {
    if let Some(n) = notifier.get() {
        if let Err(e) = n.inval_inode(INodeNo(ino), -1, 0) {
            log::debug!("forgetting the attributes of inode {ino}: {e}");
        }
    }
}

/// Answers a read: chunks, pages and zeros go to the kernel as one vectored
/// write, without joining them in a buffer first.
fn read_reply(fs: &Fs, ino: u64, offset: u64, size: u32, reply: ReplyData) {
    match fs.read_parts(ino, offset, size as u64) {
        Ok(parts) => reply.data_vectored(&parts.io_slices()),
        Err(e) => reply.error(errno(e)),
    }
}
