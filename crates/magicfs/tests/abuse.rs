//! The edge server under abuse: a real `magicfs serve` on loopback against
//! what hostile or broken clients do. Each case checks the status the
//! server answers, that `/health` still answers within a second afterwards,
//! and that the server's anonymous memory stays bounded.

mod edge;

use edge::{bytes, raw_request, tiny_server, Reply, Serve};
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "abuse-token";
const AUTH: (&str, &str) = ("Authorization", "Bearer abuse-token");
/// The most anonymous memory (MiB) the server may hold after any case.
const MAX_ANON_MIB: f64 = 128.0;

/// `/health` within a second, memory bounded.
fn after(s: &Serve) {
    s.assert_healthy_within(Duration::from_secs(1));
    let (rss, anon) = s.rss_mib();
    eprintln!("server memory: {rss:.0} MiB resident, {anon:.0} MiB anonymous");
    assert!(anon < MAX_ANON_MIB, "the server holds {anon:.0} MiB of anonymous memory ({rss:.0} MiB resident)");
}

fn compute(s: &Serve, body: &Value) -> Reply {
    s.post_json("/compute", body)
}

fn xor(url: &str) -> Value {
    json!({"data_url": url, "instructions": [{"op": "xor", "offset": 0, "length": 1}]})
}

/// Sends a request head (and `body`) and reads only the answer's head.
fn head_only(addr: &str, head: &str) -> (TcpStream, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed before the answer's head");
        got.extend_from_slice(&buf[..n]);
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (c, String::from_utf8_lossy(&got[..end]).into_owned())
}

/// Raises this process's limit on open files: to 32768 where allowed (as
/// root), else to the hard limit. Returns the soft limit now in force.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with valid, owned structs.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let want = lim.rlim_max.max(32768);
        let wide = libc::rlimit { rlim_cur: want, rlim_max: want };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wide) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a path this test owns.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn sixty_four_overlapping_ranges_are_merged_and_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let size = 64usize << 20;
    let data = bytes(size, 64);
    std::fs::write(dir.path().join("big.bin"), &data).unwrap();
    let s = Serve::start(dir.path(), Some(TOKEN), &[]);
    let ranges = format!("bytes={}", vec!["0-"; 64].join(","));
    let head =
        format!("GET /files/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nRange: {ranges}\r\n\r\n");
    // Two clients ask and then read nothing: the answer is one merged part, streamed.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let (c, h) = head_only(&s.addr, &head);
        assert!(h.starts_with("HTTP/1.1 206"), "{h}");
        let h = h.to_ascii_lowercase();
        assert!(h.contains(&format!("content-range: bytes 0-{}/{size}", size - 1)), "{h}");
        assert!(h.contains(&format!("content-length: {size}")), "{h}");
        holders.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    after(&s);
    drop(holders);

    let r = s.request("GET", "/files/big.bin", &[("Range", &ranges)], b"").unwrap();
    assert_eq!(r.status, 206);
    assert!(r.body == data, "the merged answer is the file");
    // Many distinct ranges: one part spanning them; a few: multipart, in file order.
    let spread: Vec<String> = (0..40).map(|k| format!("{}-{}", k * 1000, k * 1000 + 9)).collect();
    let r = s.request("GET", "/files/big.bin", &[("Range", &format!("bytes={}", spread.join(",")))], b"").unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.headers.iter().find(|(k, _)| k == "content-range").unwrap().1, format!("bytes 0-39009/{size}"));
    assert_eq!(r.body, &data[..39010]);
    let r = s.request("GET", "/files/big.bin", &[("Range", "bytes=500-509,0-9,5-14")], b"").unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 206);
    assert_eq!(text.matches("Content-Range: ").count(), 2, "{text}");
    assert!(text.find("bytes 0-14/").unwrap() < text.find("bytes 500-509/").unwrap(), "{text}");
    after(&s);
}

