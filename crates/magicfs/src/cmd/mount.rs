//! `magicfs mount`: open the store, mount, serve until told to stop, then
//! unmount with every file committed and the store checkpointed.

use crate::cli::MountArgs;
use anyhow::{anyhow, bail, Context};
use magicfs_core::{Codec, Fs, FsConfig};
use magicfs_fuse::{mount_with_chat, MountOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The default data directory: `$XDG_DATA_HOME/magicfs/default`.
pub fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp")).join(".local/share")
    });
    base.join("magicfs/default")
}

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

/// Folds `-o` options (fstab style) into the arguments; returns the kernel
/// mount flags among them (`ro`, `nosuid`, `nodiratime`, …).
fn apply_options(a: &mut MountArgs) -> anyhow::Result<Vec<String>> {
    let mut flags = Vec::new();
    for o in std::mem::take(&mut a.options) {
        let (k, v) = o.split_once('=').map(|(k, v)| (k, Some(v))).unwrap_or((o.as_str(), None));
        match (k, v) {
            ("allow_other", None) => a.allow_other = true,
            ("memory", None) => a.store.memory = true,
            ("data", Some(d)) => a.store.data = Some(PathBuf::from(d)),
            ("codec", Some(c)) => a.codec = c.to_string(),
            ("threads", Some(n)) => a.threads = n.parse().context("threads= takes a number")?,
            ("watch", Some(d)) => a.search.watch.push(PathBuf::from(d)),
            ("nosearch", None) => a.search.no_search = true,
            (f, None) if magicfs_fuse::is_kernel_flag(f) => flags.push(f.to_string()),
            // Options for mount(8) itself, and the kernel's default atime rule.
            ("defaults" | "auto" | "noauto" | "user" | "users" | "nofail" | "_netdev", None) => {}
            _ => bail!(
                "unknown mount option '{o}' (known: allow_other, memory, data=DIR, codec=NAME, threads=N, watch=DIR, \
                 nosearch, and the kernel flags ro, rw, suid, nosuid, dev, nodev, exec, noexec, atime, noatime, \
                 nodiratime, relatime, strictatime, sync, async, dirsync)"
            ),
        }
    }
    Ok(flags)
}

pub fn run(mut a: MountArgs) -> anyhow::Result<i32> {
    let flags = apply_options(&mut a)?;
    let read_only = flags.iter().rev().find(|f| *f == "ro" || *f == "rw").is_some_and(|f| f == "ro");
    let codec = Codec::parse(&a.codec).ok_or_else(|| anyhow!("unknown codec '{}': use zstd, gzip or none", a.codec))?;
    if !a.mountpoint.is_dir() {
        bail!(
            "mount point {} does not exist or is not a directory; create it first (mkdir -p)",
            a.mountpoint.display()
        );
    }
    if is_magicfs_mount(&a.mountpoint) {
        bail!("{} is already a MagicFS mount; unmount it first (fusermount3 -u)", a.mountpoint.display());
    }
    if a.daemon {
        return daemonize(&a);
    }
    let (atime, dir_atime) = magicfs_fuse::atime_rule(&flags);
    let cfg = FsConfig { codec, read_only, atime, dir_atime, ..FsConfig::default() };
    let started = Instant::now();
    let (fs, what) = if a.store.memory {
        (Fs::memory(cfg), "memory".to_string())
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
        (fs, dir.display().to_string())
    };
    let fs = Arc::new(fs);
    let data_dir = if a.store.memory { None } else { Some(a.store.data.clone().unwrap_or_else(default_data_dir)) };
    let index = super::search::start_index(&a.search, data_dir.clone(), &fs)?;
    // One model per daemon, shared by chat sessions and generated content;
    // opened at start when sessions are answered, else on first generation.
    let llm = super::generation::SharedLlm::new(a.llm.config()?);
    let chat = if a.llm.no_chat { None } else { super::chat::start_sessions_on(&fs, &a.llm, llm.open())? };
    let engine = super::generation::engine(fs.clone(), &a.gen, Some(llm.handle()))?;
    let opts = MountOptions {
        allow_other: a.allow_other,
        threads: a.threads,
        io_uring: !a.no_io_uring,
        search: index.clone(),
        generation: Some(engine),
        // The source in the mount table is the data directory, as for a disk.
        fsname: data_dir.as_ref().map_or("memory".into(), |d| d.display().to_string()).replace(',', "_"),
        flags,
        ..MountOptions::default()
    };
    // Handlers go in before the mount is visible: a signal that arrives as soon
    // as it is (a script that mounts and at once unmounts) still unmounts cleanly.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handlers")?;
    }
    let mut mounted = mount_with_chat(fs.clone(), &a.mountpoint, &opts, chat.clone()).map_err(|e| {
        anyhow!(
            "cannot mount on {}: {e} (is /dev/fuse present and fusermount3 installed? `apt-get install fuse3`)",
            a.mountpoint.display()
        )
    })?;
    eprintln!(
        "magicfs: mounted {} (store: {what}, codec {}, loaded in {} ms); Ctrl-C or `fusermount3 -u {}` to unmount",
        a.mountpoint.display(),
        codec.name(),
        started.elapsed().as_millis(),
        a.mountpoint.display()
    );
    while !stop.load(Ordering::Relaxed) && !mounted.has_ended() {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("magicfs: unmounting {}", a.mountpoint.display());
    if let Some(c) = &chat {
        c.shutdown();
    }
    if let Err(e) = mounted.unmount() {
        log::warn!("unmount: {e}");
    }
    if let Some(i) = &index {
        if let Err(e) = i.shutdown() {
            log::warn!("{e}");
        }
    }
    fs.shutdown().map_err(|e| anyhow!("flushing the store at exit: {e}"))?;
    drop(fs);
    eprintln!("magicfs: unmounted cleanly");
    Ok(0)
}

/// Re-runs this command in the foreground as a detached child and waits
/// until the mount is up (or the child fails).
fn daemonize(a: &MountArgs) -> anyhow::Result<i32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find the magicfs executable")?;
    let args: Vec<String> = std::env::args().skip(1).filter(|x| x != "--daemon").collect();
    let log = a.log.clone().unwrap_or_else(|| match &a.store.data {
        Some(d) if !a.store.memory => d.with_extension("log"),
        _ => PathBuf::from(format!("/tmp/magicfs-{}.log", std::process::id())),
    });
    let out = std::fs::File::create(&log).with_context(|| format!("cannot create log file {}", log.display()))?;
    let mut child = std::process::Command::new(exe)
        .args(args)
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
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("the background mount exited ({status}):\n{}", tail.trim());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the mount did not come up within 60 s; see {}", log.display())
}
