//! The LD_PRELOAD shim (`libmagicfs_preload.so`): unmodified programs —
//! `mkdir`, `cp`, `cat`, `wc`, `sha256sum`, `ls`, `tar -x`, `mv`, `rm` and
//! Python's `open()` — use a store under a path prefix with no FUSE; calls
//! outside the shim's scope fail (`ENOTSUP`, or `EBADF` for a descriptor
//! used behind its back) and never return wrong data; the store then mounts
//! with FUSE showing the same tree, and `magicfs fsck` finds it clean.

mod common;

use common::{magicfs, noise, scratch, Mount};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The shim this test run built (a dev-dependency: next to the test executable).
fn shim() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let so = exe.parent().unwrap().join("libmagicfs_preload.so");
    assert!(so.is_file(), "{} is missing", so.display());
    so
}

/// Runs `script` in bash with the shim preloaded for the store `store` at `prefix`.
fn under_shim(dir: &Path, store: &Path, prefix: &str, script: &str) -> (bool, String, String) {
    let out = Command::new("bash")
        .arg("-ceu")
        .arg(script)
        .current_dir(dir)
        .env("LD_PRELOAD", shim())
        .env("MAGICFS_PRELOAD_STORE", store)
        .env("MAGICFS_PRELOAD_PREFIX", prefix)
        .env("P", prefix)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn ok(dir: &Path, store: &Path, prefix: &str, script: &str) -> String {
    let (good, out, err) = under_shim(dir, store, prefix, script);
    assert!(good, "under the shim: {script}\nstdout: {out}\nstderr: {err}");
    out
}

/// Every file (bytes), symlink (target) and directory below `root`, by relative path.
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                todo.push(p.clone());
                "dir".into()
            } else {
                format!("{} bytes, blake3 {}", m.len(), blake3::hash(&std::fs::read(&p).unwrap()))
            };
            out.push((rel, what));
        }
    }
    out.sort();
    out
}