#[test]
fn a_fifo_under_a_root_is_refused_unopened_and_sigterm_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("pipe"));
    std::fs::write(dir.path().join("big.bin"), bytes(32 << 20, 3)).unwrap();
    let mut s = Serve::start(dir.path(), Some(TOKEN), &[]);
    let pipe = s.root.join("pipe").display().to_string();
    s.request("GET", "/files/pipe", &[], b"").unwrap().error(403, "FIFO");
    compute(&s, &xor(&format!("file://{pipe}"))).error(403, "FIFO");
    compute(&s, &xor(&pipe)).error(403, "FIFO");
    s.request("GET", "/transfer/recipe/pipe", &[], b"").unwrap().error(403, "FIFO");
    s.post_json("/transfer/fetch", &json!({"path": "pipe", "blake3": "00".repeat(32), "chunks": [0]}))
        .error(403, "FIFO");
    after(&s);

    // A client that stops reading a large answer and an idle connection do not hold the stop.
    let head = format!("GET /files/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    let (_stalled, h) = head_only(&s.addr, &head);
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    let _idle = TcpStream::connect(&s.addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    // SAFETY: kill(2) on the pid of a child this test started.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) }, 0);
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "magicfs serve did not stop within 2 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn loopback_and_private_sources_must_be_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.bin"), [7u8; 100]).unwrap();
    // A local-only service on another port.
    let (secret, hits) = tiny_server(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret".to_vec());
    let port = secret.rsplit(':').next().unwrap().to_string();
    let default = Serve::start(dir.path(), Some(TOKEN), &[]);
    for url in [format!("http://{secret}/"), format!("http://localhost:{port}/"), format!("https://{secret}/")] {
        compute(&default, &xor(&url)).error(403, "allowlist");
    }
    let star = Serve::start(dir.path(), Some(TOKEN), &["--allow-host", "*"]);
    for url in [
        format!("http://{secret}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://2130706433:{port}/"),
        "http://10.0.0.1/x".to_string(),
        "http://192.168.1.1/x".to_string(),
        "http://[fd00::1]/x".to_string(),
    ] {
        compute(&star, &xor(&url)).error(403, "allowlist");
    }
    // The name is resolved, and its address judged: `*` covers public addresses only.
    compute(&star, &xor(&format!("http://localhost:{port}/"))).error(403, "resolves to");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "no request reached the local service");
    // Named, it is read (and found not to serve ranges).
    let named = Serve::start(dir.path(), Some(TOKEN), &["--allow-host", "127.0.0.1"]);
    compute(&named, &xor(&format!("http://{secret}/"))).error(400, "byte ranges");
    for s in [&default, &star, &named] {
        after(s);
    }
}

#[test]
fn tens_of_thousands_of_half_sent_requests() {
    let limit = raise_nofile();
    let n = (limit.saturating_sub(1024) as usize).min(20_000);
    assert!(
        n >= 10_000,
        "the limit on open files ({limit}) leaves room for only {n} connections; run as root or raise it (ulimit -Hn)"
    );
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(dir.path(), Some(TOKEN), &[]);
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = TcpStream::connect(&s.addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        // The server may already have closed an older one; a failed write is fine.
        let _ = c.write_all(b"GET /files/x HTTP/1.1\r\nHost: x\r\n");
        held.push(c);
    }
    // Still held: new clients get in, the oldest idle ones made room.
    after(&s);
    let evicted = s.metric("magicfs_http_connections_evicted_total");
    assert!(evicted >= (n - 1100) as f64, "{evicted} of {n} connections evicted");
    assert!(s.metric("magicfs_http_connections") <= 1024.0);
    drop(held);
    after(&s);
}

#[test]
fn a_50_mib_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.bin"), [1u8; 10]).unwrap();
    let s = Serve::start(dir.path(), Some(TOKEN), &[]);
    let body = vec![b' '; 50 << 20];
    let started = Instant::now();
    raw_request(&s.addr, "POST", "/compute", &[AUTH], &body).unwrap().error(413, "larger than");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Without a length: refused once past the limit.
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /compute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, " ".repeat(1 << 20));
    for _ in 0..50 {
        if c.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{}", &text[..text.len().min(300)]);
    after(&s);
}

