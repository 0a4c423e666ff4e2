//! File attributes and their fixed binary encoding (little-endian, versioned
//! by length) used as the value of the `inodes` table.

use crate::Ino;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The type of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
}

impl FileKind {
    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDev => libc::S_IFCHR,
            FileKind::BlockDev => libc::S_IFBLK,
        }
    }

    /// The kind named by the `S_IFMT` bits of `mode`, if any.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDev,
            libc::S_IFBLK => FileKind::BlockDev,
            _ => return None,
        })
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> Option<FileKind> {
        use FileKind::*;
        [File, Dir, Symlink, Fifo, Socket, CharDev, BlockDev].get(c as usize).copied()
    }
}

/// Seconds and nanoseconds since the Unix epoch (may be negative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timespec {
    /// Whole seconds.
    pub sec: i64,
    /// Nanoseconds, below 1e9.
    pub nsec: u32,
}

impl Timespec {
    /// The current wall-clock time.
    pub fn now() -> Timespec {
        Timespec::from(SystemTime::now())
    }

    /// As a `SystemTime`.
    pub fn to_system(self) -> SystemTime {
        if self.sec >= 0 {
            UNIX_EPOCH + Duration::new(self.sec as u64, self.nsec)
        } else {
            UNIX_EPOCH - Duration::from_secs(self.sec.unsigned_abs()) + Duration::from_nanos(self.nsec as u64)
        }
    }
}

impl From<SystemTime> for Timespec {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec { sec: d.as_secs() as i64, nsec: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                let mut sec = -(d.as_secs() as i64);
                let mut nsec = d.subsec_nanos();
                if nsec > 0 {
                    sec -= 1;
                    nsec = 1_000_000_000 - nsec;
                }
                Timespec { sec, nsec }
            }
        }
    }
}

/// The attributes of one inode, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// Logical size in bytes.
    pub size: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last content change.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
    /// Creation.
    pub crtime: Timespec,
    /// Type.
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (low 12 bits).
    pub perm: u16,
    /// Hard link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number for device nodes.
    pub rdev: u32,
    /// Generation, bumped when an inode number is reused.
    pub generation: u64,
    /// 512-byte blocks holding data (holes excluded). Not stored: filled in
    /// when the attributes are handed out.
    pub blocks: u64,
}

/// Length of [`Attr::encode`]'s output.
pub const ATTR_LEN: usize = 8 + 8 + 4 * 12 + 1 + 2 + 4 * 4 + 8;

impl Attr {
    /// A fresh attribute set for a new inode, all times now.
    pub fn new(ino: Ino, kind: FileKind, perm: u16, uid: u32, gid: u32) -> Attr {
        let now = Timespec::now();
        Attr {
            ino,
            size: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm: perm & 0o7777,
            nlink: 1,
            uid,
            gid,
            rdev: 0,
            generation: 0,
            blocks: 0,
        }
    }

    /// The full `st_mode` (type bits and permission bits).
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | self.perm as u32
    }

    /// Fixed-layout little-endian encoding.
    pub fn encode(&self) -> [u8; ATTR_LEN] {
        let mut b = [0u8; ATTR_LEN];
        let mut w = Writer { b: &mut b, at: 0 };
        w.u64(self.ino);
        w.u64(self.size);
        for t in [self.atime, self.mtime, self.ctime, self.crtime] {
            w.u64(t.sec as u64);
            w.u32(t.nsec);
        }
        w.bytes(&[self.kind.code()]);
        w.bytes(&self.perm.to_le_bytes());
        w.u32(self.nlink);
        w.u32(self.uid);
        w.u32(self.gid);
        w.u32(self.rdev);
        w.u64(self.generation);
        b
    }

    /// Decodes [`Attr::encode`]'s output; `None` if malformed.
    pub fn decode(b: &[u8]) -> Option<Attr> {
        if b.len() < ATTR_LEN {
            return None;
        }
        let mut r = Reader { b, at: 0 };
        let ino = r.u64();
        let size = r.u64();
        let mut ts = [Timespec::default(); 4];
        for t in ts.iter_mut() {
            t.sec = r.u64() as i64;
            t.nsec = r.u32();
        }
        let kind = FileKind::from_code(r.take(1)[0])?;
        let perm = u16::from_le_bytes([r.take(1)[0], r.take(1)[0]]);
        Some(Attr {
            ino,
            size,
            atime: ts[0],
            mtime: ts[1],
            ctime: ts[2],
            crtime: ts[3],
            kind,
            perm,
            nlink: r.u32(),
            uid: r.u32(),
            gid: r.u32(),
            rdev: r.u32(),
            generation: r.u64(),
            blocks: 0,
        })
    }
}

struct Writer<'a> {
    b: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, v: &[u8]) {
        self.b[self.at..self.at + v.len()].copy_from_slice(v);
        self.at += v.len();
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes())
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        s
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap_or([0; 8]))
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap_or([0; 4]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_roundtrip() {
        let mut a = Attr::new(42, FileKind::Symlink, 0o4755, 1000, 100);
        a.size = 1 << 40;
        a.mtime = Timespec { sec: -5, nsec: 7 };
        a.rdev = 0x0801;
        let b = a.encode();
        assert_eq!(Attr::decode(&b), Some(a));
        assert_eq!(Attr::decode(&b[..10]), None);
    }

    #[test]
    fn timespec_negative_roundtrip() {
        let t = Timespec { sec: -3, nsec: 250 };
        assert_eq!(Timespec::from(t.to_system()), t);
    }
}
