//! Generated content through a real mount, with generator plugins that are
//! real programs: a file filled on first read and kept (remount included),
//! prompt and generator inheritance, regeneration with new provenance, the
//! live `README.magic` overlay, non-blocking readers, and every way a
//! generator can fail (timeout, garbage, non-zero exit, no model) leaving
//! the file empty and readable again later.

mod common;

use common::{get_xattr, magicfs, scratch, set_xattr, Mount};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn example_plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins/summary.py").canonicalize().unwrap()
}

fn read_errno(p: &Path) -> i32 {
    match std::fs::read(p) {
        Ok(b) => panic!("{} read {} bytes, expected an error", p.display(), b.len()),
        Err(e) => e.raw_os_error().unwrap_or(0),
    }
}

fn last_error(m: &Mount, path: &str) -> String {
    let st = m.status();
    st["generation"]["recent_errors"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["path"] == path)
        .map(|e| e["error"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no error for {path} in {st}"))
}

#[test]
fn exec_plugin_fills_on_first_read_keeps_content_and_regenerates() {
    let tmp = scratch("gen-exec");
    let plugin = format!("summary={}", example_plugin().display());
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&tmp.path().join("data")), &["--plugin", &plugin]);
    let proj = m.path("proj");
    std::fs::create_dir(&proj).unwrap();
    std::fs::write(proj.join("a.txt"), "alpha line\n").unwrap();
    let index = proj.join("INDEX");
    std::fs::write(&index, "").unwrap();
    set_xattr(&index, "user.magic.generator", "summary");
    assert_eq!(std::fs::metadata(&index).unwrap().len(), 0, "stat shows 0 until generated");

    let first = std::fs::read_to_string(&index).unwrap();
    assert!(first.contains("# Index of /proj") && first.contains("- a.txt (11 bytes): alpha line"), "{first}");
    assert_eq!(std::fs::metadata(&index).unwrap().len(), first.len() as u64);
    assert_eq!(get_xattr(&index, "user.magic.provenance.generator").as_deref(), Some("summary"));
    assert!(get_xattr(&index, "user.magic.provenance.model").unwrap().ends_with("summary.py"));
    assert_eq!(get_xattr(&index, "user.magic.provenance.prompt_hash").unwrap().len(), 64);
    let t1 = get_xattr(&index, "user.magic.provenance.time").unwrap();
    assert!(t1.ends_with('Z') && t1.len() == 20, "{t1}");

    // Never silently regenerated: a sibling changes, the content does not.
    std::fs::write(proj.join("a.txt"), "beta line\n").unwrap();
    assert_eq!(std::fs::read_to_string(&index).unwrap(), first);
    m.remount();
    assert_eq!(std::fs::read_to_string(&index).unwrap(), first, "stored like any file");

    // Explicit regeneration replaces the content and the provenance.
    std::thread::sleep(Duration::from_millis(1100));
    let out = magicfs(&["generate", "--again", index.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = std::fs::read_to_string(&index).unwrap();
    assert!(second.contains("- a.txt (10 bytes): beta line"), "{second}");
    assert_ne!(get_xattr(&index, "user.magic.provenance.time").unwrap(), t1);

    // Inheritance: every empty file below a directory naming a generator;
    // `none` opts one out; a prompt on a non-empty file changes nothing.
    let lazy = m.path("proj/lazy");
    std::fs::create_dir(&lazy).unwrap();
    set_xattr(&lazy, "user.magic.generator", "summary");
    set_xattr(&lazy, "user.magic.prompt", "Everything in this folder.");
    std::fs::write(lazy.join("x"), "").unwrap();
    std::fs::write(lazy.join("off"), "").unwrap();
    set_xattr(&lazy.join("off"), "user.magic.generator", "none");
    std::fs::write(lazy.join("kept"), "keep me\n").unwrap();
    set_xattr(&lazy.join("kept"), "user.magic.prompt", "write a poem");
    let x = std::fs::read_to_string(lazy.join("x")).unwrap();
    assert!(x.contains("Everything in this folder.") && x.contains("- kept (8 bytes): keep me"), "{x}");
    assert_eq!(std::fs::read_to_string(lazy.join("off")).unwrap(), "");
    assert_eq!(std::fs::read_to_string(lazy.join("kept")).unwrap(), "keep me\n");
    assert_eq!(get_xattr(&lazy.join("kept"), "user.magic.provenance.time"), None);
    assert!(m.status()["generation"]["generated"].as_u64().unwrap() >= 2);
}

#[test]
fn readme_overlay_is_live_and_not_stored() {
    let tmp = scratch("gen-readme");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&tmp.path().join("data")), &[]);
    let d = m.path("docs");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    set_xattr(&d, "user.magic.generator", "readme");
    set_xattr(&d, "user.magic.prompt", "Project notes.");
    let names: Vec<String> =
        std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.contains(&"README.magic".to_string()), "{names:?}");
    assert!(!std::fs::read_to_string(d.join("README.magic")).unwrap().contains("fresh.txt"));
    std::fs::write(d.join("sub/fresh.txt"), "12345").unwrap();
    let r = std::fs::read_to_string(d.join("README.magic")).unwrap();
    assert!(r.starts_with("# docs\n\nProject notes."), "{r}");
    assert!(r.contains("sub/\n") && r.contains("    fresh.txt  (5 B)"), "{r}");
    assert_eq!(std::fs::metadata(d.join("README.magic")).unwrap().len(), r.len() as u64);
    let e = std::fs::OpenOptions::new().write(true).open(d.join("README.magic")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    // Only the real file is stored.
    assert_eq!(m.status()["files"], 1);
    // Other directories have no overlay.
    assert!(!m.path("README.magic").exists());
    m.remount();
    assert!(std::fs::read_to_string(d.join("README.magic")).unwrap().contains("fresh.txt"));
    assert_eq!(m.status()["files"], 1);
}