#[test]
fn a_hundred_thousand_instructions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.bin"), [1u8; 10]).unwrap();
    let many: Vec<Value> = (0..100_000).map(|_| json!({"op": "add", "offset": 0, "length": 1})).collect();
    let s = Serve::start(dir.path(), Some(TOKEN), &[]);
    let url = format!("file://{}/ok.bin", s.root.display());
    compute(&s, &json!({"data_url": url, "instructions": many})).error(413, "larger than");
    after(&s);
    let roomy = Serve::start(dir.path(), Some(TOKEN), &["--max-body", "16MiB"]);
    compute(&roomy, &json!({"data_url": url, "instructions": many})).error(400, "100000");
    after(&roomy);
}

#[test]
fn five_hundred_slow_clients_hold_nothing() {
    raise_nofile();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.bin"), [1u8; 10]).unwrap();
    let s = Serve::start(dir.path(), Some(TOKEN), &["--header-timeout", "2", "--body-timeout", "2"]);
    // Heads sent a byte at a time.
    let mut slow: Vec<TcpStream> = (0..500).map(|_| TcpStream::connect(&s.addr).unwrap()).collect();
    // Bodies sent a byte at a time.
    let head = format!(
        "POST /compute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let mut trickle: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = TcpStream::connect(&s.addr).unwrap();
            c.write_all(head.as_bytes()).unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    let line =
        b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut k = 0;
    let mut checked = false;
    while started.elapsed() < Duration::from_millis(3500) {
        for c in slow.iter_mut().chain(trickle.iter_mut()) {
            let _ = c.write_all(&line[k % line.len()..k % line.len() + 1]);
        }
        k += 1;
        if !checked && started.elapsed() > Duration::from_secs(1) {
            after(&s);
            checked = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every slow head was cut off without an answer; every slow body got a 408.
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = Vec::new();
        match c.read_to_end(&mut got) {
            Ok(_) => assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got)),
            Err(e) => assert!(e.kind() == ErrorKind::ConnectionReset, "still open: {e}"),
        }
    }
    for c in &mut trickle {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("did not arrive within"), "{text}");
    }
    after(&s);
}

#[test]
fn sixty_four_parallel_compute_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(32 << 20, 8);
    std::fs::write(dir.path().join("d.bin"), &data).unwrap();
    let zeros = data.iter().filter(|&&b| b == 0).count() as u64;
    let s = Serve::start(dir.path(), Some(TOKEN), &[]);
    let url = format!("file://{}/d.bin", s.root.display());
    let body =
        json!({"data_url": url, "instructions": [{"op": "counteq", "imm": 0, "offset": 0, "length": data.len()}]});
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..64).map(|_| scope.spawn(|| compute(&s, &body))).collect();
        std::thread::sleep(Duration::from_millis(50));
        after(&s);
        for w in workers {
            let r = w.join().unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.json()["results"][0]["value"], zeros);
        }
    });
    after(&s);
}

#[test]
fn malformed_json_negative_and_huge_offsets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.bin"), [1u8; 1000]).unwrap();
    let s = Serve::start(dir.path(), Some(TOKEN), &[]);
    let url = format!("file://{}/ok.bin", s.root.display());
    let send = |body: &str| s.request("POST", "/compute", &[], body.as_bytes()).unwrap();
    send("{not json").error(400, "not a valid compute request");
    send("[]").error(400, "not a valid compute request");
    send("").error(400, "not a valid compute request");
    send(&"[".repeat(100_000)).error(400, "not a valid compute request");
    let program = |ins: Value| json!({"data_url": url, "instructions": [ins]}).to_string();
    send(&program(json!({"op": "add", "offset": -1, "length": 1}))).error(400, "offset");
    send(&program(json!({"op": "add", "offset": 0, "length": -5}))).error(400, "length");
    send(&program(json!({"op": "add", "offset": u64::MAX, "length": 1}))).error(400, "past the end");
    send(&program(json!({"op": "add", "offset": 1, "length": u64::MAX}))).error(400, "past the end");
    send(&program(json!({"op": "add", "offset": 1e30, "length": 1}))).error(400, "offset");
    send(&program(json!({"op": "add", "offset": "0", "length": 1}))).error(400, "offset");
    // Ranges out of reach.
    s.request("GET", "/files/ok.bin", &[("Range", &format!("bytes={}-", u64::MAX))], b"")
        .unwrap()
        .error(416, "no requested range");
    let r = s.request("GET", "/files/ok.bin", &[("Range", "bytes=99999999999999999999999-")], b"").unwrap();
    assert_eq!((r.status, r.body.len()), (200, 1000), "an unreadable Range is ignored");
    after(&s);
}

