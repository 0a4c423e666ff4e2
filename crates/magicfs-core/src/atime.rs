//! Access times. The kernel leaves them to a FUSE filesystem (its inodes
//! are `S_NOATIME`), so the daemon moves them when a file is read or a
//! directory listed, by the mount's rule.

use crate::fs::Fs;
use magicfs_types::{Attr, FileKind, Ino, Timespec};

/// When reads move a file's access time (the mount's `relatime`,
/// `strictatime` or `noatime`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Atime {
    /// When it is not after the last change, or a day old (`relatime`,
    /// the kernel's default): one update per change, not per read.
    #[default]
    Relative,
    /// At every read (`strictatime`).
    Strict,
    /// Never (`noatime`).
    Never,
}

/// A day, the age after which `relatime` moves an access time anyway.
const DAY: i64 = 24 * 60 * 60;

impl Atime {
    /// True when a read at `now` moves `a`'s access time.
    fn due(self, a: &Attr, now: Timespec) -> bool {
        match self {
            Atime::Never => false,
            Atime::Strict => a.atime != now,
            Atime::Relative => a.atime <= a.mtime || a.atime <= a.ctime || now.sec - a.atime.sec >= DAY,
        }
    }
}

impl Fs {
    /// True under `strictatime`: every read must reach the daemon (which
    /// moves access times), so a file's cached pages are not kept across
    /// opens.
    pub fn strict_atime(&self) -> bool {
        self.cfg.atime == Atime::Strict && !self.cfg.read_only
    }

    /// Notes that `ino` was read (file data, or a directory's listing) and
    /// moves its access time as the mount's rule says (`nodiratime`: never
    /// for directories). Nothing is written when the rule leaves it.
    pub fn accessed(&self, ino: Ino) {
        let rule = self.cfg.atime;
        if self.cfg.read_only || rule == Atime::Never {
            return;
        }
        let now = Timespec::now();
        let due = |a: &Attr| (a.kind != FileKind::Dir || self.cfg.dir_atime) && rule.due(a, now);
        if !self.meta.read().nodes.get(&ino).is_some_and(|n| due(&n.attr)) {
            return;
        }
        // A mount of a shared volume records it from its background thread:
        // a read never waits for the database.
        if let Some(c) = &self.cluster {
            c.note_access(ino, now);
            return;
        }
        let r = self.mutate(|meta, b| {
            if let Some(n) = meta.nodes.get_mut(&ino).filter(|n| due(&n.attr)) {
                n.attr.atime = now;
                meta.log_node(b, ino);
            }
            Ok(())
        });
        if let Err(e) = r {
            log::warn!("access time of inode {ino}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ctx, FsConfig};
    use magicfs_types::ROOT_INO;

    fn setup(atime: Atime, dir_atime: bool) -> (Fs, Ino, Ino) {
        let fs = Fs::memory(FsConfig { atime, dir_atime, ..FsConfig::default() });
        let d = fs.mkdir(ROOT_INO, b"d", 0o755, Ctx::default()).unwrap().ino;
        let (a, fh) = fs.create(d, b"f", 0o644, libc::O_RDWR, Ctx::default()).unwrap();
        fs.write(a.ino, 0, b"data").unwrap();
        fs.release(fh).unwrap();
        (fs, d, a.ino)
    }

    fn atime(fs: &Fs, ino: Ino) -> Timespec {
        fs.getattr(ino).unwrap().atime
    }

    #[test]
    fn relatime_moves_once_per_change() {
        let (fs, d, f) = setup(Atime::Relative, true);
        let (t0, d0) = (atime(&fs, f), atime(&fs, d));
        fs.accessed(f);
        let t1 = atime(&fs, f);
        assert!(t1 > t0);
        fs.accessed(f);
        assert_eq!(atime(&fs, f), t1, "a second read moved it");
        fs.write(f, 0, b"more").unwrap();
        fs.accessed(f);
        assert!(atime(&fs, f) > t1, "a read after a write did not move it");
        fs.accessed(d);
        assert!(atime(&fs, d) > d0);
    }

    #[test]
    fn strictatime_moves_at_every_read_noatime_never() {
        let (fs, _, f) = setup(Atime::Strict, true);
        fs.accessed(f);
        let t1 = atime(&fs, f);
        fs.accessed(f);
        assert!(atime(&fs, f) > t1);
        let (fs, d, f) = setup(Atime::Never, true);
        let (t0, d0) = (atime(&fs, f), atime(&fs, d));
        fs.accessed(f);
        fs.accessed(d);
        assert_eq!((atime(&fs, f), atime(&fs, d)), (t0, d0));
    }

    #[test]
    fn nodiratime_leaves_directories() {
        let (fs, d, f) = setup(Atime::Relative, false);
        let (t0, d0) = (atime(&fs, f), atime(&fs, d));
        fs.accessed(d);
        fs.accessed(f);
        assert_eq!(atime(&fs, d), d0);
        assert!(atime(&fs, f) > t0);
    }
}
