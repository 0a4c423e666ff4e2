//! The project's one HTTP client, through the real binary: proxies from the
//! environment (a CONNECT proxy on loopback, written here, that records what
//! it is asked), the allowlist's pinned addresses with and without a proxy,
//! and answers beyond the client's limits.

mod edge;
mod pki;

use edge::{assert_error, bytes, magicfs, magicfs_env, stderr, stdout, tiny_server, Serve};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What a proxy was asked: the request line and any `Proxy-Authorization`.
#[derive(Clone, Debug)]
struct Asked {
    line: String,
    auth: Option<String>,
}

/// A CONNECT proxy on loopback (test code): records each request, then
/// splices bytes both ways; anything but CONNECT is answered 405.
fn connect_proxy() -> (String, Arc<Mutex<Vec<Asked>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut auth = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("proxy-authorization") {
                            auth = Some(v.trim().to_string());
                        }
                    }
                }
                let line = line.trim().to_string();
                log.lock().unwrap().push(Asked { line: line.clone(), auth });
                let mut client = client;
                let target = match line.split(' ').collect::<Vec<_>>()[..] {
                    ["CONNECT", target, _] => target.to_string(),
                    _ => {
                        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
                        return;
                    }
                };
                let Ok(upstream) = TcpStream::connect(&target) else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut up_r, mut up_w) = (upstream.try_clone().unwrap(), upstream);
                let (mut c_r, mut c_w) = (client.try_clone().unwrap(), client);
                let there = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_r, &mut up_w);
                    let _ = up_w.shutdown(Shutdown::Write);
                });
                let _ = std::io::copy(&mut up_r, &mut c_w);
                let _ = c_w.shutdown(Shutdown::Write);
                let _ = there.join();
            });
        }
    });
    (addr, asked)
}

fn lines(asked: &Arc<Mutex<Vec<Asked>>>) -> Vec<String> {
    asked.lock().unwrap().iter().map(|a| a.line.clone()).collect()
}

fn crc(source: &str, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut args = vec!["compute", source, "--op", "crc32c", "--window", "1MiB"];
    args.extend_from_slice(extra);
    magicfs_env(&args, env)
}