#[test]
fn path_escapes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("ok.bin"), [1u8; 10]).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("etc")).unwrap();
    let s = Serve::start(dir.path(), Some(TOKEN), &[]);
    for path in [
        "/files/../../../etc/passwd",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files/sub/%2E%2E/%2E%2E/etc/passwd",
        "/files/%2fetc%2fpasswd",
        "/files//etc/passwd",
        "/files/out",
        "/files/etc/passwd",
        "/transfer/recipe/out",
        "/transfer/recipe/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let r = s.request("GET", path, &[], b"").unwrap();
        assert!(r.status == 403 || r.status == 404, "{path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
        assert!(r.json()["error"].is_string(), "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains("root:"), "{path}");
    }
    s.request("GET", "/files/ok.bin%00.txt", &[], b"").unwrap().error(400, "NUL");
    let root = s.root.display().to_string();
    for url in [
        "file:///etc/passwd".to_string(),
        format!("{root}/../../etc/passwd"),
        format!("file://{root}/%2e%2e/%2e%2e/etc/passwd"),
        format!("{root}/out"),
        format!("{root}/etc/passwd"),
    ] {
        compute(&s, &xor(&url)).error(403, "outside");
    }
    compute(&s, &xor(&format!("file://{root}/ok.bin%00"))).error(400, "NUL");
    // (A push onto `out` would replace the link itself, inside the root.)
    for dest in ["../x.bin", "/etc/x.bin", "etc/x.bin", "sub/../../x.bin"] {
        let recipe = json!({"size": 1, "blake3": "00".repeat(32), "chunks": [["11".repeat(32), 1]]});
        let r = s.post_json("/transfer/offer", &json!({"path": dest, "recipe": recipe}));
        assert!(r.status == 403 || r.status == 400, "{dest}: {}", r.status);
    }
    assert!(std::fs::read_dir("/etc").unwrap().all(|e| e.unwrap().file_name() != "x.bin"));
    after(&s);
}

#[test]
fn ssrf_targets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.bin"), [1u8; 10]).unwrap();
    let (other, _) = tiny_server(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".to_vec());
    let redirect_to = |location: String| {
        tiny_server(move |_| {
            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n").into_bytes()
        })
        .0
    };
    let metadata = redirect_to("http://169.254.169.254/latest/meta-data/".into());
    let sideways = redirect_to(format!("http://{other}/"));
    let scheme = redirect_to(format!("https://{other}/"));
    let s = Serve::start(dir.path(), Some(TOKEN), &["--allow-host", "127.0.0.1,*"]);
    compute(&s, &xor("http://169.254.169.254/latest/meta-data/")).error(403, "allowlist");
    compute(&s, &xor("http://[fe80::1]/")).error(403, "allowlist");
    compute(&s, &xor("http://0.0.0.0:22/")).error(403, "allowlist");
    compute(&s, &xor("http://127.0.0.2:22/")).error(403, "allowlist");
    compute(&s, &xor("http://[::1]:22/")).error(403, "allowlist");
    compute(&s, &xor(&format!("http://{metadata}/d"))).error(403, "169.254.169.254");
    compute(&s, &xor(&format!("http://{sideways}/d"))).error(403, "another address");
    compute(&s, &xor(&format!("http://{scheme}/d"))).error(403, "another address");
    compute(&s, &xor("gopher://127.0.0.1:25/")).error(400, "not supported");
    after(&s);
}

#[test]
fn missing_or_wrong_tokens_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.bin"), [1u8; 10]).unwrap();
    let s = Serve::start(dir.path(), Some(TOKEN), &[]);
    let routes = [
        ("GET", "/metrics"),
        ("GET", "/probe"),
        ("POST", "/compute"),
        ("GET", "/files/ok.bin"),
        ("POST", "/transfer/offer"),
        ("POST", "/transfer/abc/chunks"),
        ("POST", "/transfer/abc/commit"),
        ("GET", "/transfer/recipe/ok.bin"),
        ("POST", "/transfer/fetch"),
        ("GET", "/nowhere"),
    ];
    for (method, path) in routes {
        for auth in [None, Some("Bearer wrong"), Some("Bearer "), Some("Basic YWJ1c2UtdG9rZW4="), Some(TOKEN)] {
            let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
            let r = s.request_as(method, path, &headers, b"{}").unwrap();
            r.error(401, "token");
        }
    }
    // /health needs no token and says nothing about paths without it.
    let open = s.request_as("GET", "/health", &[], b"").unwrap().json();
    assert_eq!((open["status"].as_str(), open.get("roots")), (Some("ok"), None));
    let authed = s.request("GET", "/health", &[], b"").unwrap().json();
    assert_eq!(authed["roots"][0].as_str(), Some(s.root.to_str().unwrap()));
    // 4xx answers are in the request log.
    let log = s.log_with(&["path=/transfer/offer"]);
    assert!(log.contains("status=401") && log.contains("path=/transfer/offer") && log.contains("WARN"), "{log}");
    assert!(!log.contains(TOKEN), "the token is never logged");
    after(&s);

    // Without a token, nothing is written; on a non-loopback address the
    // warning says so.
    let open_server = Serve::start(dir.path(), None, &["--listen", "0.0.0.0:0"]);
    let warning = open_server.log_with(&["warning"]);
    assert!(
        warning.contains("without a token")
            && warning.contains("can read the files")
            && warning.contains("transfers into them are refused"),
        "{warning}"
    );
    let recipe = json!({"size": 1, "blake3": "00".repeat(32), "chunks": [["11".repeat(32), 1]]});
    open_server.post_json("/transfer/offer", &json!({"path": "x.bin", "recipe": recipe})).error(403, "no token");
    open_server.post_json("/transfer/abc/chunks", &json!({})).error(403, "no token");
    open_server.post_json("/transfer/abc/commit", &json!({})).error(403, "no token");
    assert!(!dir.path().join("x.bin").exists());
    let health = open_server.request("GET", "/health", &[], b"").unwrap().json();
    assert!(health.get("roots").is_none(), "{health}");
    assert_eq!(open_server.request("GET", "/files/ok.bin", &[], b"").unwrap().status, 200);
    after(&open_server);
}

