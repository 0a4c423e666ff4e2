//! Generated content through the mount: the first read of an empty file
//! with a prompt starts its generation on a generation worker (never the
//! request loop); readers wait with their replies parked, a non-blocking
//! reader gets `EAGAIN`; the stored content is then announced to the kernel
//! with an invalidation. Also the command attributes
//! (`user.magic.regenerate`, `user.magic.generate`), the `README.magic`
//! overlay files and the `generation` section of `.magic/status`.

use crate::pool::Pool;
use fuser::{Errno, FileAttr, FileType, INodeNo, Notifier, ReplyData, ReplyEmpty};
use magicfs_core::Ctx;
use magicfs_gen::{names, Engine, GenError};
use magicfs_types::{FileKind, Ino};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// Inode numbers of overlay files: this bit or'ed with the directory's inode.
const OVERLAY_BIT: u64 = 1 << 62;

/// True for the inode of an overlay file.
pub fn is_overlay(ino: u64) -> bool {
    ino & OVERLAY_BIT != 0 && ino < crate::virt::MAGIC_DIR_INO
}

/// The overlay inode of directory `dir`.
pub fn overlay_ino(dir: Ino) -> u64 {
    OVERLAY_BIT | dir
}

fn overlay_dir(ino: u64) -> Ino {
    ino & !OVERLAY_BIT
}

/// What waits for a generation to end.
enum Waiter {
    /// A read of the file being generated.
    Read { reply: ReplyData, offset: u64, size: u32 },
    /// `setxattr user.magic.regenerate`.
    Done(ReplyEmpty),
}

/// Generation state of one mount.
pub struct Generated {
    engine: Arc<Engine>,
    /// Files being generated, with what waits for them.
    jobs: Mutex<HashMap<Ino, Vec<Waiter>>>,
    workers: Pool,
    notifier: Arc<OnceLock<Notifier>>,
}

impl Generated {
    /// Runs `engine`'s generations on `workers` threads; invalidations go
    /// through the notifier once the session sets it.
    pub fn new(engine: Arc<Engine>, workers: usize, notifier: Arc<OnceLock<Notifier>>) -> Arc<Generated> {
        Arc::new(Generated { engine, jobs: Mutex::new(HashMap::new()), workers: Pool::new(workers, 4096), notifier })
    }

    /// True when `open` should bypass the page cache: the file may be
    /// generated on read (the kernel must not answer from its size of 0).
    pub fn direct_io(&self, ino: Ino) -> bool {
        match self.engine.fs().getattr(ino) {
            Ok(a) if a.kind == FileKind::File && a.size == 0 => {
                self.jobs.lock().contains_key(&ino) || self.engine.may_generate(&a)
            }
            _ => false,
        }
    }

    /// Read hook: takes the reply when the read waits for a generation (or
    /// gets `EAGAIN`); hands it back when the read proceeds normally.
    pub fn read(self: &Arc<Self>, ino: Ino, offset: u64, size: u32, flags: i32, reply: ReplyData) -> Option<ReplyData> {
        let fs = self.engine.fs();
        let attr = match fs.getattr(ino) {
            Ok(a) if a.kind == FileKind::File && a.size == 0 => a,
            _ => return Some(reply),
        };
        let nonblock = flags & libc::O_NONBLOCK != 0;
        let candidate = fs.dirty_bytes(ino) == 0 && self.engine.may_generate(&attr);
        let mut jobs = self.jobs.lock();
        if let Some(w) = jobs.get_mut(&ino) {
            if nonblock {
                reply.error(Errno::EAGAIN);
            } else {
                w.push(Waiter::Read { reply, offset, size });
            }
            return None;
        }
        if !candidate {
            return Some(reply);
        }
        let waiters = if nonblock {
            reply.error(Errno::EAGAIN);
            Vec::new()
        } else {
            vec![Waiter::Read { reply, offset, size }]
        };
        jobs.insert(ino, waiters);
        drop(jobs);
        self.start(ino, false);
        None
    }

