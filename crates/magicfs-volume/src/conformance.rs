//! The conformance suite every [`crate::Backend`] passes: file operations,
//! limits, and paths that try to leave the volume. It panics on the first
//! difference. `symlink(path, target)` makes a symlink in the volume (the
//! volume API has no call for that on purpose).

use crate::{ComputeRequest, Volume, VolumeError, WriteMode};

/// Runs the suite in a fresh directory `conformance` of a writable `vol`
/// whose read cap is at least 4 KiB.
pub fn run(vol: &Volume, symlink: &dyn Fn(&str, &str)) {
    let d = "conformance";
    let at = |p: &str| format!("{d}/{p}");
    assert_eq!(vol.mkdir(d, false).expect("mkdir").kind, "dir");
    assert!(matches!(vol.mkdir(d, false), Err(VolumeError::Exists(_))), "mkdir twice");
    assert_eq!(vol.mkdir(&at("a/b/c"), true).expect("mkdir -p").path, format!("/{d}/a/b/c"));

    // Write, read back, append, create-new, ranges.
    let e = vol.write(&at("hello.txt"), b"hello world", WriteMode::Overwrite, false).expect("write");
    assert_eq!((e.kind, e.size, e.name.as_str()), ("file", 11, "hello.txt"));
    assert_eq!(vol.read(&at("hello.txt"), None, None).unwrap().data, b"hello world");
    vol.write(&at("hello.txt"), b"!", WriteMode::Append, false).expect("append");
    let r = vol.read(&at("hello.txt"), Some(6), Some(3)).unwrap();
    assert_eq!((r.data.as_slice(), r.size, r.eof), (&b"wor"[..], 12, false));
    let r = vol.read(&at("hello.txt"), Some(6), None).unwrap();
    assert_eq!((r.data.as_slice(), r.eof), (&b"world!"[..], true));
    assert!(matches!(vol.read(&at("hello.txt"), Some(99), None), Err(VolumeError::BadArgument(_))));
    assert!(matches!(vol.write(&at("hello.txt"), b"x", WriteMode::CreateNew, false), Err(VolumeError::Exists(_))));
    assert!(matches!(vol.write(&at("no/such/x"), b"x", WriteMode::Overwrite, false), Err(VolumeError::NotFound(_))));
    vol.write(&at("deep/er/x.txt"), b"x", WriteMode::Overwrite, true).expect("write with parents");
    assert!(matches!(vol.read(&at("missing"), None, None), Err(VolumeError::NotFound(_))));
    assert!(matches!(vol.read(d, None, None), Err(VolumeError::BadArgument(_))), "reading a directory");

    // The read cap cuts long reads and says so.
    let cap = vol.limits().max_read as usize;
    let big = vec![7u8; cap + 10];
    if (big.len() as u64) <= vol.limits().max_write {
        vol.write(&at("big.bin"), &big, WriteMode::Overwrite, false).expect("write big");
        let r = vol.read(&at("big.bin"), None, None).unwrap();
        assert_eq!((r.data.len(), r.capped, r.eof), (cap, true, false));
    }
    let over = vec![0u8; vol.limits().max_write as usize + 1];
    assert!(matches!(vol.write(&at("over"), &over, WriteMode::Overwrite, false), Err(VolumeError::TooLarge(_))));

    // Listing and stat.
    let (entries, cut) = vol.list(d, false).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert!(!cut);
    assert!(names.contains(&"hello.txt") && names.contains(&"a"), "{names:?}");
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "sorted: {names:?}");
    assert!(matches!(vol.list(&at("hello.txt"), false), Err(VolumeError::BadArgument(_))));
    assert_eq!(vol.stat(&at("a")).unwrap().kind, "dir");
    assert_eq!(vol.stat("/").unwrap().kind, "dir");

    // Move, with and without replacing.
    vol.rename(&at("hello.txt"), &at("a/moved.txt"), false).expect("move");
    assert!(matches!(vol.stat(&at("hello.txt")), Err(VolumeError::NotFound(_))));
    vol.write(&at("other.txt"), b"other", WriteMode::Overwrite, false).unwrap();
    assert!(matches!(vol.rename(&at("other.txt"), &at("a/moved.txt"), false), Err(VolumeError::Exists(_))));
    vol.rename(&at("other.txt"), &at("a/moved.txt"), true).expect("move replacing");
    assert_eq!(vol.read(&at("a/moved.txt"), None, None).unwrap().data, b"other");
    assert!(matches!(vol.rename(&at("a"), &at("a/b/inside"), false), Err(VolumeError::BadArgument(_))));

    // Compute over a file.
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 3) as u8).collect();
    vol.write(&at("data.bin"), &data, WriteMode::Overwrite, false).unwrap();
    let req = ComputeRequest { op: "counteq".into(), imm: Some(2), window: Some(1024), ..Default::default() };
    let out = vol.compute(&at("data.bin"), &req).expect("compute");
    assert_eq!(out.windows, 4);
    assert_eq!(out.results.iter().map(|r| r.value).sum::<u64>(), data.iter().filter(|b| **b == 2).count() as u64);
    let bad = ComputeRequest { op: "sha9".into(), ..Default::default() };
    assert!(matches!(vol.compute(&at("data.bin"), &bad), Err(VolumeError::BadArgument(_))));

    // Paths that leave the volume.
    for p in ["../x", "conformance/../../x", "/../etc/passwd"] {
        assert!(matches!(vol.read(p, None, None), Err(VolumeError::Escape(_))), "{p}");
        assert!(matches!(vol.write(p, b"x", WriteMode::Overwrite, false), Err(VolumeError::Escape(_))), "{p}");
    }
    symlink(&at("out_abs"), "/etc");
    symlink(&at("out_rel"), "../../../../../../../../../../etc");
    symlink(&at("in_rel"), "a/moved.txt");
    symlink(&at("in_dir"), "a");
    for p in ["out_abs/passwd", "out_rel/passwd"] {
        assert!(matches!(vol.read(&at(p), None, None), Err(VolumeError::Escape(_))), "{p}");
        assert!(matches!(vol.list(&at(p.trim_end_matches("/passwd")), false), Err(VolumeError::Escape(_))), "{p}");
        assert!(matches!(vol.write(&at(p), b"x", WriteMode::Overwrite, false), Err(VolumeError::Escape(_))), "{p}");
    }
    assert_eq!(vol.read(&at("in_rel"), None, None).expect("symlink inside").data, b"other");
    assert_eq!(vol.read(&at("in_dir/moved.txt"), None, None).expect("through a symlinked dir").data, b"other");
    assert_eq!(vol.stat(&at("out_abs")).expect("stat a symlink itself").kind, "symlink");
    assert!(matches!(vol.write(&at("in_rel"), b"x", WriteMode::Overwrite, false), Err(VolumeError::BadArgument(_))));

    // Delete: one file, a non-empty directory only when recursive, never the root.
    vol.delete(&at("out_abs"), false).expect("delete a symlink");
    assert!(matches!(vol.delete(&at("a"), false), Err(VolumeError::BadArgument(_))));
    assert!(matches!(vol.delete("/", true), Err(VolumeError::BadArgument(_))));
    assert!(vol.delete(d, true).expect("delete -r") >= 10);
    assert!(matches!(vol.stat(d), Err(VolumeError::NotFound(_))));
}

/// Checks that a read-only `vol` refuses every change and still reads.
pub fn read_only(vol: &Volume, existing_file: &str) {
    assert!(vol.limits().read_only);
    assert!(vol.read(existing_file, None, None).is_ok());
    assert_eq!(vol.write("ro.txt", b"x", WriteMode::Overwrite, false).unwrap_err(), VolumeError::ReadOnly);
    assert_eq!(vol.mkdir("ro", false).unwrap_err(), VolumeError::ReadOnly);
    assert_eq!(vol.rename(existing_file, "ro2", false).unwrap_err(), VolumeError::ReadOnly);
    assert_eq!(vol.delete(existing_file, false).unwrap_err(), VolumeError::ReadOnly);
    assert_eq!(vol.chat("s", "hi", &mut |_| {}).unwrap_err(), VolumeError::ReadOnly);
    assert_eq!(vol.generate_file("g.txt", "a poem").unwrap_err(), VolumeError::ReadOnly);
}