#[test]
fn slow_bodies_to_merged_routes_are_cut_off_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.bin"), [1u8; 10]).unwrap();
    let s = Serve::start(dir.path(), Some(TOKEN), &["--console", "--body-timeout", "2"]);
    let head = format!(
        "PUT /console/api/file?path=/slow.txt HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n",
        s.addr
    );
    let mut uploads: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = TcpStream::connect(&s.addr).unwrap();
            c.write_all(head.as_bytes()).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    let mut answers: Vec<Option<Vec<u8>>> = vec![None; uploads.len()];
    while answers.iter().any(Option::is_none) && started.elapsed() < Duration::from_secs(6) {
        for (c, answer) in uploads.iter_mut().zip(answers.iter_mut()) {
            if answer.is_some() {
                continue;
            }
            let _ = c.write_all(b"x");
            let mut buf = [0u8; 4096];
            if let Ok(n) = c.read(&mut buf) {
                let mut got = buf[..n].to_vec();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ = c.read_to_end(&mut got);
                *answer = Some(got);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    for a in &answers {
        let text = String::from_utf8_lossy(a.as_deref().unwrap_or_else(|| panic!("no answer after {took:?}")));
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("did not arrive within 2 s"), "{text}");
    }
    assert!(took < Duration::from_secs(5), "the slow uploads were answered after {took:?}");
    assert!(!s.root.join("slow.txt").exists());
    after(&s);
}
