//! `magicfs generate`: trees from one sentence and regeneration, asked of
//! the mounted daemon through command attributes (`user.magic.generate` on
//! a directory, `user.magic.regenerate` on a file), so the daemon's one
//! loaded model does the work. Progress comes from `.magic/status`.

use super::mount::is_magicfs_mount;
use crate::cli::GenerateArgs;
use anyhow::{anyhow, bail, Context};
use std::ffi::CString;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn run(a: GenerateArgs) -> anyhow::Result<i32> {
    if a.schema {
        println!("{}", serde_json::to_string_pretty(&magicfs_gen::tree::schema())?);
        return Ok(0);
    }
    if let Some(path) = a.again {
        return again(&path);
    }
    let (Some(prompt), Some(dir)) = (a.prompt, a.dir) else {
        bail!("usage: magicfs generate \"<prompt>\" <dir> [--eager] | --again PATH | --schema");
    };
    if prompt.trim().is_empty() {
        bail!("the prompt is empty: say what the tree is about, e.g. \"a CLI todo app in Python\"");
    }
    tree(&prompt, &dir, a.eager)
}

/// The MagicFS mount holding `path`, and `path` relative to it (`/a/b`).
fn on_mount(path: &Path) -> anyhow::Result<(PathBuf, String)> {
    let canon = path.canonicalize().with_context(|| format!("{} does not exist", path.display()))?;
    for anc in canon.ancestors() {
        if is_magicfs_mount(anc) {
            let rel = canon.strip_prefix(anc).unwrap_or(Path::new(""));
            return Ok((anc.to_path_buf(), format!("/{}", rel.display())));
        }
    }
    bail!(
        "{} is not on a MagicFS mount: generated files are filled by the mounted daemon; \
         mount one first (`magicfs mount DIR`) and generate inside it",
        path.display()
    )
}

fn setxattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let n = CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn getxattr(path: &Path, name: &str) -> Option<String> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn status(mount: &Path) -> serde_json::Value {
    std::fs::read(mount.join(".magic/status"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|v| v["generation"].clone())
        .unwrap_or_default()
}

/// The daemon's last error about `rel`, if any.
fn last_error(mount: &Path, rel: &str) -> Option<String> {
    let st = status(mount);
    st["recent_errors"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["path"] == rel)
        .and_then(|e| e["error"].as_str())
        .map(String::from)
}

/// Runs `op` (a blocking call into the daemon) on a thread, showing what the
/// daemon reports about `rel` meanwhile.
fn with_progress<T: Send + 'static>(mount: &Path, rel: &str, what: &str, op: impl FnOnce() -> T + Send + 'static) -> T {
    let tty = std::io::stderr().is_terminal();
    let t = std::thread::spawn(op);
    let start = Instant::now();
    let mut last = Instant::now();
    let spin = ['|', '/', '-', '\\'];
    let mut i = 0;
    while !t.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        let report = tty || last.elapsed() >= Duration::from_secs(10);
        if !report {
            continue;
        }
        last = Instant::now();
        let st = status(mount);
        let bytes = st["running"]
            .as_array()
            .and_then(|r| r.iter().find(|j| j["path"] == rel))
            .and_then(|j| j["bytes"].as_u64())
            .unwrap_or(0);
        let line =
            format!("{} {what} {rel}: {:.1} s, {bytes} bytes so far", spin[i % 4], start.elapsed().as_secs_f64());
        i += 1;
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
    if tty {
        eprint!("\r\x1b[2K");
    }
    match t.join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn explain(e: std::io::Error, mount: &Path, rel: &str) -> anyhow::Error {
    match last_error(mount, rel) {
        Some(m) => anyhow!("{rel}: {m}"),
        None => anyhow!("{rel}: {e}"),
    }
}

fn again(path: &Path) -> anyhow::Result<i32> {
    let (mount, rel) = on_mount(path)?;
    if path.is_dir() {
        bail!("{} is a directory: --again regenerates one file", path.display());
    }
    let p = path.to_path_buf();
    let r = with_progress(&mount, &rel, "regenerating", move || setxattr(&p, "user.magic.regenerate", b"1"));
    if let Err(e) = r {
        if e.raw_os_error() == Some(libc::ENODATA) {
            bail!(
                "{} has no prompt or generator (own or inherited); set one first: setfattr -n user.magic.prompt -v TEXT {}",
                path.display(),
                path.display()
            );
        }
        if e.raw_os_error() == Some(libc::EBUSY) {
            bail!("{} is being generated right now; try again when it is done", path.display());
        }
        return Err(explain(e, &mount, &rel));
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}: {size} bytes by {} ({}), {}",
        path.display(),
        getxattr(path, "user.magic.provenance.generator").unwrap_or_default(),
        getxattr(path, "user.magic.provenance.model").unwrap_or_default(),
        getxattr(path, "user.magic.provenance.time").unwrap_or_default()
    );
    Ok(0)
}

/// Empty files under `dir` that carry a prompt, in walk order.
fn lazy_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            lazy_files(&p, out);
        } else if m.is_file() && m.len() == 0 && getxattr(&p, "user.magic.prompt").is_some() {
            out.push(p);
        }
    }
}

fn tree(prompt: &str, dir: &Path, eager: bool) -> anyhow::Result<i32> {
    if !dir.exists() {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        on_mount(parent)?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let (mount, rel) = on_mount(dir)?;
    let (d, v) = (dir.to_path_buf(), prompt.as_bytes().to_vec());
    let r = with_progress(&mount, &rel, "planning", move || setxattr(&d, "user.magic.generate", &v));
    r.map_err(|e| explain(e, &mount, &rel))?;
    let mut files = Vec::new();
    lazy_files(dir, &mut files);
    println!("{}: {} file(s) planned", dir.display(), files.len());
    for f in &files {
        println!(
            "  {}  ({})",
            f.strip_prefix(dir).unwrap_or(f).display(),
            getxattr(f, "user.magic.prompt").unwrap_or_default()
        );
    }
    if !eager {
        println!("each file is written on its first read (or run again with --eager)");
        return Ok(0);
    }
    let mut failed = 0;
    let n = files.len();
    for (i, f) in files.iter().enumerate() {
        let name = f.strip_prefix(dir).unwrap_or(f).display().to_string();
        let frel = format!("{}/{}", rel.trim_end_matches('/'), name);
        let bar = |done: usize| {
            let w = 24;
            let fill = (done * w).checked_div(n).unwrap_or(w);
            format!("[{}{}] {done}/{n}", "#".repeat(fill), "-".repeat(w - fill))
        };
        eprintln!("{} {name}", bar(i));
        let p = f.clone();
        let r = with_progress(&mount, &frel, "writing", move || std::fs::read(&p));
        match r {
            Ok(b) => eprintln!("{} {name}: {} bytes", bar(i + 1), b.len()),
            Err(e) => {
                failed += 1;
                eprintln!("{} {name}: {}", bar(i + 1), explain(e, &mount, &frel));
            }
        }
    }
    let _ = std::io::stderr().flush();
    if failed > 0 {
        bail!("{failed} of {n} file(s) could not be generated; they stay empty and are tried again on their next read");
    }
    Ok(0)
}
