//! `magicfs serve` end to end: the real binary on a free loopback port with a
//! token, spoken to in plain HTTP/1.1 over a TCP socket. Compute results are
//! checked against the plain reference definitions; the security checks make
//! sure nothing outside the root is read and the server keeps answering.

use magicfs_compute::ops::reference;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret-token";

/// A running `magicfs serve` over a temporary root.
struct Server {
    child: Child,
    addr: String,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server on 127.0.0.1 (port chosen by the kernel) with `TOKEN`.
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let root = root.canonicalize().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_magicfs"))
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(&root)
            .env("MAGICFS_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn magicfs serve");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut addr = None;
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 {
            if let Some(a) = line.trim().strip_prefix("magicfs serve: listening on http://") {
                addr = Some(a.to_string());
                break;
            }
            line.clear();
        }
        let addr = addr.unwrap_or_else(|| panic!("magicfs serve did not report its address: {line}"));
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let server = Server { child, addr, root, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.try_get("/health", &[]).map(|r| r.status) != Some(200) {
            assert!(Instant::now() < deadline, "/health did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// One request; `None` when the connection fails.
    fn try_send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Reply> {
        let mut s = TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        // The server may answer (413) before reading a large body; the reply still comes.
        let _ = s.write_all(&request);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        Reply::parse(&raw)
    }

    fn try_get(&self, path: &str, headers: &[(&str, &str)]) -> Option<Reply> {
        self.try_send("GET", path, headers, b"")
    }

    /// A request with the token.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let auth = format!("Bearer {TOKEN}");
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        self.try_send(method, path, &all, body).unwrap_or_else(|| panic!("{method} {path}: no reply"))
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", path, headers, b"")
    }

    fn compute(&self, body: &Value) -> Reply {
        self.send("POST", "/compute", &[("Content-Type", "application/json")], body.to_string().as_bytes())
    }

    /// The file URL of `name` under the root.
    fn url(&self, name: &str) -> String {
        format!("file://{}", self.root.join(name).display())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn parse(raw: &[u8]) -> Option<Reply> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[end + 4..].to_vec();
        if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
            body = dechunk(&body)?;
        }
        Some(Reply { status, headers, body })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status and a JSON error naming `needle`.
    fn error(&self, status: u16, needle: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"), "{}", self.text());
        let msg =
            self.json()["error"].as_str().unwrap_or_else(|| panic!("no error field: {}", self.text())).to_string();
        assert!(msg.to_lowercase().contains(&needle.to_lowercase()), "{msg:?} lacks {needle:?}");
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).ok()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// Bytes with runs of zeros, so counting them is not trivial.
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            let w = self.next();
            out.extend_from_slice(&if w.is_multiple_of(5) { [0; 8] } else { w.to_le_bytes() });
        }
        out.truncate(len);
        out
    }
}

fn expected(op: &str, imm: u8, w: &[u8]) -> u64 {
    reference::eval(op.parse().expect("a known op"), imm, w)
}

fn write(root: &Path, name: &str, data: &[u8]) {
    std::fs::write(root.join(name), data).unwrap();
}

