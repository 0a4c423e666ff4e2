//! [`Tree`] over a host directory (any filesystem, a MagicFS mount point
//! included), with `std::fs` and the `l*` system calls that do not follow
//! symbolic links.

use crate::error::{SnapshotError, SnapshotResult};
use crate::tree::{Attrs, Stat, Tree};
use magicfs_types::{FileKind, Timespec};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Bytes copied at a time.
const PIECE: usize = 1 << 20;

/// `statfs` type of FUSE filesystems.
const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;

/// The virtual control directory at the root of a MagicFS mount.
const MAGIC_DIR: &[u8] = b".magic";
/// The virtual search directory at the root of a MagicFS mount.
const SEARCH_DIR: &[u8] = b"search";
/// The chat sessions directory a MagicFS mount makes at its root: while it
/// is empty it is no content of the mount (neither exported nor in the way
/// of an import, which reuses it).
const SESSIONS_DIR: &[u8] = b"sessions";

/// A host directory as a [`Tree`].
pub struct HostTree {
    root: PathBuf,
    /// True when the root is a MagicFS mount point (its `.magic` and `search` are skipped).
    magic_root: bool,
}

fn io_err(op: &str, path: &Path, e: io::Error) -> SnapshotError {
    SnapshotError::io(format!("{op} {}", path.display()), e)
}

/// True when `root` is the root of a mounted MagicFS filesystem.
fn is_magicfs_mount(root: &Path) -> bool {
    let fuse = rustix::fs::statfs(root).is_ok_and(|st| st.f_type as u64 == FUSE_SUPER_MAGIC);
    fuse && root.join(OsStr::from_bytes(MAGIC_DIR)).join("status").is_file()
}

impl HostTree {
    /// A tree rooted at the existing directory `root`.
    pub fn open(root: &Path) -> SnapshotResult<HostTree> {
        let root = root.canonicalize().map_err(|e| io_err("opening", root, e))?;
        let meta = fs::symlink_metadata(&root).map_err(|e| io_err("opening", &root, e))?;
        if !meta.is_dir() {
            return Err(io_err("opening", &root, io::Error::from(io::ErrorKind::NotADirectory)));
        }
        let magic_root = is_magicfs_mount(&root);
        Ok(HostTree { root, magic_root })
    }

    /// A tree rooted at `root`, created (with its parents) if missing.
    pub fn create(root: &Path) -> SnapshotResult<HostTree> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(|e| io_err("creating", root, e))?;
        HostTree::open(root)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the root holds an empty `sessions` directory.
    fn empty_sessions(&self) -> bool {
        let p = self.root.join(OsStr::from_bytes(SESSIONS_DIR));
        fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) && fs::read_dir(&p).is_ok_and(|mut d| d.next().is_none())
    }

    fn full(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }
}

fn timespec(sec: i64, nsec: i64) -> Timespec {
    Timespec { sec, nsec: nsec.clamp(0, 999_999_999) as u32 }
}

