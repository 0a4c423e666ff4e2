//! Mounting and unmounting.

use crate::adapter::Adapter;
use crate::generated::Generated;
use crate::pool::Pool;
use fuser::{Config, MountOption, SessionACL, SessionUnmounter};

use magicfs_core::{Atime, Fs, Inval};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Let other users (and root) use the mount (`allow_other`).
    pub allow_other: bool,
    /// Threads reading FUSE requests.
    pub threads: usize,
    /// Worker threads for slow replies.
    pub workers: usize,
    /// Serve requests over FUSE-over-io_uring when the kernel offers it.
    pub io_uring: bool,
    /// How long the kernel may cache attributes and names.
    pub ttl: Duration,
    /// Source name shown in the mount table (the data directory, so tools
    /// that find mounts by their source, such as xfstests, find it).
    pub fsname: String,
    /// Kernel mount flags by their fstab names (`ro`, `nosuid`, `dev`,
    /// `noexec`, `noatime`, `nodiratime`, `sync`, `dirsync`, …; see
    /// [`is_kernel_flag`]). Without `suid` and `dev` the mount is
    /// `nosuid,nodev`.
    pub flags: Vec<String>,
    /// The search index served as `search/` (none: no `search/`).
    pub search: Option<magicfs_index::Index>,
    /// Generated content (files filled on first read, `README.magic` overlays).
    pub generation: Option<Arc<magicfs_gen::Engine>>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            allow_other: false,
            threads: 4,
            workers: 4,
            io_uring: true,
            ttl: Duration::from_secs(1),
            fsname: "magicfs".into(),
            flags: Vec::new(),
            search: None,
            generation: None,
        }
    }
}

/// The kernel mount flag named `name` in fstab.
fn kernel_flag(name: &str) -> Option<MountOption> {
    Some(match name {
        "ro" => MountOption::RO,
        "rw" => MountOption::RW,
        "suid" => MountOption::Suid,
        "nosuid" => MountOption::NoSuid,
        "dev" => MountOption::Dev,
        "nodev" => MountOption::NoDev,
        "exec" => MountOption::Exec,
        "noexec" => MountOption::NoExec,
        // FUSE inodes are S_NOATIME: the kernel's atime rule has no effect
        // on them, the daemon's does (see [`atime_rule`]); the mount table
        // shows the kernel's default, relatime.
        "atime" | "relatime" | "strictatime" => MountOption::Atime,
        "noatime" => MountOption::NoAtime,
        "nodiratime" => MountOption::NoDirAtime,
        "sync" => MountOption::Sync,
        "async" => MountOption::Async,
        "dirsync" => MountOption::DirSync,
        _ => return None,
    })
}

/// True for the fstab names of kernel mount flags that [`MountOptions::flags`] takes.
pub fn is_kernel_flag(name: &str) -> bool {
    kernel_flag(name).is_some()
}

/// The access-time rule of kernel mount flags (the last of `noatime`,
/// `relatime`, `strictatime` and `atime` wins) and whether directories
/// follow it (not with `nodiratime`).
pub fn atime_rule(flags: &[String]) -> (Atime, bool) {
    let rule = flags.iter().rev().find_map(|f| match f.as_str() {
        "noatime" => Some(Atime::Never),
        "strictatime" => Some(Atime::Strict),
        "relatime" | "atime" => Some(Atime::Relative),
        _ => None,
    });
    (rule.unwrap_or_default(), !flags.iter().any(|f| f == "nodiratime"))
}

/// A live mount.
pub struct Mounted {
    unmounter: SessionUnmounter,
    mountpoint: std::path::PathBuf,
    thread: Option<JoinHandle<io::Result<()>>>,
    ended: Receiver<()>,
    gone: bool,
}

/// Mounts `fs` at `mountpoint` and serves it on background threads.
pub fn mount(fs: Arc<Fs>, mountpoint: &Path, opts: &MountOptions) -> io::Result<Mounted> {
    mount_with_chat(fs, mountpoint, opts, None)
}

