//! `magicfs export` and `magicfs import`: a whole tree as one JSON document.
//!
//! A path holding a MagicFS store is opened as a store (it must not be
//! mounted); anything else is a host directory, a MagicFS mount point
//! included.

use crate::cli::{ExportArgs, ImportArgs};
use crate::progress::{self, Reading, Writing};
use anyhow::{anyhow, bail, Context};
use magicfs_snapshot::{ensure_empty, FsTree, HostTree, SnapshotResult, Summary, Tree};
use magicfs_store::is_store;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The tree on one side of an export or import.
enum Side {
    Store(Box<FsTree>),
    Host(HostTree),
}

impl Side {
    /// A store when `path` holds one, else a host directory.
    fn open(path: &Path) -> SnapshotResult<Side> {
        Ok(if is_store(path) {
            Side::Store(Box::new(FsTree::open(path, false)?))
        } else {
            Side::Host(HostTree::open(path)?)
        })
    }

    fn tree(&mut self) -> &mut dyn Tree {
        match self {
            Side::Store(t) => t.as_mut(),
            Side::Host(t) => t,
        }
    }

    /// Commits and closes a store.
    fn close(self) -> SnapshotResult<()> {
        match self {
            Side::Store(t) => t.close(),
            Side::Host(_) => Ok(()),
        }
    }
}

fn report(what: &str, s: &Summary) {
    eprintln!(
        "magicfs {what}: {} entries ({} directories, {} files, {} hard links), {} bytes of content",
        s.entries, s.dirs, s.files, s.links, s.bytes
    );
}

pub fn export(a: ExportArgs) -> anyhow::Result<i32> {
    let mut side = Side::open(&a.source)?;
    let bar = progress::bytes_spinner(format!("export {}", a.source.display()));
    let summary = match &a.output {
        Some(path) => {
            let mut f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let written = magicfs_snapshot::export(side.tree(), &mut Writing::new(&mut f, bar.clone()))
                .and_then(|s| f.sync_all().map(|()| s).map_err(|e| magicfs_snapshot::SnapshotError::io("syncing", e)));
            if written.is_err() {
                let _ = std::fs::remove_file(path);
            }
            written?
        }
        None => {
            let stdout = io::stdout();
            let mut out = Writing::new(stdout.lock(), bar.clone());
            let s = magicfs_snapshot::export(side.tree(), &mut out)?;
            out.flush().context("writing the snapshot")?;
            s
        }
    };
    bar.finish_and_clear();
    side.close()?;
    report("export", &summary);
    Ok(0)
}

/// The document to import, as a file that can be read twice: standard
/// input (`-`) is first copied to an unnamed temporary file.
fn open_input(path: &Path) -> anyhow::Result<File> {
    if path != Path::new("-") {
        return File::open(path).with_context(|| format!("cannot open {}", path.display()));
    }
    let dir = std::env::temp_dir();
    let mut f = match OpenOptions::new().read(true).write(true).custom_flags(libc::O_TMPFILE).mode(0o600).open(&dir) {
        Ok(f) => f,
        Err(_) => {
            let named = dir.join(format!("magicfs-import-{}.json", std::process::id()));
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&named)
                .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
            let _ = std::fs::remove_file(&named);
            f
        }
    };
    io::copy(&mut io::stdin().lock(), &mut f).context("copying standard input to a temporary file")?;
    f.seek(SeekFrom::Start(0)).context("rewinding the temporary file")?;
    Ok(f)
}

fn is_empty_dir(path: &Path) -> anyhow::Result<bool> {
    Ok(std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?.next().is_none())
}

pub fn import(a: ImportArgs) -> anyhow::Result<i32> {
    let dest = &a.dest;
    let shown = dest.display().to_string();
    let mut input = open_input(&a.input)?;
    // An existing destination is opened and checked before anything is read;
    // a new one is created only once the document has passed the check.
    let mut existing = None;
    if is_store(dest) {
        let mut side = Side::Store(Box::new(FsTree::open(dest, false)?));
        ensure_empty(side.tree(), &shown)?;
        existing = Some(side);
    } else if dest.exists() && !dest.is_dir() {
        bail!("{shown} exists and is not a directory");
    } else if a.new_store {
        if dest.is_dir() && !is_empty_dir(dest)? {
            bail!("{shown} is not empty; --new-store needs a missing or empty directory");
        }
    } else if dest.is_dir() {
        let mut side = Side::Host(HostTree::open(dest)?);
        ensure_empty(side.tree(), &shown)?;
        existing = Some(side);
    }
    let len = input.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress::bytes(format!("import {shown}: checking"), len);
    magicfs_snapshot::validate(Reading::new(&mut input, bar.clone()))
        .map_err(|e| anyhow!("{e}; nothing was written"))?;
    bar.finish_and_clear();
    input.seek(SeekFrom::Start(0)).context("rewinding the snapshot")?;
    let mut side = match existing {
        Some(side) => side,
        None if a.new_store => Side::Store(Box::new(FsTree::open(dest, true)?)),
        None => Side::Host(HostTree::create(dest)?),
    };
    let bar = progress::bytes(format!("import {shown}"), len);
    let summary = magicfs_snapshot::apply(Reading::new(input, bar.clone()), side.tree())?;
    bar.finish_and_clear();
    side.close()?;
    report("import", &summary);
    Ok(0)
}
