//! HTTPS end to end, with a certificate authority made in the test
//! (rcgen): push and pull between two `magicfs serve --tls-cert` peers, an
//! `https://` compute source (from the CLI and through a second server),
//! `--ca-file`, HTTP/2 offered by ALPN, and wrong certificates refused with
//! a message that says what to do.

mod edge;
mod pki;

use edge::{assert_error, assert_usage_error, bytes, magicfs, magicfs_env, stderr, stdout, Serve};
use pki::{Pki, ServerCert};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

const TOKEN: &str = "tls-token";

fn tls_serve(root: &Path, cert: &ServerCert, ca: &Path, extra: &[&str]) -> Serve {
    Serve::start_tls(root, Some(TOKEN), (&cert.cert, &cert.key), ca, extra)
}

fn report(o: &std::process::Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    serde_json::from_str(stdout(o).trim()).unwrap()
}

#[test]
fn push_and_pull_between_two_tls_peers() {
    let pki = Pki::new("peers");
    let (a_root, b_root, here) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = tls_serve(a_root.path(), &pki.server("a", &[]), &pki.ca, &[]);
    let b = tls_serve(b_root.path(), &pki.server("b", &[]), &pki.ca, &[]);
    assert!(a.url().starts_with("https://127.0.0.1:"), "{}", a.url());
    let ca = pki.ca.to_str().unwrap();
    let env = [("MAGICFS_TOKEN", TOKEN)];

    let mut data = bytes(12 << 20, 41);
    let local = here.path().join("f.bin");
    std::fs::write(&local, &data).unwrap();
    let first = report(&magicfs_env(
        &["push", local.to_str().unwrap(), &format!("{}/", a.url()), "--json", "--ca-file", ca],
        &env,
    ));
    assert_eq!(first["chunks_sent"], first["chunks"]);
    assert!(first["wire_bytes"].as_u64().unwrap() > 8 << 20, "the compressed chunks crossed the wire: {first}");
    assert_eq!(std::fs::read(a.root.join("f.bin")).unwrap(), data);

    // One byte changed: only its chunk travels, over TLS too.
    data[7_000_000] ^= 1;
    std::fs::write(&local, &data).unwrap();
    let again = report(&magicfs_env(
        &["push", local.to_str().unwrap(), &format!("{}/", a.url()), "--json", "--ca-file", ca],
        &env,
    ));
    assert!(again["chunks_sent"].as_u64().unwrap() <= 2, "{again}");
    assert_eq!(std::fs::read(a.root.join("f.bin")).unwrap(), data);

    // Pull from a (by name: the certificate names localhost too), push to b.
    let by_name = a.url().replace("127.0.0.1", "localhost");
    let copy = here.path().join("copy.bin");
    let got = report(&magicfs_env(
        &["pull", &by_name, "f.bin", copy.to_str().unwrap(), "--json"],
        &[("MAGICFS_TOKEN", TOKEN), ("MAGICFS_CA_FILE", ca)],
    ));
    assert_eq!(got["chunks_sent"], got["chunks"]);
    assert_eq!(std::fs::read(&copy).unwrap(), data);
    report(&magicfs_env(
        &["push", copy.to_str().unwrap(), &format!("{}/g.bin", b.url()), "--json", "--ca-file", ca],
        &env,
    ));
    assert_eq!(std::fs::read(b.root.join("g.bin")).unwrap(), data);
    assert!(b.metric("magicfs_transfer_chunks_total") > 0.0);

    // Without the CA the peers are refused, and the message says what to do.
    let o = magicfs_env(&["push", local.to_str().unwrap(), &format!("{}/", b.url()), "--json"], &env);
    assert_error(&o, &["certificate", "not signed by a trusted authority", "--ca-file"]);
    let o = magicfs_env(&["pull", &a.url(), "f.bin", here.path().join("no.bin").to_str().unwrap()], &env);
    assert_error(&o, &["certificate", "--ca-file"]);
    assert!(!here.path().join("no.bin").exists());
    // The request log names what was answered, 4xx included.
    let log = a.log();
    assert!(log.contains("status=200") && log.contains("path=/transfer/offer"), "{log}");
}

