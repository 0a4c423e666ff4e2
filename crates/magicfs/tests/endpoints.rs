//! The endpoint registry and the scheduler, with real `magicfs serve`
//! processes on loopback: a job split over two servers gives the local
//! result, survives one of them being killed mid-job, and respects budgets.

mod edge;

use edge::{assert_error, bytes, magicfs_env, stderr, stdout, Serve};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

const TOKEN: &str = "edge-token";

fn ep(reg: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["endpoints", "--endpoints", reg.to_str().unwrap()];
    all.extend_from_slice(args);
    magicfs_env(&all, &[])
}

fn compute_on(reg: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["compute", "--endpoints", reg.to_str().unwrap()];
    all.extend_from_slice(args);
    magicfs_env(&all, &[])
}

fn register(reg: &Path, a: &Serve, b: &Serve, extra_b: &[&str]) {
    let o = ep(reg, &["add", "a", &a.url(), "--token", TOKEN, "--concurrency", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let b_url = b.url();
    let mut args = vec!["add", "b", b_url.as_str()];
    args.extend_from_slice(&["--token", TOKEN]);
    args.extend_from_slice(extra_b);
    let o = ep(reg, &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

fn list(reg: &Path) -> Vec<Value> {
    let o = ep(reg, &["list", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn a_job_split_over_two_servers_equals_the_local_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes((24 << 20) + 999, 3);
    let file = dir.path().canonicalize().unwrap().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    // Loopback named: the endpoints read an http:// source on it below.
    let a = Serve::start(dir.path(), Some(TOKEN), &["--allow-host", "loopback"]);
    let b = Serve::start(dir.path(), Some(TOKEN), &["--allow-host", "loopback"]);
    let reg = dir.path().join("endpoints.json");
    register(&reg, &a, &b, &["--concurrency", "3"]);

    let o = ep(&reg, &["probe"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("a: latency") && stdout(&o).contains("b: latency"), "{}", stdout(&o));
    let o = ep(&reg, &["probe", "b", "--data-url", &format!("file://{}", file.display())]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let listed = list(&reg);
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|e| e["probe"]["throughput_bps"].as_f64().unwrap() > 0.0));
    assert_eq!(listed[0]["token"], "(set)", "tokens are not printed");

    let url = format!("file://{}", file.display());
    for (op, window) in [("crc32c", "1MiB"), ("fnv", "333333"), ("counteq", "4MiB")] {
        let o =
            compute_on(&reg, &["--on", "all", &url, "--op", op, "--imm", "0", "--window", window, "--batch", "2MiB"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let local =
            magicfs_env(&["compute", file.to_str().unwrap(), "--op", op, "--imm", "0", "--window", window], &[]);
        assert_eq!(stdout(&o), stdout(&local), "{op}");
        let err = stderr(&o);
        for name in ["a", "b"] {
            let line =
                err.lines().find(|l| l.contains(&format!("endpoint {name}:"))).unwrap_or_else(|| panic!("{err}"));
            assert!(line.contains("GB/s") && !line.contains(" 0 windows"), "{line}");
        }
    }
    // The same over an http:// source both endpoints read from a.
    let origin = Serve::start(dir.path(), None, &[]);
    let source = format!("{}/files/data.bin", origin.url());
    let o = compute_on(&reg, &["--on", "a,b", &source, "--op", "add", "--window", "1MiB"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        stdout(&magicfs_env(&["compute", file.to_str().unwrap(), "--op", "add", "--window", "1MiB"], &[]))
    );

    // Usage is recorded; errors are clear.
    let listed = list(&reg);
    assert!(listed.iter().all(|e| e["usage"]["requests"].as_u64().unwrap() > 0), "{listed:?}");
    let o = compute_on(&reg, &["--on", "all", &url, "--op", "xor", "--offset", "24MiB", "--length", "2000"]);
    assert_error(&o, &["past the end"]);
    assert_error(&compute_on(&reg, &["--on", "c", &url, "--op", "xor"]), &["no endpoint named \"c\""]);
    assert_error(&compute_on(&reg, &["--on", "all", "file:///etc/passwd", "--op", "xor"]), &["outside"]);
    assert_error(&ep(&reg, &["add", "x", "ftp://h/"]), &["http://"]);
    assert_eq!(ep(&reg, &["rm", "b"]).status.code(), Some(0));
    assert_error(&ep(&reg, &["rm", "b"]), &["no endpoint named"]);
    assert_eq!(list(&reg).len(), 1);
    let empty = dir.path().join("none.json");
    assert_error(&compute_on(&empty, &["--on", "all", &url, "--op", "xor"]), &["endpoints add"]);
}

#[test]
fn killing_one_server_mid_job_still_completes() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(96 << 20, 9);
    let file = dir.path().canonicalize().unwrap().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let a = Serve::start(dir.path(), Some(TOKEN), &[]);
    let mut b = Serve::start(dir.path(), Some(TOKEN), &[]);
    let reg = dir.path().join("endpoints.json");
    register(&reg, &a, &b, &[]);
    let url = format!("file://{}", file.display());
    let mut child = Command::new(edge::bin())
        .args(["compute", "--endpoints", reg.to_str().unwrap(), "--on", "all", &url])
        .args(["--op", "fnv", "--window", "512KiB", "--batch", "512KiB"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        log.push_str(&line);
        if line.contains("done on b") && b.alive() {
            b.kill();
        }
        line.clear();
    }
    let status = child.wait().unwrap();
    let got = reader.join().unwrap();
    assert!(status.success(), "{log}");
    assert!(!b.alive());
    assert!(log.contains("b failed"), "the job went on after b was killed: {log}");
    let local = magicfs_env(&["compute", file.to_str().unwrap(), "--op", "fnv", "--window", "512KiB"], &[]);
    assert_eq!(got, stdout(&local));
    assert_eq!(got.lines().count(), 192);
    assert!(a.alive());
}

#[test]
fn daily_budgets_are_respected() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(10 << 20, 4);
    let file = dir.path().canonicalize().unwrap().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let a = Serve::start(dir.path(), Some(TOKEN), &[]);
    let b = Serve::start(dir.path(), Some(TOKEN), &[]);
    let reg = dir.path().join("endpoints.json");
    register(&reg, &a, &b, &["--budget-requests", "2"]);
    let url = format!("file://{}", file.display());
    let args = ["--on", "all", url.as_str(), "--op", "crc32c", "--window", "1MiB", "--batch", "1MiB"];
    let o = compute_on(&reg, &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let local = magicfs_env(&["compute", file.to_str().unwrap(), "--op", "crc32c", "--window", "1MiB"], &[]);
    assert_eq!(stdout(&o), stdout(&local));
    let listed = list(&reg);
    let b_used = listed[1]["usage"]["requests"].as_u64().unwrap();
    assert!(b_used <= 2, "{listed:?}");
    assert_eq!(listed[0]["usage"]["requests"].as_u64().unwrap() + b_used, 10, "{listed:?}");
    // Now b is spent for today and a gets a byte budget too small for a batch.
    assert_eq!(ep(&reg, &["add", "b", &b.url(), "--budget-requests", "2", "--token", TOKEN]).status.code(), Some(0));
    let o = compute_on(&reg, &args);
    assert_eq!(o.status.code(), Some(0), "a alone finishes the job: {}", stderr(&o));
    assert_eq!(stdout(&o), stdout(&local));
    assert_eq!(ep(&reg, &["add", "a", &a.url(), "--budget-bytes", "100KiB", "--token", TOKEN]).status.code(), Some(0));
    assert_error(&compute_on(&reg, &args), &["budget"]);
}
