//! `magicfs mount`: open the store, mount, serve until told to stop, then
//! unmount with every file committed and the store checkpointed.

use crate::cli::MountArgs;
use crate::exit::usage_bail;
use anyhow::{anyhow, bail, Context};
use magicfs_core::{Codec, Fs, FsConfig};
use magicfs_fuse::{mount_with_chat, MountOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The default data directory: `$XDG_DATA_HOME/magicfs/default`.
pub use magicfs_types::dirs::default_store as default_data_dir;

/// True when `path` is a mount point of a MagicFS filesystem.
pub fn is_magicfs_mount(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else { return false };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        // The field after "-": the filesystem type (the source is the data
        // directory, so the control directory tells MagicFS apart).
        let fstype = f.iter().skip_while(|x| **x != "-").nth(1).copied().unwrap_or("");
        f.get(4).is_some_and(|p| Path::new(&p.replace("\\040", " ")) == canon)
            && fstype.starts_with("fuse")
            && canon.join(".magic/status").is_file()
    })
}

/// The `-o` options left once those naming a flag became flags (see
/// `config::expand_mount_options`): returns the kernel mount flags among
/// them (`ro`, `nosuid`, `nodiratime`, …); mount(8)'s own need no action.
fn apply_options(a: &mut MountArgs) -> anyhow::Result<Vec<String>> {
    let mut flags = Vec::new();
    for o in std::mem::take(&mut a.options) {
        let (k, v) = o.split_once('=').map(|(k, v)| (k, Some(v))).unwrap_or((o.as_str(), None));
        match (k, v) {
            (f, None) if magicfs_fuse::is_kernel_flag(f) => flags.push(f.to_string()),
            // Options for mount(8) and systemd themselves.
            ("defaults" | "auto" | "noauto" | "user" | "users" | "owner" | "group" | "nofail" | "_netdev", None) => {}
            (k, _) if k.starts_with("x-") || k == "comment" => {}
            _ => usage_bail!(
                "unknown mount option '{o}': -o takes every flag of `magicfs mount` as NAME or NAME=VALUE \
                 (allow_other, data=DIR, model-path=FILE, watch=DIR, ...; see magicfs mount --help) \
                 and the kernel flags ro, rw, suid, nosuid, dev, nodev, exec, noexec, atime, noatime, \
                 nodiratime, relatime, strictatime, sync, async, dirsync"
            ),
        }
    }
    Ok(flags)
}

/// Where `--daemon` appends its log when `--log` is not given: the data
/// directory's `magicfs.log`, or `$XDG_STATE_HOME/magicfs/magicfs.log`
/// for a mount in memory or of a cluster volume.
pub fn default_log(a: &MountArgs) -> PathBuf {
    if a.store.memory || a.store.meta.is_some() {
        magicfs_types::dirs::state_dir().join("magicfs.log")
    } else {
        a.store.data.clone().unwrap_or_else(default_data_dir).join("magicfs.log")
    }
}

/// Opens `path` for appending (creating it and its directory).
fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))
}