#[test]
fn https_compute_source_from_the_cli_and_through_a_server() {
    let pki = Pki::new("source");
    let dir = tempfile::tempdir().unwrap();
    let data = bytes((5 << 20) + 777, 9);
    std::fs::write(dir.path().join("data.bin"), &data).unwrap();
    let origin = tls_serve(dir.path(), &pki.server("origin", &[]), &pki.ca, &[]);
    let url = format!("{}/files/data.bin", origin.url());
    let ca = pki.ca.to_str().unwrap();
    let local = dir.path().join("data.bin");

    let args = |src: &str| -> Vec<String> {
        ["compute", src, "--op", "crc32c", "--window", "1MiB"].iter().map(|s| s.to_string()).collect()
    };
    let remote: Vec<String> = args(&url).into_iter().chain(["--ca-file".to_string(), ca.to_string()]).collect();
    let r = magicfs_env(&remote.iter().map(String::as_str).collect::<Vec<_>>(), &[("MAGICFS_SOURCE_TOKEN", TOKEN)]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let l = magicfs(&args(local.to_str().unwrap()).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(stdout(&r), stdout(&l));
    assert!(stderr(&r).contains("range requests"), "{}", stderr(&r));

    // Through a second server (https itself) that trusts the CA and allows the origin's address.
    let edge_dir = tempfile::tempdir().unwrap();
    let edge =
        tls_serve(edge_dir.path(), &pki.server("edge", &[]), &pki.ca, &["--allow-host", "127.0.0.1", "--ca-file", ca]);
    let program =
        json!([{"op": "add", "offset": 3, "length": 4_000_000}, {"op": "fnv", "offset": 5_000_000, "length": 100_000}]);
    // The origin wants a token: the edge's source reads send none, so the origin's 401 is passed on.
    let answer = edge.post_json("/compute", &json!({"data_url": url, "instructions": program}));
    answer.error(502, "401");
    // Answered 5xx: logged as an error, without the token the client sent.
    let log = edge.log_with(&["status=502"]);
    let line = log.lines().find(|l| l.contains("status=502")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("ERROR") && line.contains("path=/compute"), "{line}");
    assert!(!log.contains(TOKEN), "the token is never logged");
    let open_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&local, open_dir.path().join("data.bin")).unwrap();
    let open_cert = pki.server("open", &[]);
    let open = Serve::start_tls(open_dir.path(), None, (&open_cert.cert, &open_cert.key), &pki.ca, &[]);
    let open_url = format!("{}/files/data.bin", open.url());
    let answer = edge.post_json("/compute", &json!({"data_url": open_url, "instructions": program}));
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let results = answer.json()["results"].clone();
    let reference = magicfs_compute::ops::reference::eval;
    assert_eq!(results[0]["value"].as_u64().unwrap(), reference("add".parse().unwrap(), 0, &data[3..4_000_003]));
    assert_eq!(
        results[1]["value"].as_u64().unwrap(),
        reference("fnv".parse().unwrap(), 0, &data[5_000_000..5_100_000])
    );

    // A server that does not trust the CA refuses the source with a clear 502.
    let plain_dir = tempfile::tempdir().unwrap();
    let untrusting = Serve::start(plain_dir.path(), Some(TOKEN), &["--allow-host", "127.0.0.1"]);
    let answer = untrusting.post_json("/compute", &json!({"data_url": open_url, "instructions": program}));
    answer.error(502, "not signed by a trusted authority");
}

#[test]
fn wrong_certificates_and_ca_files_are_refused_clearly() {
    let right = Pki::new("right");
    let other = Pki::new("other");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.bin"), bytes(100_000, 2)).unwrap();
    let ca = right.ca.to_str().unwrap();

    // Signed by another CA.
    let stranger = tls_serve(dir.path(), &other.server("stranger", &[]), &other.ca, &[]);
    let o = magicfs_env(
        &["compute", &format!("{}/files/x.bin", stranger.url()), "--op", "xor", "--ca-file", ca],
        &[("MAGICFS_SOURCE_TOKEN", TOKEN)],
    );
    assert_error(&o, &["https://127.0.0.1", "not signed by a trusted authority", "--ca-file"]);

    // Signed by the right CA, for another name.
    let misnamed = tls_serve(dir.path(), &right.server("misnamed", &["data.example.org"]), &right.ca, &[]);
    let o = magicfs_env(
        &["compute", &format!("{}/files/x.bin", misnamed.url()), "--op", "xor", "--ca-file", ca],
        &[("MAGICFS_SOURCE_TOKEN", TOKEN)],
    );
    assert_error(&o, &["not valid for the name 127.0.0.1"]);

    // https:// to a plain http server.
    let plain = Serve::start(dir.path(), None, &[]);
    let o = magicfs(&["compute", &format!("https://{}/files/x.bin", plain.addr), "--op", "xor", "--ca-file", ca]);
    assert_error(&o, &["does not speak TLS"]);

    // CA files that cannot be used.
    let o = magicfs(&["compute", "https://127.0.0.1:1/x", "--op", "xor", "--ca-file", "/nonexistent/ca.pem"]);
    assert_usage_error(&o, &["--ca-file /nonexistent/ca.pem", "cannot read"]);
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let o = magicfs(&["compute", "https://127.0.0.1:1/x", "--op", "xor", "--ca-file", junk.to_str().unwrap()]);
    assert_usage_error(&o, &["no certificate"]);

    // Server side: missing or mismatched files are named at start.
    let serve_in = ["serve", "--listen", "127.0.0.1:0", "--root", dir.path().to_str().unwrap()];
    let cert = right.server("srv", &[]);
    let wrong_key = right.server("other-key", &[]).key;
    for (c, k, needle) in [
        (cert.cert.as_path(), Path::new("/nonexistent.key"), "--tls-key"),
        (Path::new("/nonexistent.pem"), cert.key.as_path(), "--tls-cert"),
        (cert.cert.as_path(), wrong_key.as_path(), "do not fit together"),
    ] {
        let o =
            magicfs(&[&serve_in[..], &["--tls-cert", c.to_str().unwrap(), "--tls-key", k.to_str().unwrap()]].concat());
        assert_error(&o, &[needle]);
    }
    let o = magicfs(&[&serve_in[..], &["--tls-cert", cert.cert.to_str().unwrap()]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--tls-key"), "{}", stderr(&o));
}

#[test]
fn http2_is_offered_by_alpn() {
    let pki = Pki::new("h2");
    let dir = tempfile::tempdir().unwrap();
    let s = tls_serve(dir.path(), &pki.server("h2", &[]), &pki.ca, &[]);
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&pki.ca).unwrap();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = std::net::TcpStream::connect(&s.addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    // The client preface and an empty SETTINGS frame; the server answers with its SETTINGS frame.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
    let mut head = [0u8; 9];
    tls.read_exact(&mut head).unwrap();
    assert_eq!(head[3], 4, "a SETTINGS frame: {head:?}");
}

#[test]
fn console_and_mcp_behind_the_same_tls_and_token() {
    let pki = Pki::new("console");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
    let s = tls_serve(dir.path(), &pki.server("console", &[]), &pki.ca, &["--console", "--mcp"]);

    // The console's page needs no token; its API and the MCP endpoint do.
    assert_eq!(s.request_as("GET", "/console/", &[], b"").unwrap().status, 200);
    s.request_as("GET", "/console/api/list?path=/", &[], b"").unwrap().error(401, "token");
    let listed = s.request("GET", "/console/api/list?path=/", &[], b"").unwrap();
    assert_eq!(listed.status, 200, "{}", String::from_utf8_lossy(&listed.body));
    assert!(String::from_utf8_lossy(&listed.body).contains("a.txt"));
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "tls-test", "version": "1"}}});
    let mcp_headers = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")];
    let refused = s.request_as("POST", "/mcp", &mcp_headers, init.to_string().as_bytes()).unwrap();
    assert_eq!(refused.status, 401);
    let client =
        magicfs_net::Client::with_ca_file(magicfs_net::Allowlist::loopback(), Default::default(), &pki.ca).unwrap();
    let auth = format!("Bearer {TOKEN}");
    let url = magicfs_net::HttpUrl::parse(&format!("{}/mcp", s.url())).unwrap();
    let headers = [mcp_headers[0], mcp_headers[1], ("Authorization", auth.as_str())];
    let r = client.request("POST", &url, &headers, init.to_string().as_bytes()).unwrap();
    assert_eq!(r.status, 200);
    let mut reader = r.into_reader(1 << 20);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("serverInfo") {
        let n = reader.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }

    // Over HTTP/2 (curl), a change from the console's own origin is accepted.
    let port = s.addr.rsplit(':').next().unwrap();
    let origin = format!("https://localhost:{port}");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http2", "--cacert", pki.ca.to_str().unwrap(), "-o", "/dev/null"])
        .args(["-w", "%{http_version} %{http_code}", "-X", "POST", "-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}"), "-H", &format!("Origin: {origin}")])
        .args(["--data", r#"{"path":"/made-over-h2"}"#, &format!("{origin}/console/api/mkdir")])
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200", "{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.root.join("made-over-h2").is_dir());

    // All of it in the request log, without the token.
    let log = s.log_with(&["path=/console/api/mkdir", "path=/mcp"]);
    assert!(log.contains("path=/console/api/mkdir") && log.contains("version=HTTP/2.0"), "{log}");
    assert!(log.contains("path=/mcp") && log.contains("status=401"), "{log}");
    assert!(!log.contains(TOKEN), "the token is never logged");
}
