//! Compute over `http://` sources: the CLI and `POST /compute` reading a real
//! `magicfs serve`'s `/files` with planned range requests, checked against
//! local runs and the plain reference definitions; the allowlist and the
//! refusal of redirects to other addresses (link-local above all).

mod edge;

use edge::{assert_error, bytes, magicfs, magicfs_env, stderr, stdout, tiny_server, Serve};
use magicfs_compute::ops::reference;
use magicfs_types::noise::XorShift64;
use serde_json::{json, Value};

const TOKEN: &str = "origin-token";

fn expected(op: &str, imm: u8, w: &[u8]) -> u64 {
    reference::eval(op.parse().expect("a known op"), imm, w)
}

#[test]
fn http_source_matches_local_and_reference_on_random_windows() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes((9 << 20) + 12_345, 77);
    let size = data.len() as u64;
    std::fs::write(dir.path().join("data.bin"), &data).unwrap();
    let origin = Serve::start(dir.path(), Some(TOKEN), &[]);
    let url = format!("{}/files/data.bin", origin.url());
    let local = dir.path().join("data.bin").display().to_string();
    let tok = [("MAGICFS_SOURCE_TOKEN", TOKEN)];

    // Tiled windows, every op: the same lines as a local run.
    for (op, imm) in [("counteq", "0"), ("xor", "0"), ("add", "0"), ("fnv", "0"), ("crc32c", "0")] {
        for window in ["1MiB", "777777"] {
            let args = |src: &str| -> Vec<String> {
                ["compute", src, "--op", op, "--imm", imm, "--window", window].iter().map(|s| s.to_string()).collect()
            };
            let remote_args = args(&url);
            let r = magicfs_env(&remote_args.iter().map(String::as_str).collect::<Vec<_>>(), &tok);
            assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
            let l = magicfs(&args(&local).iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(stdout(&r), stdout(&l), "{op} {window}");
            assert!(stderr(&r).contains("range requests"), "{}", stderr(&r));
        }
    }

    // Random windows (unaligned, empty, at the end) in one program, against the reference.
    let mut rng = XorShift64::new(0x9e37_79b9_7f4a_7c15);
    let ops = ["counteq", "xor", "add", "fnv", "crc32c"];
    let mut program = Vec::new();
    for i in 0..200 {
        let op = ops[i % 5];
        let (offset, length) = match i % 6 {
            0 => (rng.below(size + 1), 0),
            1 => (size - 1, 1),
            2 => (0, size),
            _ => {
                let o = rng.below(size);
                (o, rng.below((size - o).min(3 << 20) + 1))
            }
        };
        program.push(json!({"op": op, "imm": (i % 3) as u8, "offset": offset, "length": length}));
    }
    let prog_path = dir.path().join("prog.json");
    std::fs::write(&prog_path, Value::Array(program.clone()).to_string()).unwrap();
    let r = magicfs_env(&["compute", &url, "--instructions", prog_path.to_str().unwrap(), "--json"], &tok);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let results: Vec<Value> = serde_json::from_str(&stdout(&r)).unwrap();
    assert_eq!(results.len(), program.len());
    for (ins, res) in program.iter().zip(&results) {
        let (o, l) = (ins["offset"].as_u64().unwrap() as usize, ins["length"].as_u64().unwrap() as usize);
        let op = ins["op"].as_str().unwrap();
        assert_eq!(
            res["value"].as_u64().unwrap(),
            expected(op, ins["imm"].as_u64().unwrap() as u8, &data[o..o + l]),
            "{ins}"
        );
    }

    // Past the end: a clear error and nothing fetched.
    let before = origin.metric("magicfs_files_bytes_total");
    let r = magicfs_env(&["compute", &url, "--op", "xor", "--offset", &(size - 5).to_string(), "--length", "10"], &tok);
    assert_error(&r, &["past the end", &size.to_string()]);
    assert!(origin.metric("magicfs_files_bytes_total") - before <= 1.0, "only the one-byte size probe");

    // A partial job never fetches the whole object: two small windows cost two 1 MiB blocks.
    let before = origin.metric("magicfs_files_bytes_total");
    std::fs::write(
        &prog_path,
        r#"[{"op":"add","offset":10,"length":5},{"op":"crc32c","offset":6000000,"length":1000}]"#,
    )
    .unwrap();
    let r = magicfs_env(&["compute", &url, "--instructions", prog_path.to_str().unwrap()], &tok);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let fetched = origin.metric("magicfs_files_bytes_total") - before;
    assert!(fetched <= (2 << 20) as f64 + 1.0 && fetched < size as f64 / 4.0, "fetched {fetched} of {size}");
    let lines = stdout(&r);
    assert_eq!(
        lines,
        format!(
            "10 5 {}\n6000000 1000 {}\n",
            expected("add", 0, &data[10..15]),
            expected("crc32c", 0, &data[6_000_000..6_001_000])
        )
    );

    // A window too long to hold is refused before anything is fetched.
    let huge = std::fs::File::create(dir.path().join("huge.bin")).unwrap();
    huge.set_len(3 << 29).unwrap();
    let before = origin.metric("magicfs_files_bytes_total");
    let r = magicfs_env(&["compute", &format!("{}/files/huge.bin", origin.url()), "--op", "xor"], &tok);
    assert_error(&r, &["holds at once", "--window"]);
    assert!(origin.metric("magicfs_files_bytes_total") - before <= 1.0);

    // The wrong token on the source is the origin's 401, said clearly.
    let r = magicfs_env(&["compute", &url, "--op", "xor"], &[("MAGICFS_SOURCE_TOKEN", "nope")]);
    assert_error(&r, &["401", "token"]);

    // Through a second server: POST /compute with an http:// data URL.
    let edge_dir = tempfile::tempdir().unwrap();
    let plain_origin = Serve::start(dir.path(), None, &[]);
    let edge = Serve::start(edge_dir.path(), Some("edge-token"), &["--allow-host", "loopback"]);
    let data_url = format!("{}/files/data.bin", plain_origin.url());
    let answer = edge.post_json("/compute", &json!({"data_url": data_url, "instructions": program}));
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let body = answer.json();
    assert_eq!(body["size"], size);
    for (res, local) in body["results"].as_array().unwrap().iter().zip(&results) {
        assert_eq!(res, local);
    }
    assert!(body["fetch"]["bytes"].as_u64().unwrap() > 0);
    edge.post_json("/compute", &json!({"data_url": data_url, "instructions": [{"op":"xor","offset":size,"length":1}]}))
        .error(400, "past the end");
    assert!(edge.metric("magicfs_fetched_bytes_total") > 0.0);
}