#[test]
fn compute_matches_the_reference_and_is_counted() {
    let s = Server::start();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let data = rng.bytes(3 << 20);
    write(&s.root, "data.bin", &data);
    let size = data.len() as u64;
    for (round, url) in [s.url("data.bin"), s.root.join("data.bin").display().to_string()].into_iter().enumerate() {
        let mut program = Vec::new();
        for i in 0..120 {
            let op = ["counteq", "xor", "add", "fnv", "crc32c"][i % 5];
            let (offset, length) = match i % 4 {
                0 => (0, size),
                1 => (rng.below(size), 0),
                _ => {
                    let offset = rng.below(size);
                    (offset, rng.below(size - offset + 1))
                }
            };
            let mut ins = json!({"op": op, "offset": offset, "length": length});
            if op == "counteq" {
                ins["imm"] = json!(rng.below(2) * rng.below(256));
            }
            program.push(ins);
        }
        let r = s.compute(&json!({"data_url": url, "instructions": program}));
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        let body = r.json();
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), program.len());
        let mut total = 0;
        for (ins, out) in program.iter().zip(results) {
            let (op, offset, length) =
                (ins["op"].as_str().unwrap(), ins["offset"].as_u64().unwrap(), ins["length"].as_u64().unwrap());
            let imm = ins["imm"].as_u64().unwrap_or(0) as u8;
            let w = &data[offset as usize..(offset + length) as usize];
            assert_eq!(out["op"], op);
            assert_eq!(out["offset"], offset);
            assert_eq!(out["length"], length);
            assert_eq!(out["value"].as_u64().unwrap(), expected(op, imm, w), "{ins}");
            total += length;
        }
        assert_eq!(body["timing"]["bytes_processed"].as_u64(), Some(total));
        assert!(body["timing"]["elapsed_ms"].as_f64().unwrap() >= 0.0);
    }

    // An empty file and an empty program.
    write(&s.root, "empty", b"");
    let r = s.compute(&json!({"data_url": s.url("empty"), "instructions": [{"op":"fnv","offset":0,"length":0}]}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["results"][0]["value"].as_u64(), Some(reference::fnv(b"")));
    let r = s.compute(&json!({"data_url": s.url("data.bin"), "instructions": []}));
    assert_eq!(r.json()["results"], json!([]));

    let m = s.get("/metrics", &[]);
    assert_eq!(m.status, 200);
    let text = m.text();
    assert!(text.contains("magicfs_compute_requests_total 4\n"), "{text}");
    assert!(text.contains("magicfs_compute_bytes_total "), "{text}");
    assert!(text.contains("magicfs_compute_seconds_total "), "{text}");
    assert!(text.contains("magicfs_http_requests_total{route=\"/compute\",status=\"200\"} 4\n"), "{text}");
}