#[test]
fn unmodified_programs_use_a_store_under_a_prefix() {
    let tmp = scratch("preload");
    let dir = tmp.path();
    let store = dir.join("store");
    // A prefix that exists nowhere on this machine.
    let prefix = format!("/magicfs-shim-test-{}", std::process::id());
    assert!(!Path::new(&prefix).exists());

    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\nbeta\n").unwrap();
    std::fs::write(src.join("big.bin"), noise(3 << 20, 7)).unwrap();
    std::fs::write(src.join("sub/empty"), "").unwrap();
    std::fs::write(src.join("sub/deeper/c.md"), "# c\n".repeat(5000)).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    let st = Command::new("tar").arg("-cf").arg(dir.join("src.tar")).arg("-C").arg(&src).arg(".").status().unwrap();
    assert!(st.success());

    let out = ok(
        dir,
        &store,
        &prefix,
        r#"
        mkdir "$P/docs"
        cp src/a.txt "$P/docs/a.txt"
        cp src/big.bin "$P/big.bin"
        echo "== cat"; cat "$P/docs/a.txt"
        echo "== wc"; wc -c "$P/big.bin"
        echo "== sha"; sha256sum "$P/big.bin"
        mkdir "$P/untar"
        tar -xf src.tar -C "$P/untar"
        python3 -c 'import sys; p = sys.argv[1]
open(p + "/py.txt", "w").write("written by python\n")
print("== py", open(p + "/py.txt").read(), end="")
with open(p + "/untar/sub/deeper/c.md", "rb") as f: f.seek(-4, 2); print("== tail", f.read())' "$P"
        cp "$P/big.bin" copied.bin
        mv "$P/docs/a.txt" "$P/docs/renamed.txt"
        cp -r src "$P/copy" && rm -r "$P/copy"
        echo "== ls"; ls "$P"
        echo "== ls docs"; ls -l "$P/docs"
        "#,
    );
    // The lines after each "== name" line, up to the next one.
    let section = |name: &str| -> String {
        let mut lines = out.lines().skip_while(|l| *l != format!("== {name}")).skip(1);
        let mut text = String::new();
        for l in lines.by_ref().take_while(|l| !l.starts_with("== ")) {
            text.push_str(l);
            text.push('\n');
        }
        text
    };
    assert_eq!(section("cat"), "alpha\nbeta\n", "{out}");
    assert!(section("wc").contains(&format!("{} {prefix}/big.bin", 3 << 20)), "{out}");
    let sha = Command::new("sha256sum").arg(src.join("big.bin")).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap().to_string();
    assert!(section("sha").contains(&sha), "{out}");
    assert!(out.contains("== py written by python\n"), "{out}");
    assert!(out.contains("== tail b'# c\\n'"), "{out}");
    assert_eq!(std::fs::read(dir.join("copied.bin")).unwrap(), std::fs::read(src.join("big.bin")).unwrap());
    assert_eq!(section("ls"), "big.bin\ndocs\npy.txt\nuntar\n", "{out}");
    assert!(section("ls docs").contains("renamed.txt"), "{out}");

    // Outside the shim's scope: an error, never wrong data.
    let out = ok(
        dir,
        &store,
        &prefix,
        r#"python3 - "$P" <<'EOF'
import ctypes, errno, mmap, os, sys
p = sys.argv[1]
fd = os.open(p + "/big.bin", os.O_RDONLY)
try:
    mmap.mmap(fd, 0, prot=mmap.PROT_READ)
except OSError as e:
    print("mmap", errno.errorcode[e.errno])
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(16)
n = libc.syscall(0, fd, buf, 16)  # read(2) made directly, around the shim
print("raw read", n, errno.errorcode[ctypes.get_errno()])
print("read", len(os.read(fd, 16)))
os.close(fd)
for call in (lambda: os.chdir(p), lambda: os.mkfifo(p + "/fifo")):
    try:
        call()
    except OSError as e:
        print("refused", errno.errorcode[e.errno])
try:
    open(p + "/missing")
except FileNotFoundError:
    print("missing ENOENT")
EOF"#,
    );
    assert!(out.contains("mmap ENOTSUP") || out.contains("mmap EOPNOTSUPP"), "{out}");
    assert!(out.contains("raw read -1 EBADF"), "{out}");
    assert!(out.contains("read 16"), "{out}");
    assert_eq!(out.matches("refused EOPNOTSUPP").count() + out.matches("refused ENOTSUP").count(), 2, "{out}");
    assert!(out.contains("missing ENOENT"), "{out}");

    // Programs run one after another; the store is closed cleanly by each.
    // Now mount it with FUSE: the same tree.
    let mnt = dir.join("mnt");
    let mut m = Mount::start(&mnt, Some(&store), &["--no-search"]);
    assert_eq!(tree(&m.path("untar")), tree(&src), "tar -x under the shim and the source differ");
    assert_eq!(std::fs::read(m.path("big.bin")).unwrap(), std::fs::read(src.join("big.bin")).unwrap());
    assert_eq!(std::fs::read_to_string(m.path("docs/renamed.txt")).unwrap(), "alpha\nbeta\n");
    assert_eq!(std::fs::read_to_string(m.path("py.txt")).unwrap(), "written by python\n");
    let mut names: Vec<String> =
        std::fs::read_dir(&mnt).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names.retain(|n| n != ".magic");
    assert_eq!(names, ["big.bin", "docs", "py.txt", "untar"]);
    m.stop();
    let fsck = magicfs(&["fsck", "--data", store.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&fsck.stdout);
    assert!(fsck.status.success() && report.contains("clean"), "fsck: {report}");
}

#[test]
fn a_store_in_use_is_refused_and_a_bad_prefix_turns_the_shim_off() {
    let tmp = scratch("preload-busy");
    let dir = tmp.path();
    let store = dir.join("store");
    let prefix = format!("/magicfs-shim-busy-{}", std::process::id());
    let mnt = dir.join("mnt");
    let m = Mount::start(&mnt, Some(&store), &[]);
    let (good, _, err) = under_shim(dir, &store, &prefix, r#"cat "$P/anything""#);
    assert!(!good && err.contains("already in use"), "{err}");
    drop(m);
    // A prefix of "/" would capture every path: the shim refuses it and stays out of the way.
    let (good, out, err) = under_shim(dir, &store, "/", "echo hi > host.txt; cat host.txt");
    assert!(good && out == "hi\n" && err.contains("not usable"), "{out} {err}");
}

/// The README's shim example runs as written, with this build's paths (the
/// shim, the binary) and this test's scratch directory for `/tmp` and the prefix.
#[test]
fn readme_example() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let marker = "<!-- example: shim -->\n```sh\n";
    let start = readme.find(marker).expect("README has the shim example") + marker.len();
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let tmp = scratch("preload-readme");
    let t = tmp.path().to_str().unwrap();
    let prefix = format!("/magicfs-shim-readme-{}", std::process::id());
    let script: String = block
        .lines()
        .filter(|l| !l.starts_with("cargo build"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("$PWD/target/release/libmagicfs_preload.so", "@SHIM@")
        .replace("target/release/magicfs", "@BIN@")
        .replace("/magic", &prefix)
        .replace("/tmp/", &format!("{t}/"))
        .replace("@SHIM@", shim().to_str().unwrap())
        .replace("@BIN@", common::bin().to_str().unwrap());
    let out = Command::new("bash")
        .arg("-ceu")
        .arg(&script)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script}\n{text}");
    assert!(text.contains("meeting at noon\n16 ") && text.contains("clean"), "{text}");
    assert!(text.contains("generators.md") && text.matches("meeting at noon").count() == 2, "{text}");
}
