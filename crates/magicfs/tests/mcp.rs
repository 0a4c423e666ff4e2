//! The MCP server and the volume it serves, through real parts: the volume
//! conformance suite over a FUSE mount and over an on-disk store; then the
//! independent MCP client (PyPI's `mcp`, in the venv `scripts/client-venv.sh`
//! makes) against `magicfs mcp` over stdio and over streamable HTTP, on a
//! mount answering with the real models (SmolLM2 for chat and generation,
//! MiniLM for search); and an unmounted store served read-only.

mod common;

use common::{bin, client_python, scratch, smollm2, Mount, Server};
use magicfs_core::{Fs, FsConfig};
use magicfs_volume::{conformance, Limits, MountBackend, StoreBackend, StoreParts, Volume};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/mcp_client.py")
}

/// Runs the client script with `args`, failing the test with its output if it fails.
fn run_client(args: &[&str]) {
    let out = Command::new(client_python()).arg(client_script()).args(args).output().expect("run the MCP client");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "MCP client {args:?} failed:\n{text}");
    assert!(text.contains("all checks passed"), "{text}");
    println!("{text}");
}

fn limits() -> Limits {
    Limits { max_read: 64 << 10, max_write: 1 << 20, ..Limits::default() }
}

#[test]
fn volume_conformance_on_a_fuse_mount_and_a_store() {
    let tmp = scratch("volume-conf");
    let (mnt, data) = (tmp.path().join("mnt"), tmp.path().join("data"));
    let mut m = Mount::start(&mnt, Some(&data), &["--no-search"]);
    let backend = MountBackend::open(&m.dir).unwrap();
    assert!(backend.is_magicfs());
    let vol = Volume::new(Arc::new(backend), limits());
    let root = m.dir.clone();
    conformance::run(&vol, &|p, t| std::os::unix::fs::symlink(t, root.join(p)).unwrap());
    std::fs::write(m.path("kept.txt"), "kept").unwrap();
    let ro = Volume::new(vol.backend().clone(), Limits { read_only: true, ..limits() });
    conformance::read_only(&ro, "kept.txt");
    m.stop();

    // The same store, unmounted, opened in process.
    let fs = Arc::new(Fs::open_store(&data, false, FsConfig::default()).unwrap());
    let parts =
        StoreParts { fs: fs.clone(), data_dir: data.display().to_string(), index: None, sessions: None, engine: None };
    let store = Arc::new(StoreBackend::new(parts));
    let vol = Volume::new(store.clone(), limits());
    assert_eq!(vol.read("kept.txt", None, None).unwrap().data, b"kept");
    conformance::run(&vol, &|p, t| {
        fs.symlink_path(t, p).unwrap();
    });
    store.shutdown().unwrap();
}

#[test]
fn mcp_client_over_stdio_and_http_with_the_real_models() {
    let tmp = scratch("mcp");
    let (mnt, data) = (tmp.path().join("mnt"), tmp.path().join("data"));
    let model = smollm2();
    let m = Mount::start_chat(
        &mnt,
        Some(&data),
        &["--model-path", model.to_str().unwrap(), "--max-tokens", "40", "--gen-max-tokens", "40"],
    );
    let mount = m.dir.to_str().unwrap();
    run_client(&["stdio", bin().to_str().unwrap(), mount, "over-stdio"]);
    let token = "mcp-test-token";
    let mut cmd = Command::new(bin());
    cmd.args(["mcp", mount, "--http", "127.0.0.1:0"]).env("MAGICFS_TOKEN", token);
    let server = Server::start(cmd, " on http://");
    let url = format!("http://{}", server.addr);
    assert!(url.ends_with("/mcp"), "{url}");
    run_client(&["http", &url, token, mount, "over-http"]);
    drop(server);
    drop(m);
}

#[test]
fn mcp_serves_an_unmounted_store_read_only() {
    let tmp = scratch("mcp-store");
    let (mnt, data) = (tmp.path().join("mnt"), tmp.path().join("data"));
    let text = "Hard disk drives fail in predictable ways: watch the SMART counters and replace a drive whose \
                reallocated sectors keep rising.";
    let mut m = Mount::start(&mnt, Some(&data), &[]);
    std::fs::create_dir(m.path("notes")).unwrap();
    std::fs::write(m.path("notes/disks.md"), text).unwrap();
    let out = common::magicfs(&["index", "status", m.dir.to_str().unwrap(), "--wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    m.stop();
    run_client(&["store-read-only", bin().to_str().unwrap(), data.to_str().unwrap(), "/notes/disks.md", text]);
}
