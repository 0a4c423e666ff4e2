//! Generated content is checked before it is stored, through a real mount
//! with generator plugins that are real programs (deterministic answers):
//! a repeating answer is cut to one copy, an empty or invalid answer is
//! asked for again (the attempt is in the provenance and the retries in
//! `.magic/status`), so is one that describes its file instead of holding
//! its contents, and when every attempt fails the read errors and
//! `user.magic.error` says why. Sampling settings reach generators as
//! `user.magic.<key>` xattrs of the file or its directories.

mod common;

use common::{get_xattr, scratch, set_xattr, Mount};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn answers_are_cut_checked_and_retried() {
    let tmp = scratch("gen-checks");
    let s = tmp.path();
    let joke = "Why did the disk cross the road? To get to the other sector. ";
    // Each plugin answers by attempt number (the request's "attempt" field).
    let attempt = r#"a=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["attempt"])')"#;
    let plugins = [
        format!(
            "looping={}",
            script(s, "looping", &format!("cat >/dev/null; for i in $(seq 30); do printf '{joke}'; done")).display()
        ),
        format!(
            "emptyonce={}",
            script(s, "emptyonce", &format!("{attempt}; [ \"$a\" = 1 ] || echo 'second time lucky'")).display()
        ),
        format!("empty={}", script(s, "empty", "cat >/dev/null; true").display()),
        format!(
            "badjson={}",
            script(
                s,
                "badjson",
                &format!("{attempt}; if [ \"$a\" -lt 3 ]; then echo '{{\"a\": '; else echo '{{\"a\": 1}}'; fi")
            )
            .display()
        ),
        format!(
            "selfonce={}",
            script(
                s,
                "selfonce",
                &format!(
                    "{attempt}; if [ \"$a\" = 1 ]; then echo '{{\"name\": \"conf.json\", \"type\": \"json\"}}'; \
                     else echo '{{\"port\": 8080}}'; fi"
                )
            )
            .display()
        ),
        format!(
            "selfthenempty={}",
            script(
                s,
                "selfthenempty",
                &format!("{attempt}; [ \"$a\" = 1 ] && printf '#!/bin/sh\\necho notes\\n'; true")
            )
            .display()
        ),
        format!("echoreq={}", script(s, "echoreq", "cat").display()),
    ];
    let mut args = vec!["--gen-attempts", "3"];
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

    // A looping answer is cut to one copy of the repeated span.
    let p = file("joke.txt", "looping");
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text, format!("{}\n", joke.trim_end()), "{text:?}");
    assert_eq!(get_xattr(&p, "user.magic.provenance.finish").as_deref(), Some("loop"));
    assert_eq!(get_xattr(&p, "user.magic.provenance.attempt").as_deref(), Some("1"));

    // An empty answer is asked for again.
    let p = file("once.txt", "emptyonce");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "second time lucky\n");
    assert_eq!(get_xattr(&p, "user.magic.provenance.attempt").as_deref(), Some("2"));
    assert_eq!(get_xattr(&p, "user.magic.error"), None);

    // JSON that does not parse is asked for again until it does.
    let p = file("data.json", "badjson");
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), serde_json::json!({"a": 1}));
    assert_eq!(get_xattr(&p, "user.magic.provenance.attempt").as_deref(), Some("3"));

    // An answer that describes its file instead of holding its contents
    // (data whose values are its name and format; a script as text) is
    // asked for again, and kept when no later answer does better.
    let p = file("conf.json", "selfonce");
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), serde_json::json!({"port": 8080}));
    assert_eq!(get_xattr(&p, "user.magic.provenance.attempt").as_deref(), Some("2"));
    let p = file("notes.txt", "selfthenempty");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "#!/bin/sh\necho notes\n");
    assert_eq!(get_xattr(&p, "user.magic.provenance.attempt").as_deref(), Some("1"));

    // Always empty: the read fails and user.magic.error explains.
    let p = file("never.txt", "empty");
    let e = std::fs::read(&p).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    let why = get_xattr(&p, "user.magic.error").expect("user.magic.error is set");
    assert_eq!(why, "no valid content after 3 attempts; the last one: the answer is empty");
    let out = std::process::Command::new("getfattr").args(["-n", "user.magic.error"]).arg(&p).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("the answer is empty"), "{out:?}");
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);

    // Counters in .magic/status.
    let st = m.status();
    let g = &st["generation"];
    assert_eq!(g["retries"], 1 + 2 + 1 + 2 + 2, "{g}");
    assert_eq!(g["loops_cut"], 1, "{g}");
    assert_eq!(g["validation"]["txt"]["invalid"], 1 + 3 + 3, "{g}");
    assert_eq!(g["validation"]["txt"]["valid"], 3, "{g}");
    assert_eq!(g["validation"]["json"]["invalid"], 2 + 1, "{g}");
    assert_eq!(g["validation"]["json"]["valid"], 2, "{g}");

    // Sampling settings are given to generators: the file's own, else the
    // nearest directory's; the format comes from the extension or the prompt.
    let d = m.path("tuned");
    std::fs::create_dir(&d).unwrap();
    set_xattr(&d, "user.magic.generator", "echoreq");
    set_xattr(&d, "user.magic.temperature", "0.1");
    set_xattr(&d, "user.magic.top_p", "0.5");
    let p = d.join("settings");
    std::fs::write(&p, "").unwrap();
    set_xattr(&p, "user.magic.top_p", "0.9");
    set_xattr(&p, "user.magic.prompt", "the settings as YAML");
    let req: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_eq!(req["sampling"], serde_json::json!({"temperature": "0.1", "top_p": "0.9"}), "{req}");
    assert_eq!(req["format"], "yaml");
    assert_eq!(req["attempt"], 1);
}
