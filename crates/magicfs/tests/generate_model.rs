//! Generated content with the real model (SmolLM2-135M-Instruct through
//! llama.cpp, fetched by `scripts/models.sh`), all on one daemon to keep
//! the model loaded once: a prompt on an empty file gives text that stays
//! the same across reads and remounts; regeneration updates provenance;
//! `magicfs generate` trees validate against the schema for five prompts
//! (checked by an independent validator, Python's `jsonschema`) and their
//! files fill on read. A model that fails leaves the file empty and
//! readable later, once a working model is there.

mod common;

use common::{get_xattr, magicfs, scratch, set_xattr, sh, Mount};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn model() -> PathBuf {
    let dir = std::env::var_os("MAGICFS_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/magicfs/models"));
    let m = dir.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(m.is_file(), "{} is missing: run scripts/models.sh", m.display());
    m
}

/// The in-process model, or the OpenAI-compatible server at
/// `MAGICFS_GEN_TEST_LLM_URL` serving the same model (e.g. llama-cpp-python).
fn backend_args(model: &Path) -> Vec<String> {
    match std::env::var("MAGICFS_GEN_TEST_LLM_URL") {
        Ok(u) if !u.is_empty() => vec!["--llm-url".into(), u],
        _ => vec!["--model-path".into(), model.to_str().unwrap().into()],
    }
}