/// An origin answering everything with a redirect to `location`.
fn redirector(location: &'static str) -> String {
    tiny_server(move |_| {
        format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .into_bytes()
    })
    .0
}

#[test]
fn off_allowlist_hosts_and_redirects_elsewhere_are_refused() {
    let metadata = redirector("http://169.254.169.254/latest/meta-data/");
    let v6 = redirector("http://[fe80::1]/x");
    let public = redirector("http://93.184.216.34/x");

    // The CLI.
    assert_error(&magicfs(&["compute", "http://10.255.255.1/x", "--op", "xor"]), &["10.255.255.1", "allowlist"]);
    assert_error(&magicfs(&["compute", "http://example.com/x", "--op", "xor"]), &["example.com", "allowlist"]);
    assert_error(
        &magicfs(&["compute", "http://169.254.169.254/x", "--op", "xor", "--allow-host", "*"]),
        &["allowlist"],
    );
    assert_error(&magicfs(&["compute", "https://127.0.0.1/x", "--op", "xor"]), &["https://127.0.0.1", "connect"]);
    for origin in [&metadata, &v6, &public] {
        let r = magicfs(&["compute", &format!("http://{origin}/data"), "--op", "xor", "--allow-host", "*"]);
        assert_error(&r, &["redirects to", "another address"]);
    }
    let r = magicfs(&["assets", "probe", &format!("http://{metadata}/d")]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("redirects to http://169.254.169.254"), "{}", stderr(&r));

    // The server: 4xx JSON errors, and it keeps serving.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.bin"), [7u8; 100]).unwrap();
    // Loopback named (the redirectors live there), then public addresses too.
    for extra in [&["--allow-host", "loopback"][..], &["--allow-host", "loopback,*"][..]] {
        let s = Serve::start(dir.path(), Some("t"), extra);
        let xor = json!([{"op": "xor", "offset": 0, "length": 1}]);
        let ask = |url: &str| s.post_json("/compute", &json!({"data_url": url, "instructions": xor}));
        ask(&format!("http://{metadata}/d")).error(403, "169.254.169.254");
        ask(&format!("http://{v6}/d")).error(403, "another address");
        ask("http://169.254.169.254/latest/meta-data/").error(403, "allowlist");
        ask("http://[fe80::1]/x").error(403, "allowlist");
        ask("http://0.0.0.0:22/").error(403, "allowlist");
        if extra[1] == "loopback" {
            ask("http://10.0.0.1/x").error(403, "allowlist");
            ask(&format!("http://{public}/d")).error(403, "another address");
        }
        ask("https://127.0.0.1:1/x").error(502, "connect");
        ask("file:///etc/passwd").error(403, "outside");
        assert!(s.alive());
        let r = ask(&format!("file://{}/ok.bin", s.root.display()));
        assert_eq!(r.json()["results"][0]["value"], 7);
    }
    let s = Serve::start(dir.path(), None, &["--allow-host", "none"]);
    s.post_json("/compute", &json!({"data_url": format!("{}/files/ok.bin", s.url()), "instructions": []}))
        .error(403, "turned off");
}