    fn start(self: &Arc<Self>, ino: Ino, force: bool) {
        let me = self.clone();
        self.workers.spawn(move || {
            let engine = &me.engine;
            let r = if force {
                engine.regenerate(ino).map(|_| true)
            } else {
                match engine.plan(ino, false) {
                    Ok(Some(p)) => engine.run(&p, false).map(|_| true),
                    Ok(None) => Ok(false),
                    Err(e) => Err(e),
                }
            };
            if matches!(r, Ok(true) | Err(GenError::Changed)) {
                me.invalidate(ino);
            }
            let waiters = me.jobs.lock().remove(&ino).unwrap_or_default();
            for w in waiters {
                match (w, &r) {
                    (Waiter::Read { reply, offset, size }, Ok(_) | Err(GenError::Changed)) => {
                        let mut reply = Some(reply);
                        let res = engine.fs().read_with(ino, offset, size as u64, |d| {
                            if let Some(r) = reply.take() {
                                r.data(d)
                            }
                        });
                        if let (Err(e), Some(r)) = (res, reply) {
                            r.error(Errno::from_i32(e.errno()));
                        }
                    }
                    (Waiter::Read { reply, .. }, Err(e)) => reply.error(Errno::from_i32(e.errno())),
                    (Waiter::Done(reply), Ok(_)) => reply.ok(),
                    (Waiter::Done(reply), Err(e)) => reply.error(Errno::from_i32(e.errno())),
                }
            }
        });
    }

    fn invalidate(&self, ino: Ino) {
        if let Some(n) = self.notifier.get() {
            if let Err(e) = n.inval_inode(INodeNo(ino), 0, 0) {
                log::debug!("invalidating inode {ino}: {e}");
            }
        }
    }

    /// `setxattr` hook: runs the command attributes (the reply is sent when
    /// the command ends) and notes changes of the rules; hands the reply back
    /// when the attribute is an ordinary one to store.
    pub fn setxattr(
        self: &Arc<Self>,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        ctx: Ctx,
        reply: ReplyEmpty,
    ) -> Option<ReplyEmpty> {
        if name == names::REGENERATE {
            let mut jobs = self.jobs.lock();
            if jobs.contains_key(&ino) {
                drop(jobs);
                reply.error(Errno::EBUSY);
                return None;
            }
            jobs.insert(ino, vec![Waiter::Done(reply)]);
            drop(jobs);
            self.start(ino, true);
            return None;
        }
        if name == names::GENERATE_TREE {
            let Ok(prompt) = std::str::from_utf8(value).map(str::to_string) else {
                reply.error(Errno::EINVAL);
                return None;
            };
            let me = self.clone();
            self.workers.spawn(move || {
                let r = me.engine.make_tree(ino, &prompt, ctx);
                me.invalidate(ino);
                match r {
                    Ok(_) => reply.ok(),
                    Err(e) => reply.error(Errno::from_i32(e.errno())),
                }
            });
            return None;
        }
        if names::affects_rules(name) {
            self.engine.rules_changed();
        }
        Some(reply)
    }

    /// Notes a removed attribute.
    pub fn removexattr(&self, name: &[u8]) {
        if names::affects_rules(name) {
            self.engine.rules_changed();
        }
    }

    /// The overlay inode named `name` in `parent`, if `parent` asks for one.
    pub fn overlay_lookup(&self, parent: Ino, name: &[u8]) -> Option<u64> {
        (name == names::README_OVERLAY && self.engine.wants_overlay(parent)).then(|| overlay_ino(parent))
    }

    /// Overlay entries of directory `dir` for `readdir`.
    pub fn overlay_entries(&self, dir: Ino) -> Option<(u64, FileType, &'static [u8])> {
        let shadowed = self.engine.fs().lookup(dir, names::README_OVERLAY).is_ok();
        (!shadowed && self.engine.wants_overlay(dir))
            .then(|| (overlay_ino(dir), FileType::RegularFile, names::README_OVERLAY))
    }

    /// The content of an overlay file, rendered now.
    pub fn overlay_content(&self, ino: u64) -> Vec<u8> {
        self.engine.render_overlay(overlay_dir(ino))
    }

    /// Attributes of an overlay file (owned like its directory, read-only).
    pub fn overlay_attr(&self, ino: u64) -> Option<FileAttr> {
        let dir = self.engine.fs().getattr(overlay_dir(ino)).ok()?;
        if !self.engine.wants_overlay(dir.ino) {
            return None;
        }
        let now = SystemTime::now();
        Some(FileAttr {
            ino: INodeNo(ino),
            size: self.overlay_content(ino).len() as u64,
            blocks: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind: FileType::RegularFile,
            perm: 0o444,
            nlink: 1,
            uid: dir.uid,
            gid: dir.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// The `generation` section of `.magic/status`.
    pub fn status(&self) -> serde_json::Value {
        self.engine.status()
    }

    /// Stops running generations (unmount); nothing partial is stored.
    pub fn shutdown(&self) {
        self.engine.cancel_all();
    }
}
