//! The C tests of libmagicfs: each `tests/c/*.c` is compiled with `cc`
//! against `include/magicfs.h` and the freshly built `libmagicfs.so`, then run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding the library this test run built (target/<profile>/deps,
/// next to the test executable).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("target/<profile>/deps").to_path_buf();
    assert!(dir.join("libmagicfs.so").is_file(), "{} has no libmagicfs.so", dir.display());
    dir
}

/// Compiles `source` against the header and the library, runs it with a
/// scratch directory as its argument, and returns what it printed.
fn compile_and_run(name: &str, source: &Path) -> String {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::Builder::new().prefix(&format!("magicfs-c-{name}-")).tempdir().unwrap();
    let exe = tmp.path().join(name);
    let lib = lib_dir();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-pthread"])
        .arg("-I")
        .arg(here.join("include"))
        .arg(source)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lmagicfs")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(out.status.success(), "{cc} {name}.c failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let store = tmp.path().join("store");
    let out = Command::new(&exe).arg(&store).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} failed ({}):\n{text}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_c(name: &str) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c").join(format!("{name}.c"));
    let out = compile_and_run(name, &source);
    assert!(out.contains(&format!("{name}: all passed")), "{out}");
}

/// The README's C example compiles and runs as written.
#[test]
fn readme_example() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let marker = "<!-- example: c -->\n```c\n";
    let start = readme.find(marker).expect("README has the C example") + marker.len();
    let code = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("hello.c");
    std::fs::write(&source, code).unwrap();
    assert_eq!(compile_and_run("hello", &source), "hello from C\n");
}

#[test]
fn ermfs_export_list() {
    run_c("ermfs");
}

#[test]
fn posix_conventions() {
    run_c("posix");
}

#[test]
fn threaded_open_close_stress() {
    run_c("threads");
}

#[test]
fn memfd_fexecve() {
    run_c("fexecve");
}
