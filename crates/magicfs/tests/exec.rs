//! `magicfs exec`: programs stored in MagicFS run through fexecve of a sealed
//! memfd, from a mount and from an unmounted store.

mod common;

use common::{bin, scratch, sh, Mount};
use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut c = Command::new(bin())
        .args(args)
        .env("MAGICFS_TEST_VAR", "from-env")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn stored_scripts_and_binaries_run_with_args_env_stdin_and_exit_code() {
    let tmp = scratch("exec");
    let data = tmp.path().join("data");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&data), &[]);
    sh(
        &m.dir,
        "mkdir bin
         printf '#!/bin/sh\\nread line\\necho \"args=$* env=$MAGICFS_TEST_VAR stdin=$line\"\\nexit 7\\n' > bin/script.sh
         chmod +x bin/script.sh
         cp /bin/sh bin/sh && cp /bin/echo bin/echo
         echo 'not a program' > bin/plain && chmod +x bin/plain
         echo 'data' > bin/noexec",
    );
    let mounted = |p: &str| m.path(p).to_str().unwrap().to_string();
    // Through the mount.
    let (code, out, _) = run(&["exec", &mounted("bin/script.sh"), "a", "b c"], "hello\n");
    assert_eq!((code, out.trim()), (7, "args=a b c env=from-env stdin=hello"));
    let (code, out, _) = run(&["exec", &mounted("bin/echo"), "-n", "elf", "works"], "");
    assert_eq!((code, out.as_str()), (0, "elf works"));
    let (code, _, _) = run(&["exec", &mounted("bin/sh"), "-c", "exit 5"], "");
    assert_eq!(code, 5);
    let (code, _, err) = run(&["exec", &mounted("bin/noexec")], "");
    assert_eq!(code, 1, "a program that cannot start is a runtime error");
    assert!(err.contains("not executable"), "{err}");
    let (code, _, err) = run(&["exec", &mounted("bin/plain")], "");
    assert_eq!(code, 1);
    assert!(err.contains("not a program"), "{err}");
    m.stop();

    // From the unmounted store.
    let d = data.to_str().unwrap();
    let (code, out, _) = run(&["exec", "--data", d, "bin/script.sh", "x"], "there\n");
    assert_eq!((code, out.trim()), (7, "args=x env=from-env stdin=there"));
    let (code, out, _) = run(&["exec", "--data", d, "/bin/echo", "stored", "elf"], "");
    assert_eq!((code, out.trim()), (0, "stored elf"));
    let (code, _, err) = run(&["exec", "--data", d, "bin/missing"], "");
    assert_eq!(code, 1);
    assert!(err.contains("No such file"), "{err}");
}
