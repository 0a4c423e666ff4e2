//! Recipe transfers between real `magicfs serve` peers on loopback: only the
//! chunks a peer lacks travel, the copy is byte-identical, and a chunk
//! corrupted in transit (the test knob MAGICFS_TEST_CORRUPT_CHUNK) leaves
//! nothing visible.

mod edge;

use edge::{assert_error, bytes, magicfs_env, raw_request, stderr, stdout, Serve};
use serde_json::{json, Value};
use std::path::Path;

const TOKEN: &str = "peer-token";

fn push(local: &Path, peer: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut all = vec![("MAGICFS_TOKEN", TOKEN)];
    all.extend_from_slice(env);
    magicfs_env(&["push", local.to_str().unwrap(), peer, "--json"], &all)
}

fn pull(peer: &str, remote: &str, local: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut all = vec![("MAGICFS_TOKEN", TOKEN)];
    all.extend_from_slice(env);
    magicfs_env(&["pull", peer, remote, local.to_str().unwrap(), "--json"], &all)
}

fn report(o: &std::process::Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    serde_json::from_str(stdout(o).trim()).unwrap()
}

/// Names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_one_byte_change_sends_under_one_percent() {
    let here = tempfile::tempdir().unwrap();
    let peer_root = tempfile::tempdir().unwrap();
    std::fs::create_dir(peer_root.path().join("backups")).unwrap();
    let peer = Serve::start(peer_root.path(), Some(TOKEN), &[]);
    let mut data = bytes(100 << 20, 21);
    let local = here.path().join("big.bin");
    std::fs::write(&local, &data).unwrap();
    let dest = format!("{}/backups/", peer.url());

    let first = report(&push(&local, &dest, &[]));
    let size = (100u64 << 20) as f64;
    assert_eq!(first["logical_bytes"].as_u64(), Some(100 << 20));
    assert_eq!(first["chunks_sent"], first["chunks"]);
    let copy = peer.root.join("backups/big.bin");
    assert_eq!(std::fs::read(&copy).unwrap(), data);

    data[77_777_777] ^= 0x5a;
    std::fs::write(&local, &data).unwrap();
    let second = report(&push(&local, &dest, &[]));
    let wire = second["wire_bytes"].as_f64().unwrap();
    assert!(wire < size / 100.0, "second push sent {wire} bytes: {second}");
    assert!(second["ratio"].as_f64().unwrap() >= 100.0, "{second}");
    assert!(second["chunks_sent"].as_u64().unwrap() <= 2, "{second}");
    assert_eq!(std::fs::read(&copy).unwrap(), data, "the peer's copy is byte-identical");
    assert_eq!(names(&peer.root.join("backups")), ["big.bin"]);

    // Pull the other way: a stale local copy supplies all but the changed chunk.
    let stale = here.path().join("stale.bin");
    let mut old = data.clone();
    old[1234] ^= 1;
    std::fs::write(&stale, &old).unwrap();
    let back = report(&pull(&peer.url(), "backups/big.bin", &stale, &[]));
    assert!(back["wire_bytes"].as_f64().unwrap() < size / 100.0, "{back}");
    assert_eq!(std::fs::read(&stale).unwrap(), data);

    // Between two serve instances: pull from one peer, push to another; the
    // second peer already holds the file under another name, so almost nothing travels.
    let other_root = tempfile::tempdir().unwrap();
    std::fs::write(other_root.path().join("elsewhere.bin"), &old).unwrap();
    let other = Serve::start(other_root.path(), Some(TOKEN), &[]);
    let fresh = here.path().join("fresh.bin");
    let got = report(&pull(&peer.url(), "backups/big.bin", &fresh, &[]));
    assert_eq!(got["chunks_sent"], got["chunks"]);
    let sent = report(&push(&fresh, &format!("{}/copy.bin", other.url()), &[]));
    assert!(sent["ratio"].as_f64().unwrap() >= 100.0, "{sent}");
    assert_eq!(std::fs::read(other.root.join("copy.bin")).unwrap(), data);
    assert!(other.metric("magicfs_transfer_chunks_total") <= 2.0);
}