#[test]
fn proxies_from_the_environment_are_asked_for_the_checked_address() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes((3 << 20) + 5, 17);
    let local = dir.path().join("data.bin");
    std::fs::write(&local, &data).unwrap();
    let expected = stdout(&magicfs(&["compute", local.to_str().unwrap(), "--op", "crc32c", "--window", "1MiB"]));
    let origin = Serve::start(dir.path(), None, &[]);
    let port = origin.addr.rsplit(':').next().unwrap().to_string();
    let (proxy, asked) = connect_proxy();

    // By name through the proxy: the name is resolved and checked here, and
    // the proxy is asked for the address that passed, with the credentials
    // of the proxy URL.
    let by_name = format!("http://localhost:{port}/files/data.bin");
    let proxy_url = format!("http://reader:pa%40ss@{proxy}");
    let o = crc(&by_name, &[], &[("HTTP_PROXY", &proxy_url)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected);
    let seen = asked.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the proxy was not used");
    for a in &seen {
        assert!(
            a.line == format!("CONNECT 127.0.0.1:{port} HTTP/1.1")
                || a.line == format!("CONNECT [::1]:{port} HTTP/1.1"),
            "{a:?}"
        );
        // base64("reader:pa@ss")
        assert_eq!(a.auth.as_deref(), Some("Basic cmVhZGVyOnBhQHNz"), "{a:?}");
    }
    // Connections are kept: 4 range requests or more, far fewer tunnels.
    assert!(seen.len() <= 4, "one tunnel per connection, reused: {seen:?}");

    // NO_PROXY names go direct (a name covers its subdomains too).
    let before = lines(&asked).len();
    for no in ["localhost", "example.org,localhost", ".localhost,other"] {
        let o = crc(&by_name, &[], &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", no)]);
        assert_eq!(stdout(&o), expected, "{}", stderr(&o));
    }
    assert_eq!(lines(&asked).len(), before, "NO_PROXY hosts went through the proxy");

    // A host the allowlist refuses never reaches the proxy.
    let o = crc("http://10.1.2.3/data.bin", &[], &[("HTTP_PROXY", &proxy_url)]);
    assert_error(&o, &["10.1.2.3", "allowlist"]);
    let o = crc(
        &format!("http://localhost:{port}/files/data.bin"),
        &["--allow-host", "none"],
        &[("HTTP_PROXY", &proxy_url)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(lines(&asked).len(), before, "a refused host reached the proxy");

    // A proxy that cannot be used is named without its password.
    for bad in ["socks9://reader:s3cret@127.0.0.1:1", "http://reader:s3cret@[::1"] {
        let o = crc(&by_name, &[], &[("HTTP_PROXY", bad)]);
        assert_error(&o, &["HTTP_PROXY"]);
        assert!(!stderr(&o).contains("s3cret"), "{}", stderr(&o));
    }
    // A proxy that refuses the tunnel: a clear error.
    let (refusing, _) = tiny_server(|_| b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec());
    let o = crc(&by_name, &[], &[("HTTP_PROXY", &format!("http://{refusing}"))]);
    assert_error(&o, &["proxy"]);
}

#[test]
fn https_through_a_connect_proxy() {
    let pki = pki::Pki::new("proxied");
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(2 << 20, 23);
    std::fs::write(dir.path().join("data.bin"), &data).unwrap();
    let local = dir.path().join("data.bin");
    let expected = stdout(&magicfs(&["compute", local.to_str().unwrap(), "--op", "crc32c", "--window", "1MiB"]));
    let cert = pki.server("origin", &[]);
    let origin = Serve::start_tls(dir.path(), None, (&cert.cert, &cert.key), &pki.ca, &[]);
    let port = origin.addr.rsplit(':').next().unwrap().to_string();
    let (proxy, asked) = connect_proxy();
    let url = format!("https://localhost:{port}/files/data.bin");
    let ca = pki.ca.to_str().unwrap();

    // HTTP_PROXY is not used for https://; HTTPS_PROXY is, with the
    // certificate checked against the URL's name end to end.
    let o = crc(&url, &["--ca-file", ca], &[("HTTP_PROXY", "http://127.0.0.1:1")]);
    assert_eq!(stdout(&o), expected, "{}", stderr(&o));
    let o = crc(&url, &["--ca-file", ca], &[("HTTPS_PROXY", &proxy)]);
    assert_eq!(stdout(&o), expected, "{}", stderr(&o));
    let seen = lines(&asked);
    assert!(!seen.is_empty() && seen.iter().all(|l| l.contains(&format!(":{port} HTTP/1.1"))), "{seen:?}");
    assert!(seen.iter().all(|l| !l.contains("localhost")), "the proxy was given the name, not the address: {seen:?}");
    // ALL_PROXY covers both schemes.
    let o = crc(&url, &["--ca-file", ca], &[("ALL_PROXY", &proxy)]);
    assert_eq!(stdout(&o), expected, "{}", stderr(&o));
    assert!(lines(&asked).len() > seen.len());
    // Without the CA, the tunnel does not help a wrong certificate through.
    let o = crc(&url, &[], &[("HTTPS_PROXY", &proxy)]);
    assert_error(&o, &["not signed by a trusted authority", "--ca-file"]);
}

#[test]
fn answers_beyond_the_limits_are_refused() {
    // A source whose range answers run on past what was asked for.
    let (endless, _) = tiny_server(|head| {
        let range = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_string))
            .unwrap_or_default();
        let (a, b) = range.trim().split_once('-').unwrap_or(("0", "0"));
        let mut out = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/1048576\r\nETag: \"e\"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        let chunk = format!("{:x}\r\n{}\r\n", 1 << 16, "x".repeat(1 << 16));
        while out.len() < 24 << 20 {
            out.extend_from_slice(chunk.as_bytes());
        }
        out
    });
    let o = magicfs(&["compute", &format!("http://{endless}/blob"), "--op", "xor"]);
    assert_error(&o, &["more than the 1048576 bytes asked for"]);

    // A response head past 64 KiB.
    let (long_head, _) = tiny_server(|_| {
        let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..20 {
            out.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(4000)).as_bytes());
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        out
    });
    let o = magicfs(&["compute", &format!("http://{long_head}/blob"), "--op", "xor"]);
    assert_error(&o, &["head is too long"]);

    // An error answer whose body never ends: the message is cut, the run ends.
    let (chatty, _) = tiny_server(|_| {
        let mut out = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 104857600\r\n\r\n".to_vec();
        out.extend(std::iter::repeat_n(b'z', 1 << 20));
        out
    });
    let o = magicfs(&["compute", &format!("http://{chatty}/blob"), "--op", "xor"]);
    assert_error(&o, &["500"]);
    assert!(stderr(&o).len() < 4096, "{} bytes of error", stderr(&o).len());
}