#[test]
fn failing_generators_leave_files_empty_and_readable_later() {
    let tmp = scratch("gen-bad");
    let s = tmp.path();
    let runs = s.join("runs");
    let plugins = [
        format!("hang={}", script(s, "hang", "echo partial; sleep 60").display()),
        format!("garbage={}", script(s, "garbage", "cat >/dev/null; printf 'x\\000\\377\\376'").display()),
        format!(
            "fail={}",
            script(s, "fail", "cat >/dev/null; echo half-written; echo 'no such template' >&2; exit 3").display()
        ),
        format!(
            "flaky={}",
            script(
                s,
                "flaky",
                &format!(
                    "cat >/dev/null; f={}/flaky.once; if [ ! -e $f ]; then touch $f; exit 1; fi; echo recovered",
                    s.display()
                )
            )
            .display()
        ),
        format!(
            "slow={}",
            script(s, "slow", &format!("cat >/dev/null; echo run >> {}; sleep 1.2; echo slow result", runs.display()))
                .display()
        ),
    ];
    // The model is a server nobody answers on: a failing model.
    let mut args = vec!["--plugin-timeout", "3", "--llm-url", "http://127.0.0.1:9"];
    for p in &plugins {
        args.extend(["--plugin", p.as_str()]);
    }
    let m = Mount::start(&s.join("mnt"), Some(&s.join("data")), &args);
    let file = |name: &str, gen: &str| {
        let p = m.path(name);
        std::fs::write(&p, "").unwrap();
        set_xattr(&p, "user.magic.generator", gen);
        p
    };

    // A plugin that hangs: killed at the time limit, EIO, reason in status.
    let hang = file("hang.txt", "hang");
    let t = Instant::now();
    assert_eq!(read_errno(&hang), libc::EIO);
    assert!(t.elapsed() < Duration::from_secs(10), "timeout enforced ({:?})", t.elapsed());
    assert!(last_error(&m, "/hang.txt").contains("timed out after 3.0 s"));
    assert_eq!(std::fs::metadata(&hang).unwrap().len(), 0, "partial output is not stored");

    let garbage = file("garbage.txt", "garbage");
    assert_eq!(read_errno(&garbage), libc::EIO);
    assert!(last_error(&m, "/garbage.txt").contains("not UTF-8 text"));
    assert_eq!(std::fs::metadata(&garbage).unwrap().len(), 0);

    let fail = file("fail.txt", "fail");
    assert_eq!(read_errno(&fail), libc::EIO);
    let e = last_error(&m, "/fail.txt");
    assert!(e.contains("exit status: 3") && e.contains("no such template"), "{e}");
    assert_eq!(std::fs::metadata(&fail).unwrap().len(), 0);

    // Readable again later: the next read tries again.
    let flaky = file("flaky.txt", "flaky");
    assert_eq!(read_errno(&flaky), libc::EIO);
    assert_eq!(std::fs::metadata(&flaky).unwrap().len(), 0);
    assert_eq!(std::fs::read_to_string(&flaky).unwrap(), "recovered\n");

    // A failing model / an unknown generator: clear messages.
    let p = m.path("poem.txt");
    std::fs::write(&p, "").unwrap();
    set_xattr(&p, "user.magic.prompt", "a poem about disks");
    assert_eq!(read_errno(&p), libc::EIO);
    assert!(last_error(&m, "/poem.txt").contains("cannot connect to http://127.0.0.1:9"));
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    let unknown = file("unknown.txt", "nosuchplugin");
    assert_eq!(read_errno(&unknown), libc::EIO);
    assert!(last_error(&m, "/unknown.txt").contains("unknown generator 'nosuchplugin'"));

    // While a generation runs: a non-blocking reader gets EAGAIN, blocking
    // readers wait and all see the same bytes; the plugin runs once.
    let slow = file("slow.txt", "slow");
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&slow).unwrap();
    let mut buf = [0u8; 64];
    let e = std::io::Read::read(&mut &f, &mut buf).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
    let t = Instant::now();
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let p = slow.clone();
            std::thread::spawn(move || std::fs::read_to_string(p).unwrap())
        })
        .collect();
    // The request loop stays free meanwhile.
    let stat = Instant::now();
    for _ in 0..50 {
        std::fs::metadata(m.path("hang.txt")).unwrap();
    }
    assert!(stat.elapsed() < Duration::from_secs(1), "stat stays fast during generation");
    // The worker may take a moment to pick the job up on a busy machine.
    let running = (0..40)
        .map(|_| {
            let n = m.status()["generation"]["running"].as_array().unwrap().len();
            if n == 0 {
                std::thread::sleep(Duration::from_millis(25));
            }
            n
        })
        .find(|n| *n > 0)
        .unwrap_or(0);
    for r in readers {
        assert_eq!(r.join().unwrap(), "slow result\n");
    }
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert_eq!(running, 1, "status shows the running generation");
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1, "one generation for all readers");
    assert!(m.status()["generation"]["failed"].as_u64().unwrap() >= 6);

    // The CLI explains what to do.
    let plain = m.path("plain.txt");
    std::fs::write(&plain, "x").unwrap();
    let out = magicfs(&["generate", "--again", plain.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no prompt or generator"));
    let out = magicfs(&["generate", "an app", s.join("elsewhere").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not on a MagicFS mount"));
    let out = magicfs(&["generate", "an app", m.path("tree").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

use std::os::unix::fs::OpenOptionsExt;