/// [`mount`], with chat sessions under `sessions/` answered by `chat`.
pub fn mount_with_chat(
    fs: Arc<Fs>,
    mountpoint: &Path,
    opts: &MountOptions,
    chat: Option<Arc<magicfs_chat::Sessions>>,
) -> io::Result<Mounted> {
    let pool = Arc::new(Pool::new(opts.workers, 4096));
    let search = opts.search.clone().map(|i| Arc::new(crate::search::Search::new(i, 2)));
    let notifier = Arc::new(OnceLock::new());
    let mut adapter =
        Adapter::new(fs.clone(), pool, opts.ttl).with_chat(chat).with_search(search).with_notifier(notifier.clone());
    if let Some(engine) = &opts.generation {
        adapter = adapter.with_generation(Generated::new(engine.clone(), GEN_WORKERS, notifier.clone()));
    }
    let ring = adapter.ring_flag();
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("magicfs".into()),
        MountOption::DefaultPermissions,
    ];
    for f in &opts.flags {
        let flag = kernel_flag(f)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("unknown mount flag '{f}'")))?;
        // The last of two opposite flags wins, as with mount(8).
        let opposite: Vec<MountOption> =
            ["ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "atime", "noatime", "sync", "async"]
                .chunks(2)
                .filter_map(|p| match (kernel_flag(p[0]), kernel_flag(p[1])) {
                    (Some(a), Some(b)) if a == flag => Some(b),
                    (Some(a), Some(b)) if b == flag => Some(a),
                    _ => None,
                })
                .collect();
        cfg.mount_options.retain(|o| !opposite.contains(o) && *o != flag);
        cfg.mount_options.push(flag);
    }
    if opts.allow_other {
        cfg.acl = SessionACL::All;
    }
    cfg.n_threads = Some(opts.threads.max(1));
    cfg.clone_fd = opts.threads > 1;
    cfg.io_uring = opts.io_uring;
    if opts.io_uring && std::fs::read_to_string(URING_PARAM).is_ok_and(|v| v.trim() == "N") {
        log::info!(
            "FUSE over io_uring is off in the kernel; `echo Y > {URING_PARAM}` (as root) before mounting \
             serves requests on per-CPU queues, much faster for small-file work"
        );
    }
    let cluster = fs.clone();
    let mut session = fuser::Session::new(adapter, mountpoint, &cfg)?;
    let _ = notifier.set(session.notifier());
    if cluster.is_cluster() {
        forward_invalidations(&cluster, session.notifier());
    }
    let _ = ring.set(session.io_uring_active());
    let unmounter = session.unmount_callable();
    let (tx, ended) = channel();
    let thread = std::thread::Builder::new().name("magicfs-fuse".into()).spawn(move || {
        let r = session.run();
        let _ = tx.send(());
        r
    })?;
    set_readahead(mountpoint, READAHEAD_KB);
    Ok(Mounted { unmounter, mountpoint: mountpoint.to_path_buf(), thread: Some(thread), ended, gone: false })
}

/// Tells the kernel what to forget after changes from other mounts of a
/// shared volume, from a thread of its own: an invalidation waits for the
/// kernel's inode locks, which a request in progress may hold.
fn forward_invalidations(fs: &Arc<Fs>, notifier: fuser::Notifier) {
    let (tx, rx) = channel::<Vec<Inval>>();
    fs.on_remote_change(Arc::new(move |i: &[Inval]| {
        let _ = tx.send(i.to_vec());
    }));
    let spawned = std::thread::Builder::new().name("magicfs-inval".into()).spawn(move || {
        for batch in rx {
            for i in batch {
                let r = match &i {
                    Inval::Entry { parent, name } => {
                        notifier.inval_entry(fuser::INodeNo(*parent), std::ffi::OsStr::from_bytes(name))
                    }
                    Inval::Inode(ino) => notifier.inval_inode(fuser::INodeNo(*ino), 0, 0),
                };
                if let Err(e) = r {
                    // The kernel did not have it cached (ENOENT), or the mount is gone.
                    log::trace!("invalidating {i:?}: {e}");
                }
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("cannot start the invalidation thread: {e}");
    }
}

/// The fuse module parameter that lets the kernel offer FUSE over io_uring.
const URING_PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// Threads running generations (each holds one generation at a time).
const GEN_WORKERS: usize = 2;

/// Kernel readahead for the mount: large sequential reads in fewer requests.
const READAHEAD_KB: u32 = 1024;

/// Raises the readahead of the mount's backing device info, if permitted.
fn set_readahead(mountpoint: &Path, kb: u32) {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(mountpoint) else { return };
    let dev = m.dev();
    let path = format!("/sys/class/bdi/{}:{}/read_ahead_kb", libc::major(dev), libc::minor(dev));
    if let Err(e) = std::fs::write(&path, kb.to_string()) {
        log::debug!("cannot raise readahead via {path}: {e}");
    }
}

impl Mounted {
    /// After a refused unmount (a moment's `EBUSY`): tries again for a
    /// second, then detaches the mount (it goes once no one uses it).
    fn unmount_again(&mut self, first: io::Error) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        log::warn!("unmounting {}: {first}; trying again", self.mountpoint.display());
        let path = std::ffi::CString::new(self.mountpoint.as_os_str().as_bytes()).map_err(io::Error::other)?;
        for flags in std::iter::repeat_n(0, 10).chain([libc::MNT_DETACH]) {
            if self.has_ended() {
                return Ok(());
            }
            // SAFETY: umount2 with a NUL-terminated path.
            if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(first)
    }

    /// True once the kernel ended the session (e.g. `fusermount3 -u`).
    pub fn has_ended(&mut self) -> bool {
        if !self.gone && !matches!(self.ended.try_recv(), Err(TryRecvError::Empty)) {
            self.gone = true;
        }
        self.gone
    }

    /// Unmounts (if still mounted) and waits for the request threads.
    pub fn unmount(mut self) -> io::Result<()> {
        if !self.has_ended() {
            // Still mounted after an error: the request threads serve on,
            // and waiting for them would never end.
            self.unmounter.unmount().or_else(|e| self.unmount_again(e))?;
        }
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("the FUSE session thread panicked")),
                _ => {}
            }
        }
        Ok(())
    }
}
