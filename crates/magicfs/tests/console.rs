//! The web console of `magicfs serve --console`, through real parts: a
//! MagicFS mount with the real models, the real server, raw HTTP for the
//! security headers and limits, and real headless Chromium (Debian's
//! `chromium`, driven by PyPI's playwright from `scripts/client-venv.sh`)
//! for what a person does in it.

mod common;

use common::{bin, client_python, scratch, smollm2, Mount, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `magicfs serve --root ROOT --console` on a free port.
fn serve(root: &Path, token: &str, extra: &[&str]) -> Server {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--root", root.to_str().unwrap(), "--listen", "127.0.0.1:0", "--console"])
        .args(extra)
        .env("MAGICFS_TOKEN", token);
    Server::start(cmd, "listening on http://")
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Reply { status, headers: h.to_ascii_lowercase(), body: b.to_string() }
}

#[test]
fn console_headers_token_and_limits() {
    let tmp = scratch("console-http");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), "hello").unwrap();
    let token = "console-token";
    let s = serve(&root, token, &["--max-write", "64KiB"]);
    let auth = format!("Bearer {token}");
    let with = [("Authorization", auth.as_str())];

    // The page and its files need no token and carry the security headers.
    for p in ["/console/", "/console/assets/app.js", "/console/assets/app.css"] {
        let r = request(&s.addr, "GET", p, &[], b"");
        assert_eq!(r.status, 200, "{p}: {}", r.headers);
        assert!(r.headers.contains("content-security-policy: default-src 'none'; script-src 'self'"), "{}", r.headers);
        assert!(r.headers.contains("x-frame-options: deny") && r.headers.contains("x-content-type-options: nosniff"));
        assert!(r.headers.contains("referrer-policy: no-referrer"), "{}", r.headers);
        assert!(!r.headers.contains("set-cookie"), "{}", r.headers);
    }
    let page = request(&s.addr, "GET", "/console/", &[], b"").body;
    assert!(!page.contains("<script>") && !page.contains("onclick="), "no inline script in the page");

    // Every API route needs the token, and so do serve's own routes.
    for p in ["/console/api/list?path=/", "/console/api/status", "/console/api/file?path=/a.txt", "/files/a.txt"] {
        let r = request(&s.addr, "GET", p, &[], b"");
        assert_eq!(r.status, 401, "{p}");
        assert!(r.body.contains("\"error\""), "{p}: {}", r.body);
        assert_eq!(request(&s.addr, "GET", p, &[("Authorization", "Bearer nope")], b"").status, 401, "{p}");
    }
    let r = request(&s.addr, "GET", "/console/api/list?path=/", &with, b"");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"a.txt\"") && r.headers.contains("content-security-policy"), "{}", r.body);
    assert_eq!(request(&s.addr, "GET", "/health", &[], b"").status, 200);

    // Uploads: over the cap is 413; paths stay inside; another origin cannot change anything.
    let big = vec![b'x'; 100 << 10];
    let r = request(&s.addr, "PUT", "/console/api/file?path=/big.bin", &with, &big);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(!root.join("big.bin").exists());
    let r = request(&s.addr, "PUT", "/console/api/file?path=/small.bin", &with, b"small");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(std::fs::read(root.join("small.bin")).unwrap(), b"small");
    let r = request(&s.addr, "GET", "/console/api/file?path=../../etc/passwd", &with, b"");
    assert_eq!(r.status, 403, "{}", r.body);
    std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
    let r = request(&s.addr, "GET", "/console/api/file?path=/out/passwd", &with, b"");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = request(
        &s.addr,
        "POST",
        "/console/api/mkdir",
        &[("Authorization", auth.as_str()), ("Origin", "http://evil.example"), ("Content-Type", "application/json")],
        br#"{"path":"/evil"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!root.join("evil").exists());
    let r = request(
        &s.addr,
        "POST",
        "/console/api/mkdir",
        &[("Authorization", auth.as_str()), ("Content-Type", "application/json")],
        b"{nope",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("\"error\""), "{}", r.body);
    // A download names the file safely.
    std::fs::write(root.join("<img src=x onerror=alert(1)>"), "x").unwrap();
    let r = request(&s.addr, "GET", "/console/api/file?path=/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", &with, b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.headers.contains("filename*=utf-8''%3cimg%20src%3dx%20onerror%3dalert%281%29%3e"), "{}", r.headers);
    // A plain directory has no search.
    let r = request(&s.addr, "GET", "/console/api/search?q=disks", &with, b"");
    assert_eq!(r.status, 503, "{}", r.body);
}

#[test]
fn console_in_headless_chromium_with_the_real_models() {
    assert!(Path::new("/usr/bin/chromium").is_file(), "/usr/bin/chromium is missing: run scripts/deps.sh");
    let tmp = scratch("console-browser");
    let (mnt, data) = (tmp.path().join("mnt"), tmp.path().join("data"));
    let model = smollm2();
    let m = Mount::start_chat(
        &mnt,
        Some(&data),
        &["--model-path", model.to_str().unwrap(), "--max-tokens", "48", "--gen-max-tokens", "40"],
    );
    let token = "browser-token";
    let s = serve(&m.dir, token, &[]);
    let work = tmp.path().join("browser");
    let out = Command::new(client_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/console_browser.py"))
        .args([&format!("http://{}", s.addr), token, work.to_str().unwrap()])
        .output()
        .expect("run the browser test");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success() && text.contains("all checks passed"), "browser test failed:\n{text}");
    // The upload and the odd name landed in the store.
    assert!(m.path("volcanoes.md").is_file() && m.path("<img src=x onerror=alert(1)>").is_file());
    drop(s);
    drop(m);
}
