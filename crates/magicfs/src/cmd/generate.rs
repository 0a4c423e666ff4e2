//! `magicfs generate`: trees from one sentence and regeneration, asked of
//! the mounted daemon through command attributes (`user.magic.generate` on
//! a directory, `user.magic.regenerate` on a file), so the daemon's one
//! loaded model does the work. Progress comes from `.magic/status`.

use super::mount::is_magicfs_mount;
use super::xattr::{get as getxattr, set as setxattr};
use crate::cli::GenerateArgs;
use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        crate::exit::usage_bail!("the prompt is empty: say what the tree is about, e.g. \"a CLI todo app in Python\"");
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
/// daemon reports about `rel` in `.magic/status` meanwhile.
fn with_progress<T: Send + 'static>(mount: &Path, rel: &str, what: &str, op: impl FnOnce() -> T + Send + 'static) -> T {
    let bar = crate::progress::spinner(format!("{what} {rel}"));
    let t = std::thread::spawn(op);
    while !t.is_finished() {
        std::thread::sleep(Duration::from_millis(250));
        if bar.is_hidden() {
            continue;
        }
        let st = status(mount);
        let bytes = st["running"]
            .as_array()
            .and_then(|r| r.iter().find(|j| j["path"] == rel))
            .and_then(|j| j["bytes"].as_u64())
            .unwrap_or(0);
        bar.set_message(format!("{what} {rel}: {bytes} bytes so far"));
    }
    bar.finish_and_clear();
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
    let bar = crate::progress::count(format!("generate {}", dir.display()), n as u64, "files");
    for f in &files {
        let name = f.strip_prefix(dir).unwrap_or(f).display().to_string();
        let frel = format!("{}/{}", rel.trim_end_matches('/'), name);
        let p = f.clone();
        let r = with_progress(&mount, &frel, "writing", move || std::fs::read(&p));
        bar.inc(1);
        let line = match r {
            Ok(b) => format!("  {name}: {} bytes", b.len()),
            Err(e) => {
                failed += 1;
                format!("  {name}: {}", explain(e, &mount, &frel))
            }
        };
        crate::progress::suspend(|| eprintln!("{line}"));
    }
    bar.finish_and_clear();
    if failed > 0 {
        bail!("{failed} of {n} file(s) could not be generated; they stay empty and are tried again on their next read");
    }
    Ok(0)
}
