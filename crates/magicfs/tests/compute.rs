//! `magicfs compute` end to end: the real binary over a random file, every
//! printed value checked against a reference computed here, byte by byte.

use std::path::Path;
use std::process::{Command, Output};

const OPS: [&str; 5] = ["counteq", "xor", "add", "fnv", "crc32c"];

fn magicfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_magicfs")).args(args).output().expect("run magicfs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Pseudo-random bytes (xorshift64*), with runs of zeros so counting them is not trivial.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let word = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        if word.is_multiple_of(5) {
            out.extend_from_slice(&[0; 8]);
        } else {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// The value an op must give for a window, computed the plain way.
fn reference(op: &str, imm: u8, w: &[u8]) -> u64 {
    match op {
        "counteq" => w.iter().filter(|&&b| b == imm).count() as u64,
        "xor" => u64::from(w.iter().fold(0u8, |x, &b| x ^ b)),
        "add" => w.iter().map(|&b| u64::from(b)).sum(),
        "fnv" => w.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)),
        "crc32c" => {
            let mut crc = !0u32;
            for &b in w {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
                }
            }
            u64::from(!crc)
        }
        _ => unreachable!("{op}"),
    }
}

/// `offset length value` lines.
fn parse_lines(o: &Output) -> Vec<(u64, u64, u64)> {
    assert!(o.status.success(), "magicfs compute failed: {}", stderr(o));
    stdout(o)
        .lines()
        .map(|l| {
            let v: Vec<u64> = l.split(' ').map(|f| f.parse().unwrap()).collect();
            assert_eq!(v.len(), 3, "line {l:?}");
            (v[0], v[1], v[2])
        })
        .collect()
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_string()
}

/// A failure must be an orderly exit 1 (runtime error) or 2 (usage error)
/// with a message, never a panic (101).
fn assert_error(o: &Output, needles: &[&str]) {
    assert!(matches!(o.status.code(), Some(1) | Some(2)), "exit code; stderr: {}", stderr(o));
    for n in needles {
        assert!(stderr(o).contains(n), "message lacks {n:?}: {}", stderr(o));
    }
}

#[test]
fn every_op_over_tiled_windows_matches_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes((3 << 20) + 12345, 42);
    let n = data.len() as u64;
    let path = write_file(tmp.path(), "blob", &data);
    // (offset, length, window); None means the option is left out.
    let cases: [(Option<u64>, Option<u64>, Option<&str>); 9] = [
        (None, None, None),
        (None, None, Some("1MiB")),
        (Some(4097), Some(1_000_001), Some("64KiB")),
        (Some(13), None, Some("4096")),
        (Some(5), None, Some("255")), // more than one program's worth of windows
        (Some(1), Some(777), Some("100")),
        (Some(n - 3), None, Some("1")),
        (Some(n), None, None),
        (Some(999), Some(0), Some("4KiB")),
    ];
    let mut checked = 0;
    for op in OPS {
        for (offset, length, window) in cases {
            let imm = if op == "counteq" { checked as u8 % 3 } else { 0 };
            let mut args = vec!["compute".to_string(), path.clone(), "--op".into(), op.into()];
            if op == "counteq" {
                args.extend(["--imm".into(), imm.to_string()]);
            }
            for (flag, v) in [("--offset", offset), ("--length", length)] {
                if let Some(v) = v {
                    args.extend([flag.into(), v.to_string()]);
                }
            }
            if let Some(w) = window {
                args.extend(["--window".into(), w.into()]);
            }
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = magicfs(&argv);
            let lines = parse_lines(&o);
            assert!(stderr(&o).contains("GB/s"), "summary line: {}", stderr(&o));

            let start = offset.unwrap_or(0);
            let len = length.unwrap_or(n - start);
            let step = match window {
                Some("1MiB") => 1 << 20,
                Some("64KiB") => 65536,
                Some("4KiB") => 4096,
                Some(w) => w.parse().unwrap(),
                None => len.max(1),
            };
            let mut expect = Vec::new();
            let mut at = start;
            loop {
                let l = step.min(start + len - at);
                expect.push((at, l, reference(op, imm, &data[at as usize..(at + l) as usize])));
                at += l;
                if at >= start + len {
                    break;
                }
            }
            assert_eq!(lines.len(), expect.len(), "{argv:?}");
            for (got, want) in lines.iter().zip(&expect) {
                assert_eq!(got, want, "{argv:?}");
            }
            checked += lines.len();
        }
    }
    assert!(checked > 60_000, "checked {checked} windows");
}