/// Runs a size-probing `l*xattr` call: `query` gives the size, `fill` the
/// bytes, again if the value grew meanwhile.
fn xattr_call(
    query: impl Fn() -> rustix::io::Result<usize>,
    fill: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<u8>> {
    loop {
        let mut buf = vec![0u8; query()?];
        match fill(&mut buf) {
            Ok(m) => {
                buf.truncate(m);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn time_arg(t: Option<Timespec>) -> rustix::fs::Timespec {
    match t {
        Some(t) => rustix::fs::Timespec { tv_sec: t.sec, tv_nsec: t.nsec.into() },
        None => rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
    }
}

impl Tree for HostTree {
    fn stat(&mut self, path: &str) -> SnapshotResult<Stat> {
        let p = self.full(path);
        let m = fs::symlink_metadata(&p).map_err(|e| io_err("reading attributes of", &p, e))?;
        let t = m.file_type();
        let kind = if t.is_dir() {
            FileKind::Dir
        } else if t.is_file() {
            FileKind::File
        } else if t.is_symlink() {
            FileKind::Symlink
        } else if t.is_fifo() {
            FileKind::Fifo
        } else if t.is_socket() {
            FileKind::Socket
        } else if t.is_char_device() {
            FileKind::CharDev
        } else if t.is_block_device() {
            FileKind::BlockDev
        } else {
            return Err(SnapshotError::Unsupported { path: path.to_string(), reason: "unknown file type".into() });
        };
        Ok(Stat {
            kind,
            perm: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            atime: timespec(m.atime(), m.atime_nsec()),
            mtime: timespec(m.mtime(), m.mtime_nsec()),
            rdev: m.rdev(),
            nlink: m.nlink(),
            id: (m.dev(), m.ino()),
        })
    }

    fn list(&mut self, path: &str) -> SnapshotResult<Vec<Vec<u8>>> {
        let p = self.full(path);
        let mut names = Vec::new();
        // Listed without moving the directory's access time where allowed
        // (O_NOATIME needs the owner or CAP_FOWNER), as files are read.
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = match rustix::fs::open(&p, flags | OFlags::NOATIME, Mode::empty()) {
            Err(rustix::io::Errno::PERM) => rustix::fs::open(&p, flags, Mode::empty()),
            r => r,
        }
        .map_err(|e| io_err("listing", &p, e.into()))?;
        let dir = rustix::fs::Dir::read_from(&fd).map_err(|e| io_err("listing", &p, e.into()))?;
        for e in dir {
            let name = e.map_err(|e| io_err("listing", &p, e.into()))?.file_name().to_bytes().to_vec();
            if name == b"." || name == b".." {
                continue;
            }
            let skip = path.is_empty()
                && self.magic_root
                && (name == MAGIC_DIR || name == SEARCH_DIR || (name == SESSIONS_DIR && self.empty_sessions()));
            if !skip {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read_link(&mut self, path: &str) -> SnapshotResult<Vec<u8>> {
        let p = self.full(path);
        Ok(fs::read_link(&p).map_err(|e| io_err("reading link", &p, e))?.into_os_string().into_vec())
    }

    fn xattrs(&mut self, path: &str) -> SnapshotResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let p = self.full(path);
        let list = match xattr_call(|| rustix::fs::llistxattr_query(&p), |b| rustix::fs::llistxattr(&p, b)) {
            Ok(l) => l,
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(io_err("listing extended attributes of", &p, e)),
        };
        let mut out = Vec::new();
        for name in list.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name_os = OsStr::from_bytes(name);
            let value = match xattr_call(
                || rustix::fs::lgetxattr_query(&p, name_os),
                |b| rustix::fs::lgetxattr(&p, name_os, b),
            ) {
                Ok(v) => v,
                // Removed between listing and reading.
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
                Err(e) => return Err(io_err("reading extended attribute of", &p, e)),
            };
            out.push((name.to_vec(), value));
        }
        Ok(out)
    }

    fn open_file(&mut self, path: &str) -> SnapshotResult<Box<dyn Read + '_>> {
        let p = self.full(path);
        // Reading for an export leaves access times alone where allowed.
        let f = match OpenOptions::new().read(true).custom_flags(libc::O_NOATIME).open(&p) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(&p),
            r => r,
        }
        .map_err(|e| io_err("opening", &p, e))?;
        Ok(Box::new(f))
    }

    fn make_dir(&mut self, path: &str) -> SnapshotResult<()> {
        let p = self.full(path);
        if self.magic_root && path.as_bytes() == SESSIONS_DIR && self.empty_sessions() {
            return Ok(());
        }
        fs::DirBuilder::new().mode(0o700).create(&p).map_err(|e| io_err("creating directory", &p, e))
    }

    fn make_file(&mut self, path: &str, content: &mut dyn Read) -> SnapshotResult<u64> {
        let p = self.full(path);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| io_err("creating", &p, e))?;
        copy_into(f, content, &p)
    }

    fn append_file(&mut self, path: &str, content: &mut dyn Read) -> SnapshotResult<u64> {
        let p = self.full(path);
        let f = OpenOptions::new().append(true).open(&p).map_err(|e| io_err("opening", &p, e))?;
        copy_into(f, content, &p)
    }

    fn make_symlink(&mut self, path: &str, target: &[u8]) -> SnapshotResult<()> {
        let p = self.full(path);
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &p).map_err(|e| io_err("creating symbolic link", &p, e))
    }

    fn make_node(&mut self, path: &str, kind: FileKind, rdev: u64) -> SnapshotResult<()> {
        let p = self.full(path);
        let file_type = rustix::fs::FileType::from_raw_mode(kind.mode_bits());
        let rdev = if kind == FileKind::Fifo { 0 } else { rdev };
        rustix::fs::mknodat(rustix::fs::CWD, &p, file_type, rustix::fs::Mode::from_raw_mode(0o600), rdev)
            .map_err(|e| io_err("creating", &p, e.into()))
    }

    fn make_link(&mut self, path: &str, existing: &str) -> SnapshotResult<()> {
        let p = self.full(path);
        fs::hard_link(self.full(existing), &p).map_err(|e| io_err("creating hard link", &p, e))
    }

    fn set_xattr(&mut self, path: &str, name: &[u8], value: &[u8]) -> SnapshotResult<()> {
        let p = self.full(path);
        rustix::fs::lsetxattr(&p, OsStr::from_bytes(name), value, rustix::fs::XattrFlags::empty())
            .map_err(|e| io_err("setting extended attribute of", &p, e.into()))
    }

    fn set_attrs(&mut self, path: &str, kind: FileKind, attrs: &Attrs) -> SnapshotResult<()> {
        let p = self.full(path);
        if attrs.uid.is_some() || attrs.gid.is_some() {
            let m = fs::symlink_metadata(&p).map_err(|e| io_err("reading attributes of", &p, e))?;
            let uid = attrs.uid.unwrap_or(m.uid());
            let gid = attrs.gid.unwrap_or(m.gid());
            if (uid, gid) != (m.uid(), m.gid()) {
                // Only root may give files away; others keep their own.
                match std::os::unix::fs::lchown(&p, Some(uid), Some(gid)) {
                    Err(e) if rustix::process::geteuid().is_root() || e.raw_os_error() != Some(libc::EPERM) => {
                        return Err(io_err("changing the owner of", &p, e))
                    }
                    _ => {}
                }
            }
        }
        // After lchown, which clears setuid and setgid.
        if let (Some(perm), false) = (attrs.perm, kind == FileKind::Symlink) {
            fs::set_permissions(&p, fs::Permissions::from_mode(perm))
                .map_err(|e| io_err("changing the mode of", &p, e))?;
        }
        if attrs.atime.is_some() || attrs.mtime.is_some() {
            let times =
                rustix::fs::Timestamps { last_access: time_arg(attrs.atime), last_modification: time_arg(attrs.mtime) };
            rustix::fs::utimensat(rustix::fs::CWD, &p, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_err("setting the times of", &p, e.into()))?;
        }
        Ok(())
    }
}

/// Copies what `content` yields into `f`; returns the number of bytes.
fn copy_into(mut f: std::fs::File, content: &mut dyn Read, p: &Path) -> SnapshotResult<u64> {
    let mut buf = vec![0u8; PIECE];
    let mut total = 0u64;
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading the content of", p, e)),
        };
        f.write_all(&buf[..n]).map_err(|e| io_err("writing", p, e))?;
        total += n as u64;
    }
    Ok(total)
}