#[test]
fn cache_headers_and_assets_probe() {
    // An origin that serves ranges and says every answer came from its cache.
    let data: &'static [u8] = Box::leak(bytes(3 << 20, 5).into_boxed_slice());
    let (addr, requests) = tiny_server(move |head| {
        // Header names are case-insensitive.
        let range = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("range")).map(|(_, v)| v.trim()))
            .and_then(|v| v.strip_prefix("bytes="))
            .unwrap_or("0-0");
        let (a, b) = range.trim().split_once('-').unwrap();
        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
        let b = b.min(data.len() - 1);
        let mut out = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}\r\nContent-Length: {}\r\nETag: \"v1\"\r\nX-Cache: HIT\r\nAge: 30\r\nCache-Control: max-age=600\r\nConnection: close\r\n\r\n",
            data.len(),
            b - a + 1
        )
        .into_bytes();
        out.extend_from_slice(&data[a..=b]);
        out
    });
    let url = format!("http://{addr}/blob");
    let r = magicfs(&["compute", &url, "--op", "add", "--window", "1MiB"]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let want: String = (0..3)
        .map(|k| format!("{} {} {}\n", k << 20, 1 << 20, reference::add(&data[k << 20..(k + 1) << 20])))
        .collect();
    assert_eq!(stdout(&r), want);
    assert!(stderr(&r).contains("cache hit ratio 100 %"), "{}", stderr(&r));
    assert!(requests.load(std::sync::atomic::Ordering::SeqCst) >= 2);

    let r = magicfs(&["assets", "probe", &url]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let v: Value = serde_json::from_str(stdout(&r).trim()).unwrap();
    assert_eq!(v["ranges"], true);
    assert_eq!(v["size"], 3 << 20);
    assert_eq!(v["etag"], "\"v1\"");
    assert_eq!(v["cache_control"], "max-age=600");
    assert_eq!(v["cache_hit_ratio"], 1.0);
    assert_eq!(v["sample_bytes"], 65536);
    assert!(v["compute_gbps_estimate"].as_f64().unwrap() > 0.0);

    // A real serve: ranges, size and ETag; an off-list host is reported, not probed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.bin"), bytes(100_000, 1)).unwrap();
    let s = Serve::start(dir.path(), None, &[]);
    let r = magicfs(&["assets", "probe", &format!("{}/files/a.bin", s.url()), "http://10.9.9.9/x"]);
    assert_eq!(r.status.code(), Some(1));
    let lines: Vec<Value> = stdout(&r).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((lines[0]["ranges"].clone(), lines[0]["size"].clone()), (json!(true), json!(100_000)));
    assert!(lines[0]["etag"].is_string());
    assert!(lines[1]["error"].as_str().unwrap().contains("allowlist"));
}
