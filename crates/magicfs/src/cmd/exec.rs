//! `magicfs exec`: run a program stored in MagicFS. The file becomes a
//! sealed memfd (from the store directly, or read through a mount) and is
//! started with `fexecve`: arguments, environment, standard streams and the
//! exit status are the program's own, and nothing touches a disk.

use crate::cli::ExecArgs;
use anyhow::{anyhow, bail, Context};
use magicfs_core::{memfd, Fs, FsConfig};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;

/// Copies a host file into a sealed memfd.
fn memfd_of_host_file(path: &str) -> anyhow::Result<OwnedFd> {
    let mut src = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    let mode = src.metadata()?.permissions().mode();
    if mode & 0o111 == 0 {
        bail!("{path} is not executable (mode {:o}); chmod +x it first", mode & 0o7777);
    }
    let mut dst = std::fs::File::from(memfd::create("magicfs-exec").context("memfd_create")?);
    std::io::copy(&mut src, &mut dst).with_context(|| format!("reading {path}"))?;
    let fd = OwnedFd::from(dst);
    memfd::seal(&fd).context("sealing the memfd")?;
    Ok(fd)
}

/// Exports a file of an unmounted store.
fn memfd_of_stored_file(dir: &std::path::Path, path: &str) -> anyhow::Result<OwnedFd> {
    let fs = Fs::open_store(dir, false, FsConfig::default()).map_err(|e| anyhow!("{e}"))?;
    let attr = fs.resolve(path).map_err(|e| anyhow!("{path}: {e}"))?;
    if attr.perm & 0o111 == 0 {
        bail!("{path} is not executable (mode {:o}); chmod +x it first", attr.perm);
    }
    fs.export_memfd(attr.ino).map_err(|e| anyhow!("{path}: {e}"))
}

pub fn run(a: ExecArgs) -> anyhow::Result<i32> {
    let fd = match &a.data {
        Some(dir) => memfd_of_stored_file(dir, &a.path)?,
        None => memfd_of_host_file(&a.path)?,
    };
    // An interpreter named by `#!` opens the script as /dev/fd/N: keep it open across exec.
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty()).context("clearing close-on-exec")?;
    let argv: Vec<CString> = std::iter::once(a.path.clone())
        .chain(a.args.iter().cloned())
        .map(CString::new)
        .collect::<Result<_, _>>()
        .context("arguments may not contain NUL bytes")?;
    let envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // fexecve stays with libc: rustix offers exec only in its low-level runtime module.
    // SAFETY: NUL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::fexecve(fd.as_raw_fd(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOEXEC) => bail!("{} is not a program: no ELF header and no #! line", a.path),
        Some(libc::ENOENT) => bail!("{}: its #! interpreter was not found", a.path),
        _ => bail!("cannot run {}: {e}", a.path),
    }
}
