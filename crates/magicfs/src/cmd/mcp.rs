//! `magicfs mcp`: a mount or an unmounted store served to AI agents over the
//! Model Context Protocol (see the `magicfs-mcp` crate), on stdio or on
//! streamable HTTP behind a bearer token.

use crate::cli::{McpArgs, VolumeLimitArgs};
use anyhow::{anyhow, bail, Context};
use magicfs_core::{Fs, FsConfig};
use magicfs_volume::{Backend, Limits, MountBackend, StoreBackend, StoreParts, Volume};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

/// The limits the flags ask for.
pub fn limits(a: &VolumeLimitArgs) -> anyhow::Result<Limits> {
    if a.max_read == 0 || a.max_write == 0 {
        bail!("--max-read and --max-write must be at least 1 byte");
    }
    Ok(Limits { max_read: a.max_read, max_write: a.max_write, read_only: a.read_only, ..Limits::default() })
}

/// A mount point (or any directory) as a volume backend.
pub fn mount_backend(dir: &Path) -> anyhow::Result<MountBackend> {
    let b = MountBackend::open(dir).map_err(|e| anyhow!("{e}"))?;
    if !b.is_magicfs() {
        eprintln!(
            "magicfs: {} is not a MagicFS mount: files and compute only (no search, chat or generation)",
            dir.display()
        );
    }
    Ok(b)
}

/// Opens an unmounted store with the engines a mount would run over it.
fn store_backend(dir: &Path, a: &McpArgs) -> anyhow::Result<StoreBackend> {
    let fs = Fs::open_store(dir, false, FsConfig::default()).map_err(|e| {
        anyhow!("cannot open the store in {}: {e} (is it mounted? then give the mount point instead)", dir.display())
    })?;
    let fs = Arc::new(fs);
    let index = super::search::start_index(&a.search, Some(dir.to_path_buf()), &fs, None)?;
    let llm_cfg = a.llm.config()?;
    let sampling = llm_cfg.sampling.clone();
    let llm = magicfs_llm::SharedLlm::new(llm_cfg);
    let sessions = if a.llm.no_chat { None } else { super::chat::start_sessions_on(&fs, &a.llm, llm.open())? };
    let engine = super::generation::engine(fs.clone(), &a.gen, Some(llm.handle()), &sampling)?;
    Ok(StoreBackend::new(StoreParts { fs, data_dir: dir.display().to_string(), index, sessions, engine: Some(engine) }))
}

pub fn run(a: McpArgs) -> anyhow::Result<i32> {
    let limits = limits(&a.limits)?;
    let token = a.token.clone().filter(|t| !t.is_empty());
    if a.http.is_some() && token.is_none() {
        bail!(
            "--http needs a bearer token: give --token T or set MAGICFS_TOKEN (clients send Authorization: Bearer T)"
        );
    }
    let (backend, store): (Arc<dyn Backend>, Option<Arc<StoreBackend>>) = match (&a.mountpoint, &a.data) {
        (Some(m), _) => (Arc::new(mount_backend(m)?), None),
        (None, Some(d)) => {
            let s = Arc::new(store_backend(d, &a)?);
            (s.clone(), Some(s))
        }
        (None, None) => bail!("give a MagicFS mount point or --data DIR (an unmounted store)"),
    };
    let vol = Arc::new(Volume::new(backend, limits));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("magicfs-mcp")
        .build()
        .context("cannot start the server's runtime")?;
    let served = match a.http {
        None => {
            // The protocol owns standard output: anything else printed (a
            // library's stray line) goes to standard error instead.
            // SAFETY: dup/dup2 on the standard descriptors.
            let out = unsafe {
                let fd = libc::dup(1);
                if fd < 0 || libc::dup2(2, 1) < 0 {
                    bail!("cannot set up standard output: {}", std::io::Error::last_os_error());
                }
                OwnedFd::from_raw_fd(fd)
            };
            eprintln!("magicfs mcp: serving {} over stdio", vol.backend().root());
            runtime.block_on(async move {
                let output = tokio::fs::File::from_std(std::fs::File::from(out));
                magicfs_mcp::serve_stdio(vol, tokio::io::stdin(), output).await
            })
        }
        Some(addr) => {
            let token = token.unwrap_or_default();
            runtime.block_on(async move {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                let shutdown = async move {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                };
                let root = vol.backend().root();
                magicfs_mcp::serve_http(
                    vol,
                    addr,
                    &token,
                    |bound| eprintln!("magicfs mcp: serving {root} on http://{bound}{}", magicfs_mcp::HTTP_PATH),
                    shutdown,
                )
                .await
            })
        }
    };
    drop(runtime);
    if let Some(s) = store {
        s.shutdown().map_err(|e| anyhow!("{e}"))?;
    }
    served.context("the MCP server stopped")?;
    eprintln!("magicfs mcp: stopped");
    Ok(0)
}