#[test]
fn a_corrupted_chunk_leaves_nothing_visible() {
    let here = tempfile::tempdir().unwrap();
    let peer_root = tempfile::tempdir().unwrap();
    let peer = Serve::start(peer_root.path(), Some(TOKEN), &[]);
    let data = bytes(3 << 20, 8);
    let local = here.path().join("f.bin");
    std::fs::write(&local, &data).unwrap();

    let o = push(&local, &format!("{}/", peer.url()), &[("MAGICFS_TEST_CORRUPT_CHUNK", "5")]);
    assert_error(&o, &["422", "BLAKE3", "nothing was written"]);
    assert!(names(&peer.root).is_empty(), "nothing visible: {:?}", names(&peer.root));
    assert!(peer.alive());

    // An existing copy is left as it was.
    report(&push(&local, &format!("{}/", peer.url()), &[]));
    let mut newer = data.clone();
    newer[2_000_000] ^= 1;
    std::fs::write(&local, &newer).unwrap();
    let o = push(&local, &format!("{}/", peer.url()), &[("MAGICFS_TEST_CORRUPT_CHUNK", "0")]);
    assert_error(&o, &["BLAKE3"]);
    assert_eq!(std::fs::read(peer.root.join("f.bin")).unwrap(), data);
    assert_eq!(names(&peer.root), ["f.bin"]);

    // Pull: a chunk corrupted on the way in is refused here too.
    let target = here.path().join("pulled.bin");
    let o = pull(&peer.url(), "f.bin", &target, &[("MAGICFS_TEST_CORRUPT_CHUNK", "3")]);
    assert_error(&o, &["BLAKE3"]);
    assert!(!target.exists());
    assert_eq!(names(here.path()), ["f.bin"]);
    report(&pull(&peer.url(), "f.bin", &target, &[]));
    assert_eq!(std::fs::read(&target).unwrap(), data);
}

#[test]
fn transfer_routes_refuse_bad_requests() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.bin"), b"hello").unwrap();
    let s = Serve::start(root.path(), Some(TOKEN), &[]);
    let recipe = json!({"size": 5, "blake3": "00".repeat(32), "chunks": [["11".repeat(32), 5]]});
    // No token, wrong token.
    let body = json!({"path": "x.bin", "recipe": recipe}).to_string();
    raw_request(&s.addr, "POST", "/transfer/offer", &[], body.as_bytes()).unwrap().error(401, "token");
    raw_request(&s.addr, "POST", "/transfer/offer", &[("Authorization", "Bearer no")], body.as_bytes())
        .unwrap()
        .error(401, "token");
    // Paths outside the root, into missing directories, or reserved.
    for bad in ["../x.bin", "/etc/passwd", "a/../../x", ""] {
        s.post_json("/transfer/offer", &json!({"path": bad, "recipe": recipe})).error(403, "outside");
    }
    s.post_json("/transfer/offer", &json!({"path": "nodir/x.bin", "recipe": recipe})).error(404, "does not exist");
    s.post_json("/transfer/offer", &json!({"path": ".x.magicfs-incoming-1", "recipe": recipe})).error(400, "reserved");
    // Malformed recipes and unknown sessions.
    s.post_json(
        "/transfer/offer",
        &json!({"path": "x.bin", "recipe": {"size": 6, "blake3": "00".repeat(32), "chunks": [["11".repeat(32), 5]]}}),
    )
    .error(422, "add up");
    s.post_json("/transfer/offer", &json!({"nope": 1})).error(400, "path");
    s.post_json("/transfer/0123/commit", &json!({})).error(404, "no transfer session");
    s.request("POST", "/transfer/0123/chunks", &[], b"xx").unwrap().error(404, "no transfer session");
    // A commit before the chunks arrived fails and removes the partial file.
    let r = s.post_json("/transfer/offer", &json!({"path": "x.bin", "recipe": recipe}));
    assert_eq!(r.status, 200);
    let session = r.json()["session"].as_str().unwrap().to_string();
    assert_eq!(r.json()["missing"], json!([0]));
    s.post_json(&format!("/transfer/{session}/commit"), &json!({})).error(422, "never arrived");
    assert_eq!(names(&s.root), ["a.bin"]);
    // Recipes and fetches stay under the root.
    s.request("GET", "/transfer/recipe/../etc/passwd", &[], b"").unwrap().error(403, "outside");
    s.post_json("/transfer/fetch", &json!({"path": "/etc/passwd", "blake3": "00".repeat(32), "chunks": [0]}))
        .error(403, "outside");
    s.post_json("/transfer/fetch", &json!({"path": "a.bin", "blake3": "00".repeat(32), "chunks": [0]}))
        .error(422, "changed");
    assert_error(
        &magicfs_env(&["pull", &s.url(), "a.bin", "/nonexistent/dir/x"], &[("MAGICFS_TOKEN", TOKEN)]),
        &["nonexistent"],
    );
    assert_error(&magicfs_env(&["push", "/nonexistent", &s.url()], &[("MAGICFS_TOKEN", TOKEN)]), &["nonexistent"]);
    assert!(s.alive());
}
