//! Handing a file to another program as a kernel object: a sealed memfd
//! holding a snapshot of the file's contents, filled chunk by chunk (no
//! full intermediate copy, no temporary file).

use crate::fs::Fs;
use crate::node::{page_covers, Page};
use magicfs_store::Extent;
use magicfs_types::{FileKind, FsError, FsResult, Ino};
use rustix::fs::{MemfdFlags, SealFlags};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// A consistent view of a file: its size, extents and dirty pages at one instant.
struct Snapshot {
    size: u64,
    extents: Vec<(u64, Extent)>,
    pages: Vec<(u64, Arc<Page>)>,
}

fn os_err(what: &'static str) -> impl FnOnce(std::io::Error) -> FsError {
    move |e| {
        log::error!("{what}: {e}");
        FsError::Io
    }
}

/// A new close-on-exec memfd named `name` that can be sealed.
pub fn create(name: &str) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?)
}

/// Seals a memfd against writing, growing, shrinking and further sealing.
pub fn seal(fd: &OwnedFd) -> std::io::Result<()> {
    Ok(rustix::fs::fcntl_add_seals(fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL)?)
}

impl Fs {
    fn snapshot(&self, ino: Ino) -> FsResult<Snapshot> {
        let meta = self.meta.read();
        let n = meta.nodes.get(&ino).ok_or(FsError::NotFound)?;
        let f = match (n.attr.kind, n.file()) {
            (_, Some(f)) => f,
            (FileKind::Dir, _) => return Err(FsError::IsDir),
            _ => return Err(FsError::Invalid),
        };
        Ok(Snapshot {
            size: n.attr.size,
            extents: f.extents.iter().map(|(o, e)| (*o, *e)).collect(),
            pages: f.pages.iter().map(|(i, p)| (*i, p.clone())).collect(),
        })
    }

    /// A memfd holding the contents of `ino` as they are now (data still
    /// being written by an open handle included), sealed against writing,
    /// growing and shrinking. The descriptor is close-on-exec.
    ///
    /// Chunks referenced by the snapshot can be freed by a concurrent commit
    /// of the same file; the export then starts over from a new snapshot.
    pub fn export_memfd(&self, ino: Ino) -> FsResult<OwnedFd> {
        let mut last = FsError::Io;
        for _ in 0..5 {
            match self.try_export(ino) {
                Err(FsError::Io) => last = FsError::Io,
                r => return r,
            }
        }
        Err(last)
    }

    /// [`Fs::export_memfd`] of the file at `path` (from the root; symlinks
    /// are not followed).
    ///
    /// ```
    /// use magicfs_core::{Fs, FsConfig, OpenOptions};
    /// use std::io::{Read, Write};
    /// use std::sync::Arc;
    ///
    /// let fs = Arc::new(Fs::memory(FsConfig::default()));
    /// fs.open_path("note.txt", OpenOptions::new().write(true).create(true))?.write_all(b"in memory")?;
    /// let fd = fs.export_memfd_path("note.txt")?;
    /// let mut f = std::fs::File::from(fd);
    /// let mut s = String::new();
    /// f.read_to_string(&mut s)?;
    /// assert_eq!(s, "in memory");
    /// assert!(f.write_all(b"x").is_err(), "sealed against writes");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn export_memfd_path(&self, path: &str) -> FsResult<OwnedFd> {
        self.export_memfd(self.resolve(path)?.ino)
    }

    fn try_export(&self, ino: Ino) -> FsResult<OwnedFd> {
        let snap = self.snapshot(ino)?;
        let file = std::fs::File::from(create(&format!("magicfs:{ino}")).map_err(os_err("memfd_create"))?);
        file.set_len(snap.size).map_err(os_err("sizing the memfd"))?;
        let pwrite_all = |buf: &[u8], at: u64| file.write_all_at(buf, at).map_err(os_err("writing the memfd"));
        let mut buf = Vec::new();
        for (off, e) in &snap.extents {
            let end = (off + e.len as u64).min(snap.size);
            if *off >= end || page_covers(&snap.pages, *off, end) {
                continue;
            }
            buf.resize((end - off) as usize, 0);
            self.chunk_slice(&e.chunk, e.skip as u64, &mut buf)?;
            pwrite_all(&buf, *off)?;
        }
        for (idx, p) in &snap.pages {
            let start = idx * crate::node::PAGE;
            let have = (start + p.data.len() as u64).min(snap.size);
            if have > start {
                pwrite_all(&p.data[..(have - start) as usize], start)?;
            }
            // Bytes of the page past its data are zeros: clear what an extent
            // below the page may have written there.
            let page_end = (start + crate::node::PAGE).min(snap.size);
            if page_end > have {
                pwrite_all(&vec![0u8; (page_end - have) as usize], have)?;
            }
        }
        let fd = OwnedFd::from(file);
        seal(&fd).map_err(os_err("sealing the memfd"))?;
        Ok(fd)
    }
}