/// Validates `doc` against `schema` with Python's `jsonschema` (installed by scripts/deps.sh).
fn validate(doc: &str, schema: &Path, scratch: &Path) {
    let f = scratch.join("answer.json");
    std::fs::write(&f, doc).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))",
        ])
        .arg(&f)
        .arg(schema)
        .output()
        .expect("python3 (scripts/deps.sh installs python3-jsonschema)");
    assert!(out.status.success(), "answer does not validate: {doc}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn real_model_fills_files_and_trees() {
    let tmp = scratch("gen-model");
    let model = model();
    let mnt = tmp.path().join("mnt");
    let data = tmp.path().join("data");

    // A model that fails (nothing listens there): the reader gets EIO, the
    // file stays empty; the store keeps the prompt for later.
    let mut dead = Mount::start(&mnt, Some(&data), &["--llm-url", "http://127.0.0.1:9"]);
    let poem = dead.path("poem.txt");
    std::fs::write(&poem, "").unwrap();
    set_xattr(&poem, "user.magic.prompt", "a short poem about hard disks");
    let e = std::fs::read(&poem).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert_eq!(std::fs::metadata(&poem).unwrap().len(), 0);
    let st = dead.status();
    assert!(st["generation"]["last_error"]["error"].as_str().unwrap().contains("model"), "{st}");
    dead.stop();
    drop(dead);

    // The real model, one daemon for everything below.
    let mut m = Mount::start(
        &mnt,
        Some(&data),
        &backend_args(&model).iter().map(String::as_str).chain(["--gen-max-tokens", "64"]).collect::<Vec<_>>(),
    );
    let poem = m.path("poem.txt");
    let first = std::fs::read(&poem).unwrap();
    let text = String::from_utf8(first.clone()).expect("text");
    assert!(!text.trim().is_empty());
    assert_eq!(std::fs::read(&poem).unwrap(), first, "second read: the same bytes");
    assert_eq!(get_xattr(&poem, "user.magic.provenance.generator").as_deref(), Some("llm"));
    assert!(
        get_xattr(&poem, "user.magic.provenance.model").unwrap().to_lowercase().contains("smollm2"),
        "model recorded"
    );
    let t1 = get_xattr(&poem, "user.magic.provenance.time").unwrap();
    let h1 = get_xattr(&poem, "user.magic.provenance.prompt_hash").unwrap();

    // Files valid for their type: generated JSON parses, a haiku is three lines.
    let cfg = m.path("config.json");
    std::fs::write(&cfg, "").unwrap();
    set_xattr(&cfg, "user.magic.prompt", "settings of a web server: host, port and log level");
    set_xattr(&cfg, "user.magic.max_tokens", "160");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert!(v.is_object(), "{v}");
    let haiku = m.path("haiku.txt");
    std::fs::write(&haiku, "").unwrap();
    set_xattr(&haiku, "user.magic.prompt", "a haiku about disks");
    let text = std::fs::read_to_string(&haiku).unwrap();
    assert_eq!(text.lines().filter(|l| !l.trim().is_empty()).count(), 3, "{text:?}");
    // YAML and TOML: the model writes their data as JSON, MagicFS converts it.
    for (name, prompt) in [
        ("compose.yaml", "a docker compose file with a web service and a postgres database"),
        ("Cargo.toml", "the manifest of a Rust command-line tool called grepper that depends on clap"),
    ] {
        let p = m.path(name);
        std::fs::write(&p, "").unwrap();
        set_xattr(&p, "user.magic.prompt", prompt);
        set_xattr(&p, "user.magic.max_tokens", "160");
        let text = std::fs::read_to_string(&p).unwrap();
        if name.ends_with(".yaml") {
            let docs =
                yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("not YAML ({e}): {text}"));
            assert!(docs[0].as_hash().is_some_and(|h| !h.is_empty()), "a mapping: {text}");
            assert!(!text.trim_start().starts_with('{'), "YAML, not JSON: {text}");
        } else {
            let t: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("not TOML ({e}): {text}"));
            assert!(!t.is_empty(), "{text}");
        }
    }
    let st = m.status();
    assert!(st["generation"]["validation"]["json"]["valid"].as_u64().unwrap() >= 1, "{st}");
    for f in ["yaml", "toml"] {
        assert!(st["generation"]["validation"][f]["valid"].as_u64().unwrap() >= 1, "{st}");
    }

    // A tree request that names its parts gets a file for each.
    let named = m.path("named");
    let out = magicfs(&["generate", "a backup tool: backup.sh, restore.sh and a README", named.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = sh(&named, "find . -type f | sort");
    for part in ["backup.sh", "restore.sh", "README"] {
        assert!(listed.contains(part), "no {part} in the tree:\n{listed}");
    }

    // A request that counts its files gets at least that many.
    let blog = m.path("blog");
    let out = magicfs(&["generate", "a blog with five pages", blog.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = sh(&blog, "find . -type f | sort");
    assert!(listed.lines().count() >= 5, "five pages asked for:\n{listed}");

    // Trees from one sentence: the answer validates against the schema for
    // every prompt, files are created empty with their own prompts.
    let schema = tmp.path().join("schema.json");
    let out = magicfs(&["generate", "--schema"]);
    assert!(out.status.success());
    std::fs::write(&schema, &out.stdout).unwrap();
    let prompts = [
        "a CLI todo app in Python",
        "a static personal website",
        "a Rust library for parsing dates",
        "a shell script collection for backups",
        "a recipe book in Markdown",
    ];
    let mut lazy = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let dir = m.path(&format!("t{i}"));
        let out = magicfs(&["generate", p, dir.to_str().unwrap()]);
        assert!(out.status.success(), "{p}: {}", String::from_utf8_lossy(&out.stderr));
        let answer = get_xattr(&dir, "user.magic.tree").expect("answer kept");
        eprintln!("{p}: {answer}");
        validate(&answer, &schema, tmp.path());
        assert_eq!(get_xattr(&dir, "user.magic.prompt").as_deref(), Some(*p));
        let parsed: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let mut created = 0;
        for f in parsed["files"].as_array().unwrap() {
            // The tree keeps names and descriptions trimmed, and the first
            // entry of a name named twice.
            let path = dir.join(f["path"].as_str().unwrap().trim().trim_matches('/'));
            let described = f["description"].as_str().map(str::trim);
            if path.is_file() && get_xattr(&path, "user.magic.prompt").as_deref() == described {
                assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "lazy: empty until read");
                created += 1;
                // A tree may name one path twice: it is one file.
                if !lazy.contains(&path) {
                    lazy.push(path);
                }
            }
        }
        assert!(created >= 1, "{p}: no file created from {answer}");
    }
    // Lazily generated files fill on read.
    let filled = std::fs::read_to_string(&lazy[0]).unwrap();
    assert!(!filled.trim().is_empty());
    assert_eq!(get_xattr(&lazy[0], "user.magic.provenance.generator").as_deref(), Some("llm"));
    assert_eq!(std::fs::metadata(&lazy[1]).unwrap().len(), 0, "untouched files stay lazy");
    // --eager fills the rest of one tree, showing progress.
    let t1dir = m.path("t1");
    // Settings on a directory reach its files: room for whole sources.
    set_xattr(&t1dir, "user.magic.max_tokens", "200");
    // On a terminal (script(1) gives it one) the command draws its bar.
    let cmd = format!("{} generate --eager 'a static personal website' '{}'", common::bin().display(), t1dir.display());
    let out = std::process::Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("generate") && screen.contains(" files"), "no progress bar on a terminal: {screen:?}");
    let sizes = sh(&t1dir, "find . -type f -size 0 | wc -l");
    assert_eq!(sizes.trim(), "0", "every file of t1 is filled");

    // Remount: the same bytes, from the store.
    m.remount();
    assert_eq!(std::fs::read(&poem).unwrap(), first, "identical after remount");
    assert_eq!(std::fs::read_to_string(&lazy[0]).unwrap(), filled);

    // Regeneration updates the provenance.
    std::thread::sleep(Duration::from_millis(1100));
    let out = magicfs(&["generate", "--again", poem.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = std::fs::read_to_string(&poem).unwrap();
    assert!(!again.trim().is_empty());
    assert_ne!(get_xattr(&poem, "user.magic.provenance.time").unwrap(), t1, "new time");
    assert_eq!(get_xattr(&poem, "user.magic.provenance.prompt_hash").unwrap(), h1, "same prompt");
    m.stop();
}