#[test]
fn refuses_what_lies_outside_the_root_and_keeps_serving() {
    let s = Server::start();
    write(&s.root, "ok.bin", &[7u8; 1000]);
    std::os::unix::fs::symlink("/etc/passwd", s.root.join("passwd")).unwrap();
    std::fs::create_dir(s.root.join("sub")).unwrap();
    let xor = json!([{"op": "xor", "offset": 0, "length": 1}]);
    let program = |url: &str| json!({"data_url": url, "instructions": xor});

    s.compute(&program("file:///etc/passwd")).error(403, "outside");
    s.compute(&program("/etc/passwd")).error(403, "outside");
    s.compute(&program(&format!("{}/sub/../ok.bin", s.root.display()))).error(403, "outside");
    s.compute(&program(&format!("file://{}/../root/ok.bin", s.root.display()))).error(403, "outside");
    s.compute(&program(&s.url("passwd"))).error(403, "outside");
    s.compute(&program("http://10.0.0.1/x")).error(403, "allowlist");
    s.compute(&program("http://169.254.169.254/latest/meta-data/")).error(403, "allowlist");
    s.compute(&program("https://example.com/x")).error(403, "allowlist");
    s.compute(&program("ftp://10.0.0.1/x")).error(400, "remote sources are not supported by this server");
    s.compute(&program(&s.url("missing.bin"))).error(404, "no such file");
    s.compute(&program(&s.url("sub"))).error(400, "not a regular file");

    // Tokens.
    let body = program(&s.url("ok.bin")).to_string();
    let r = s.try_send("POST", "/compute", &[], body.as_bytes()).unwrap();
    r.error(401, "token");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    s.try_send("POST", "/compute", &[("Authorization", "Bearer wrong")], body.as_bytes()).unwrap().error(401, "token");
    s.try_get("/metrics", &[("Authorization", "Bearer s3cret-tokeN")]).unwrap().error(401, "token");
    s.try_get("/files/ok.bin", &[]).unwrap().error(401, "token");
    assert_eq!(s.try_get("/health", &[]).unwrap().status, 200);

    // Sizes: a body over the limit, and too many instructions.
    let padding = "x".repeat(2 << 20);
    let big = json!({"data_url": s.url("ok.bin"), "instructions": xor, "pad": padding});
    s.compute(&big).error(413, "larger than");
    let many: Vec<Value> = (0..100_000).map(|_| json!({"op": "add", "offset": 0, "length": 1})).collect();
    let r = s.compute(&json!({"data_url": s.url("ok.bin"), "instructions": many}));
    assert!(r.status == 400 || r.status == 413, "{}", r.status);
    assert!(r.json()["error"].is_string());
    let some: Vec<Value> = (0..4097).map(|_| json!({"op": "add", "offset": 0, "length": 1})).collect();
    s.compute(&json!({"data_url": s.url("ok.bin"), "instructions": some})).error(400, "4097");

    // Malformed requests name the problem.
    let send = |body: &str| s.send("POST", "/compute", &[], body.as_bytes());
    send("{not json").error(400, "not a valid compute request");
    send(r#"{"instructions":[]}"#).error(400, "data_url");
    send(&json!({"data_url": s.url("ok.bin"), "instructions": [{"op":"sha1","offset":0,"length":1}]}).to_string())
        .error(400, "unknown op \"sha1\"");
    send(&json!({"data_url": s.url("ok.bin"), "instructions": [{"op":"counteq","offset":0,"length":1}]}).to_string())
        .error(400, "imm");
    send(&json!({"data_url": s.url("ok.bin"), "instructions": [{"op":"xor","offset":990,"length":11}]}).to_string())
        .error(400, "past the end");
    send(&json!({"data_url": s.url("ok.bin"), "instructions": {"op":"xor"}}).to_string()).error(400, "array");
    s.get("/nowhere", &[]).error(404, "no such route");
    s.send("DELETE", "/compute", &[], b"").error(405, "method not allowed");

    let r = s.try_get("/health", &[]).unwrap();
    assert_eq!(r.status, 200);
    let health = r.json();
    assert_eq!(health["status"], "ok");
    assert!(health.get("roots").is_none(), "roots only for the token: {health}");
    assert_eq!(s.get("/health", &[]).json()["roots"][0].as_str(), Some(s.root.to_str().unwrap()));
    let r = s.compute(&program(&s.url("ok.bin")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["results"][0]["value"], 7);
}

#[test]
fn files_are_served_with_ranges_and_etags() {
    let s = Server::start();
    let data = Rng(99).bytes(10_000);
    write(&s.root, "f.bin", &data);
    std::fs::create_dir(s.root.join("dir")).unwrap();
    write(&s.root.join("dir"), "a b.txt", b"spaced");
    std::os::unix::fs::symlink("/etc/passwd", s.root.join("passwd")).unwrap();

    let whole = s.get("/files/f.bin", &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, data);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert!(whole.header("last-modified").is_some_and(|v| v.ends_with("GMT")));
    let etag = whole.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    assert_eq!(s.get("/files/dir/a%20b.txt", &[]).body, b"spaced");

    let r = s.get("/files/f.bin", &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/10000"));
    assert_eq!(r.body, &data[100..200]);
    let r = s.get("/files/f.bin", &[("Range", "bytes=-10")]);
    assert_eq!((r.status, &r.body[..]), (206, &data[9990..]));

    let r = s.get("/files/f.bin", &[("Range", "bytes=0-9,20-29")]);
    assert_eq!(r.status, 206);
    let ct = r.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap_or_else(|| panic!("{ct}"));
    let mut expected = Vec::new();
    for (a, b) in [(0, 9), (20, 29)] {
        expected.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b}/10000\r\n\r\n"
            )
            .as_bytes(),
        );
        expected.extend_from_slice(&data[a..=b]);
    }
    expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(r.body, expected);

    let r = s.get("/files/f.bin", &[("Range", "bytes=10000-20000")]);
    r.error(416, "no requested range");
    assert_eq!(r.header("content-range"), Some("bytes */10000"));

    let r = s.get("/files/f.bin", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(s.get("/files/f.bin", &[("If-None-Match", "\"other\"")]).status, 200);
    let r = s.get("/files/f.bin", &[("Range", "bytes=0-0"), ("If-Range", "\"stale\"")]);
    assert_eq!((r.status, r.body.len()), (200, data.len()));

    for path in [
        "/files/../../../etc/passwd",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files/dir/%2E%2E/%2E%2E/etc/passwd",
        "/files//etc/passwd",
        "/files/%2fetc%2fpasswd",
        "/files/passwd",
        "/files/missing",
        "/files/dir",
    ] {
        let r = s.get(path, &[]);
        assert!(r.status == 403 || r.status == 404, "{path}: {} {}", r.status, r.text());
        assert!(r.json()["error"].is_string(), "{path}");
        assert!(!r.text().contains("root:"), "{path}");
    }
    assert_eq!(s.try_get("/health", &[]).unwrap().status, 200);
}

#[test]
fn stops_cleanly_on_sigterm() {
    let mut s = Server::start();
    // SAFETY: kill(2) on the pid of a child this test started.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "magicfs serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}
