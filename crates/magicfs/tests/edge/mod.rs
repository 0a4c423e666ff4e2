//! Helpers for tests that run real `magicfs serve` processes on loopback and
//! speak HTTP/1.1 to them: plain requests written by hand over a socket,
//! https through the project's client trusting the test CA.
#![allow(dead_code)]

use magicfs_net::{Allowlist, Client, HttpUrl, Timeouts};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_magicfs")
}

/// Runs `magicfs ARGS` with extra environment variables.
pub fn magicfs_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("MAGICFS_TOKEN")
        .env_remove("MAGICFS_ALLOW_HOSTS")
        .env_remove("MAGICFS_ENDPOINTS")
        .env_remove("MAGICFS_CA_FILE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run magicfs")
}

/// Runs `magicfs ARGS`.
pub fn magicfs(args: &[&str]) -> Output {
    magicfs_env(args, &[])
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a run that failed at run time (exit 1: the network, a peer, a
/// file) with a message holding every needle.
pub fn assert_error(o: &Output, needles: &[&str]) {
    assert_failed(o, 1, needles);
}

/// Asserts a run refused as a usage error (exit 2: a flag or value) with a
/// message holding every needle.
pub fn assert_usage_error(o: &Output, needles: &[&str]) {
    assert_failed(o, 2, needles);
}

fn assert_failed(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {err}", stdout(o));
    for n in needles {
        assert!(err.to_lowercase().contains(&n.to_lowercase()), "{err:?} lacks {n:?}");
    }
}

/// A running `magicfs serve`.
pub struct Serve {
    pub child: Child,
    pub addr: String,
    pub root: PathBuf,
    pub token: Option<String>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// For https: a client trusting the test CA.
    client: Option<Client>,
    log: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `magicfs serve` on a free loopback port over `root`.
    pub fn start(root: &Path, token: Option<&str>, extra: &[&str]) -> Serve {
        Serve::launch(root, token, extra, None)
    }

    /// Starts an https `magicfs serve` with the certificate and key files
    /// `cert`, spoken to through a client that trusts the CA file `ca`.
    pub fn start_tls(root: &Path, token: Option<&str>, cert: (&Path, &Path), ca: &Path, extra: &[&str]) -> Serve {
        let mut args = vec!["--tls-cert", cert.0.to_str().unwrap(), "--tls-key", cert.1.to_str().unwrap()];
        args.extend_from_slice(extra);
        Serve::launch(root, token, &args, Some(ca))
    }

    fn launch(root: &Path, token: Option<&str>, extra: &[&str], ca: Option<&Path>) -> Serve {
        let root = root.canonicalize().unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("serve");
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.arg("--root")
            .arg(&root)
            .args(extra)
            .env_remove("MAGICFS_TOKEN")
            .env_remove("MAGICFS_ALLOW_HOSTS")
            .env_remove("MAGICFS_CA_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.env("MAGICFS_TOKEN", t);
        }
        let mut child = cmd.spawn().expect("spawn magicfs serve");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut found = None;
        while err.read_line(&mut line).unwrap() > 0 {
            if let Some(a) = line.trim().strip_prefix("magicfs serve: listening on ") {
                found = Some(a.to_string());
                break;
            }
            line.clear();
        }
        let url = found.unwrap_or_else(|| panic!("magicfs serve did not report its address: {line}"));
        let (scheme, addr) = match url.split_once("://") {
            Some(("https", a)) => ("https", a.to_string()),
            Some(("http", a)) => ("http", a.to_string()),
            _ => panic!("not a URL: {url}"),
        };
        // Keep draining stderr (the request log) so the server never blocks on a full pipe.
        let log = Arc::new(Mutex::new(String::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while err.read_line(&mut line).unwrap_or(0) > 0 {
                let mut k = kept.lock().unwrap();
                if k.len() < 4 << 20 {
                    k.push_str(&line);
                }
                line.clear();
            }
        });
        let client = ca.map(|ca| Client::with_ca_file(Allowlist::loopback(), Timeouts::default(), ca).unwrap());
        let tls = client.is_some();
        let s = Serve { child, addr, root, token: token.map(str::to_string), scheme, client, log };
        // (An https server is listening once it says so; its certificate may be one the test expects refused.)
        let deadline = Instant::now() + Duration::from_secs(30);
        while !tls && s.request("GET", "/health", &[], b"").map(|r| r.status) != Some(200) {
            assert!(Instant::now() < deadline, "/health did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// What the server wrote to stderr so far (its request log).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The request log once it holds every needle (waiting up to 5 s for
    /// the lines to arrive).
    pub fn log_with(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if needles.iter().all(|n| log.contains(n)) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One request with the token (when the server has one).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Reply> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            all.push(("Authorization", a.as_str()));
        }
        self.request_as(method, path, &all, body)
    }

    /// One request with exactly `headers` (no token added).
    pub fn request_as(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Reply> {
        let Some(client) = &self.client else {
            return raw_request(&self.addr, method, path, headers, body);
        };
        let url = HttpUrl::parse(&format!("{}{path}", self.url())).ok()?;
        let r = client.request(method, &url, headers, body).ok()?;
        let status = r.status;
        let headers = r.headers().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
        let body = r.read_body(1 << 30).ok()?;
        Some(Reply { status, headers, body })
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
            .unwrap_or_else(|| panic!("POST {path}: no reply"))
    }

    /// A counter from `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let r = self.request("GET", "/metrics", &[], b"").expect("metrics");
        let text = String::from_utf8_lossy(&r.body).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    pub fn alive(&self) -> bool {
        self.request_as("GET", "/health", &[], b"").is_some_and(|r| r.status == 200)
    }

    /// Asserts that `/health` answers 200 within `limit` on a new connection.
    pub fn assert_healthy_within(&self, limit: Duration) {
        let started = Instant::now();
        let r = self.request_as("GET", "/health", &[], b"");
        let took = started.elapsed();
        assert_eq!(r.as_ref().map(|r| r.status), Some(200), "/health did not answer 200");
        assert!(took < limit, "/health took {took:?}");
    }

    /// The server's resident memory: (all, anonymous) in MiB.
    pub fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("RssAnon:"))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A parsed answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the status and a JSON error holding `needle`.
    pub fn error(&self, status: u16, needle: &str) {
        let text = String::from_utf8_lossy(&self.body).into_owned();
        assert_eq!(self.status, status, "{text}");
        let msg = self.json()["error"].as_str().unwrap_or_else(|| panic!("no error field: {text}")).to_string();
        assert!(msg.to_lowercase().contains(&needle.to_lowercase()), "{msg:?} lacks {needle:?}");
    }
}

/// One HTTP/1.1 request over a fresh connection; `None` when it fails.
pub fn raw_request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Reply { status, headers, body: raw[end + 4..].to_vec() })
}

/// A tiny origin on loopback that answers every request with `respond`
/// (given the request head), counting requests. Runs until the process ends.
pub fn tiny_server(
    respond: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = count.clone();
    let respond = std::sync::Arc::new(respond);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let respond = respond.clone();
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut stream = stream;
                let _ = stream.write_all(&respond(&head));
            });
        }
    });
    (addr, count)
}

/// Pseudo-random bytes with runs of zeros (xorshift64*).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        let w = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.extend_from_slice(&if w.is_multiple_of(5) { [0; 8] } else { w.to_le_bytes() });
    }
    out.truncate(len);
    out
}