#[test]
fn json_output_is_an_array_of_results() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(300_000, 7);
    let path = write_file(tmp.path(), "blob", &data);
    let o = magicfs(&["compute", &path, "--op", "crc32c", "--offset", "3", "--window", "64KiB", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 5);
    for item in arr {
        assert_eq!(item["op"], "crc32c");
        let (off, len) = (item["offset"].as_u64().unwrap() as usize, item["length"].as_u64().unwrap() as usize);
        assert_eq!(item["value"].as_u64().unwrap(), reference("crc32c", 0, &data[off..off + len]));
    }
    assert_eq!(arr[4]["offset"], 3 + 4 * 65536);
    assert_eq!(arr[4]["length"], 300_000 - 3 - 4 * 65536);

    let empty = write_file(tmp.path(), "empty", b"");
    let o = magicfs(&["compute", &empty, "--op", "fnv", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["value"], 0xcbf2_9ce4_8422_2325u64, "{}", stdout(&o));
}

#[test]
fn instruction_files_run_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(2 << 20, 9);
    let path = write_file(tmp.path(), "blob", &data);
    let program = r#"[
        {"op":"counteq","imm":0,"offset":0,"length":2097152},
        {"op":"crc32c","offset":4096,"length":100},
        {"op":"fnv","offset":1,"length":1500000},
        {"op":"xor","imm":9,"offset":2097151,"length":1},
        {"op":"add","offset":77,"length":0},
        {"op":"counteq","imm":255,"offset":333,"length":1048576}
    ]"#;
    let prog = write_file(tmp.path(), "prog.json", program.as_bytes());
    let lines = parse_lines(&magicfs(&["compute", &path, "--instructions", &prog]));
    let want: Vec<(&str, u8, u64, u64)> = vec![
        ("counteq", 0, 0, 2 << 20),
        ("crc32c", 0, 4096, 100),
        ("fnv", 0, 1, 1_500_000),
        ("xor", 0, (2 << 20) - 1, 1),
        ("add", 0, 77, 0),
        ("counteq", 255, 333, 1 << 20),
    ];
    assert_eq!(lines.len(), want.len());
    for (got, (op, imm, off, len)) in lines.iter().zip(want) {
        let value = reference(op, imm, &data[off as usize..(off + len) as usize]);
        assert_eq!(*got, (off, len, value), "{op}");
    }

    let o = magicfs(&["compute", &path, "--instructions", &prog, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[2]["op"], "fnv");
    assert_eq!(v[2]["value"].as_u64().unwrap(), lines[2].2);
}

#[test]
fn errors_are_clear_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_file(tmp.path(), "blob", &random_bytes(10_000, 1));

    let o = magicfs(&["compute", &path, "--op", "xor", "--offset", "9990", "--length", "11"]);
    assert_error(&o, &["past the end", "9990", "11", "10000"]);
    assert!(stdout(&o).is_empty(), "nothing printed before the error: {}", stdout(&o));
    let o = magicfs(&["compute", &path, "--op", "add", "--offset", "10001"]);
    assert_error(&o, &["past the end", "10001"]);
    let o = magicfs(&["compute", &path, "--op", "crc32c", "--length", "1MiB"]);
    assert_error(&o, &["past the end", "1048576"]);

    let prog = write_file(
        tmp.path(),
        "bad.json",
        br#"[{"op":"add","offset":0,"length":1},{"op":"fnv","offset":9000,"length":1001}]"#,
    );
    assert_error(
        &magicfs(&["compute", &path, "--instructions", &prog]),
        &["instruction 1", "past the end", "9000", "1001"],
    );
    let prog = write_file(tmp.path(), "op.json", br#"[{"op":"md5","offset":0,"length":1}]"#);
    assert_error(&magicfs(&["compute", &path, "--instructions", &prog]), &["unknown op \"md5\"", "crc32c"]);
    let prog = write_file(tmp.path(), "broken.json", b"[{\"op\":");
    assert_error(&magicfs(&["compute", &path, "--instructions", &prog]), &["not valid JSON"]);

    assert_error(&magicfs(&["compute", "/nonexistent/blob", "--op", "xor"]), &["cannot open", "/nonexistent/blob"]);
    assert_error(&magicfs(&["compute", tmp.path().to_str().unwrap(), "--op", "xor"]), &["not a regular file"]);
    assert_error(&magicfs(&["compute", &path, "--op", "sha1"]), &["unknown op \"sha1\""]);
    assert_error(&magicfs(&["compute", &path, "--op", "counteq"]), &["--imm"]);
    assert_error(&magicfs(&["compute", &path, "--op", "xor", "--window", "12QB"]), &["unit"]);
    assert_error(&magicfs(&["compute", &path, "--op", "xor", "--window", "0"]), &["--window"]);
    assert_error(&magicfs(&["compute", &path]), &["--op"]);
}