pub fn run(mut a: MountArgs) -> anyhow::Result<i32> {
    let flags = apply_options(&mut a)?;
    let read_only = flags.iter().rev().find(|f| *f == "ro" || *f == "rw").is_some_and(|f| f == "ro");
    let Some(codec) = Codec::parse(&a.codec) else {
        usage_bail!("unknown codec '{}': use zstd, gzip or none", a.codec)
    };
    if !a.mountpoint.is_dir() {
        bail!(
            "mount point {} does not exist or is not a directory; create it first (mkdir -p)",
            a.mountpoint.display()
        );
    }
    if is_magicfs_mount(&a.mountpoint) {
        bail!("{} is already a MagicFS mount; unmount it first (fusermount3 -u)", a.mountpoint.display());
    }
    if a.daemon && !a.foreground {
        return daemonize(&a);
    }
    if let Some(log) = &a.log {
        // Everything this process writes on standard error (logs, llama.cpp) goes there.
        rustix::stdio::dup2_stderr(open_log(log)?).context("redirecting standard error to the log")?;
    }
    tracing::info!(
        "magicfs {} starting: mount {} (pid {})",
        env!("CARGO_PKG_VERSION"),
        a.mountpoint.display(),
        std::process::id()
    );
    let (atime, dir_atime) = magicfs_fuse::atime_rule(&flags);
    let cfg = FsConfig { codec, read_only, atime, dir_atime, ..FsConfig::default() };
    let started = Instant::now();
    // A cluster volume's database also holds its search index.
    let mut volume_db = None;
    // `source` is what the mount table shows (readable by anyone: never a
    // password), `what` what the start-up line names.
    let (fs, what, source) = if a.store.memory {
        (Fs::memory(cfg), "memory".to_string(), "memory".to_string())
    } else if let Some(meta) = &a.store.meta {
        let (store, pg) = super::volume::open_volume(meta, a.store.cache_dir.as_deref())?;
        volume_db = Some(pg);
        let what = store.info().url.unwrap_or_default();
        let fs =
            Fs::load_with(store, cfg.for_cluster(), super::volume::cluster_config()).map_err(|e| anyhow!("{e}"))?;
        (fs, what, super::volume::shown_meta(meta))
    } else {
        let dir = a.store.data.clone().unwrap_or_else(default_data_dir);
        // A daemon just unmounted from this store may still be closing it:
        // give it a few seconds to let go of the lock.
        let deadline = Instant::now() + Duration::from_secs(10);
        let fs = loop {
            match Fs::open_store(&dir, true, cfg.clone()) {
                Err(magicfs_store::StoreError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                r => break r.map_err(|e| anyhow!("{e}"))?,
            }
        };
        (fs, dir.display().to_string(), dir.display().to_string())
    };
    let fs = Arc::new(fs);
    // A cluster mount hears of other mounts' changes, heartbeats and cleans.
    fs.start_background();
    let data_dir = match (&a.store.data, a.store.memory || a.store.meta.is_some()) {
        (_, true) => None,
        (d, false) => Some(d.clone().unwrap_or_else(default_data_dir)),
    };
    let shared_index = volume_db.map(|pg| (pg, a.store.cache_dir.clone()));
    let index = super::search::start_index(&a.search, data_dir.clone(), &fs, shared_index)?;
    // One model per daemon, shared by chat sessions and generated content;
    // opened at start when sessions are answered, else on first generation.
    let llm_cfg = a.llm.config()?;
    let sampling = llm_cfg.sampling.clone();
    let llm = magicfs_llm::SharedLlm::new(llm_cfg);
    let chat = if a.llm.no_chat { None } else { super::chat::start_sessions_on(&fs, &a.llm, llm.open())? };
    let engine = super::generation::engine(fs.clone(), &a.gen, Some(llm.handle()), &sampling)?;
    let opts = MountOptions {
        allow_other: a.allow_other,
        threads: a.threads,
        io_uring: !a.no_io_uring,
        search: index.clone(),
        generation: Some(engine),
        // The source in the mount table is the data directory, as for a
        // disk, or the volume's database URL without its password.
        fsname: source.replace(',', "_"),
        flags,
        ..MountOptions::default()
    };
    // Handlers go in before the mount is visible: a signal that arrives as soon
    // as it is (a script that mounts and at once unmounts) still unmounts cleanly.
    let stop = Arc::new(AtomicBool::new(false));
    // A second Ctrl-C while the unmount is under way (flushing to a
    // database or store that is down can take the retry budget) ends the
    // process at once, with status 1. SIGTERM and SIGHUP only ever ask for
    // the clean unmount.
    signal_hook::flag::register_conditional_shutdown(signal_hook::consts::SIGINT, 1, stop.clone())
        .context("cannot install signal handlers")?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handlers")?;
    }
    let mut mounted = mount_with_chat(fs.clone(), &a.mountpoint, &opts, chat.clone()).map_err(|e| {
        anyhow!(
            "cannot mount on {}: {e} (is /dev/fuse present and fusermount3 installed? `apt-get install fuse3`)",
            a.mountpoint.display()
        )
    })?;
    tracing::info!(
        "mounted {} (store: {what}, codec {}, loaded in {} ms); Ctrl-C or `fusermount3 -u {}` to unmount",
        a.mountpoint.display(),
        codec.name(),
        started.elapsed().as_millis(),
        a.mountpoint.display()
    );
    super::service::ready(&format!("mounted {} (store: {what})", a.mountpoint.display()));
    while !stop.load(Ordering::Relaxed) && !mounted.has_ended() {
        std::thread::sleep(Duration::from_millis(50));
    }
    super::service::stopping(&format!("unmounting {}", a.mountpoint.display()));
    tracing::info!("unmounting {} (a second Ctrl-C exits at once, without flushing)", a.mountpoint.display());
    if let Some(c) = &chat {
        c.shutdown();
    }
    if let Err(e) = mounted.unmount() {
        tracing::warn!("unmount: {e}");
    }
    if let Some(i) = &index {
        if let Err(e) = i.shutdown() {
            tracing::warn!("{e}");
        }
    }
    fs.shutdown().map_err(|e| anyhow!("flushing the store at exit: {e}"))?;
    drop(fs);
    tracing::info!("unmounted {} cleanly", a.mountpoint.display());
    Ok(0)
}

/// Re-runs this command in the foreground as a detached child, its standard
/// output and error appended to the log, and waits until the mount is up
/// (or the child fails).
fn daemonize(a: &MountArgs) -> anyhow::Result<i32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find the magicfs executable")?;
    let log = a.log.clone().unwrap_or_else(|| default_log(a));
    if !a.store.memory && a.store.meta.is_none() && a.log.is_none() {
        // The log lives in the data directory: make it a store first, so
        // the store does not find a directory that is not empty.
        let dir = a.store.data.clone().unwrap_or_else(default_data_dir);
        if !magicfs_store::is_store(&dir) {
            magicfs_store::Store::open(&dir, true).map_err(|e| anyhow!("{e}"))?;
        }
    }
    let out = open_log(&log)?;
    let start = out.metadata().map(|m| m.len()).unwrap_or(0);
    let mut child = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .arg("--foreground")
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .context("cannot start the background process")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if is_magicfs_mount(&a.mountpoint) {
            println!(
                "magicfs: mounted {} in the background (pid {}, log {})",
                a.mountpoint.display(),
                child.id(),
                log.display()
            );
            return Ok(0);
        }
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read(&log).unwrap_or_default();
            let tail = String::from_utf8_lossy(text.get(start as usize..).unwrap_or(&[]));
            bail!("the background mount exited ({status}):\n{}", tail.trim());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the mount did not come up within 60 s; see {}", log.display())
}
