//! MagicFS at home on a Linux machine: exit statuses, configuration files and
//! their precedence, `-o` mount options, logs appended across starts, fstab
//! with `mount -a` through the installed mount helper, the systemd notify
//! protocol, completions and man pages.

mod common;

use common::{bin, install_staged, is_mounted, magicfs, scratch};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `magicfs ARGS` with `env` set and no configuration file of this machine.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args).env("MAGICFS_CONFIG", "/dev/null").env_remove("MAGICFS_CODEC").env_remove("RUST_LOG");
    c.env_remove("MAGICFS_LOG").stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run magicfs")
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A foreground mount started with `args`; SIGTERM and a clean exit on drop.
struct Foreground {
    child: Option<Child>,
    dir: PathBuf,
}

impl Foreground {
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Foreground {
        std::fs::create_dir_all(dir).unwrap();
        let mut c = Command::new(bin());
        c.arg("mount").arg(dir).args(args).env("MAGICFS_CONFIG", "/dev/null").env_remove("MAGICFS_CODEC");
        c.env("RUST_LOG", "warn").stdin(Stdio::null());
        // An empty value removes the variable.
        for (k, v) in env {
            if v.is_empty() {
                c.env_remove(k);
            } else {
                c.env(k, v);
            }
        }
        let mut child = c.spawn().expect("spawn magicfs mount");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(dir) {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("magicfs mount {args:?} exited early: {st}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("magicfs mount {args:?} did not come up");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Foreground { child: Some(child), dir: dir.to_path_buf() }
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join(".magic/status")).unwrap()).unwrap()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            rustix::process::kill_process(rustix::process::Pid::from_child(&c), rustix::process::Signal::TERM).unwrap();
            let st = c.wait().unwrap();
            assert!(st.success(), "magicfs exited with {st}");
        }
        assert!(!is_mounted(&self.dir));
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = rustix::process::kill_process(rustix::process::Pid::from_child(&c), rustix::process::Signal::TERM);
            let _ = c.wait();
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.dir).status();
        }
    }
}

/// The compression ratio a mount reaches on very compressible data: 1.0
/// means codec none.
fn compression(m: &Foreground) -> f64 {
    std::fs::write(m.dir.join("a.txt"), vec![b'a'; 256 << 10]).unwrap();
    let mut st = m.status();
    wait_until("the file's chunks", 20, || {
        st = m.status();
        st["chunks"].as_u64().unwrap_or(0) > 0
    });
    st["compression_ratio"].as_f64().unwrap()
}

#[test]
fn exit_statuses_are_distinct_and_documented() {
    let help = run(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    for line in
        ["0  success", "1  runtime error", "2  usage error", "3  search found no match", "4  fsck found problems"]
    {
        assert!(stdout(&help).contains(line), "--help lacks {line:?}:\n{}", stdout(&help));
    }
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    for line in ["| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |"] {
        assert!(readme.contains(line), "README's exit status table lacks {line}");
    }

    // Usage errors: clap's, a bad -o option, a bad configuration file, a bad value.
    assert_eq!(run(&["--no-such-flag"], &[]).status.code(), Some(2));
    assert_eq!(run(&["mount"], &[]).status.code(), Some(2), "no mount point");
    let tmp = scratch("exit-codes");
    let mnt = tmp.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let o = run(&["mount", mnt.to_str().unwrap(), "--memory", "-o", "frobnicate"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown mount option 'frobnicate'"), "{}", stderr(&o));
    let bad = write_config(tmp.path(), "[mount]\nthreads = \"many\"\n");
    let o = run(&["--config", bad.to_str().unwrap(), "mount", mnt.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("config.toml") && stderr(&o).contains("[mount] threads"), "{}", stderr(&o));
    let o = run(&["mount", mnt.to_str().unwrap(), "--memory", "--codec", "lzma"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!is_mounted(&mnt));

    // Runtime errors.
    let missing = tmp.path().join("missing");
    let o = run(&["fsck", "--data", missing.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = run(&["mount", missing.to_str().unwrap(), "--memory"], &[]);
    assert_eq!(o.status.code(), Some(1), "a missing mount point: {}", stderr(&o));

    // fsck: 0 on a clean store, 4 when a chunk no longer matches its hash.
    let data = tmp.path().join("data");
    let mut m = Foreground::start(&mnt, &["--data", data.to_str().unwrap(), "--no-chat", "--no-search"], &[]);
    std::fs::write(mnt.join("f.bin"), (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>()).unwrap();
    m.stop();
    assert_eq!(run(&["fsck", "--data", data.to_str().unwrap()], &[]).status.code(), Some(0));
    let pack = walk(&data)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("pack"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let pack = pack.expect("a pack file");
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&pack, bytes).unwrap();
    let o = run(&["fsck", "--data", data.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn flags_beat_environment_beat_config_file_beat_defaults() {
    let tmp = scratch("precedence");
    let mnt = tmp.path().join("m");
    let none_in_file = write_config(tmp.path(), "[mount]\ncodec = \"none\"\nno-chat = true\nno_search = true\n");
    let cfg = none_in_file.to_str().unwrap();
    let base = ["--memory", "--no-chat", "--no-search"];

    // Default: zstd compresses.
    let m = Foreground::start(&mnt, &base, &[]);
    assert!(compression(&m) > 4.0, "default codec zstd");
    drop(m);
    // The file says none.
    let m = Foreground::start(&mnt, &["--memory"], &[("MAGICFS_CONFIG", cfg)]);
    assert_eq!(compression(&m), 1.0, "config file codec = none (and no-chat, no_search from it)");
    assert!(m.status().get("search").is_none(), "no_search from the file");
    drop(m);
    // An empty variable counts as unset.
    let o = Command::new(bin()).args(["completions", "bash"]).env("MAGICFS_CONFIG", "").output().unwrap();
    assert!(o.status.success(), "MAGICFS_CONFIG= : {}", String::from_utf8_lossy(&o.stderr));
    // Without --config or MAGICFS_CONFIG, the user's file is found under $XDG_CONFIG_HOME.
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir_all(xdg.join("magicfs")).unwrap();
    std::fs::copy(&none_in_file, xdg.join("magicfs/config.toml")).unwrap();
    let m =
        Foreground::start(&mnt, &["--memory"], &[("MAGICFS_CONFIG", ""), ("XDG_CONFIG_HOME", xdg.to_str().unwrap())]);
    assert_eq!(compression(&m), 1.0, "codec = none from $XDG_CONFIG_HOME/magicfs/config.toml");
    drop(m);
    // The environment beats the file.
    let m = Foreground::start(&mnt, &["--memory"], &[("MAGICFS_CONFIG", cfg), ("MAGICFS_CODEC", "zstd")]);
    assert!(compression(&m) > 4.0, "MAGICFS_CODEC beats the file");
    drop(m);
    // A flag beats the environment, and -o is a flag.
    let m = Foreground::start(&mnt, &["--memory", "--codec", "none"], &[("MAGICFS_CODEC", "zstd")]);
    assert_eq!(compression(&m), 1.0, "--codec beats MAGICFS_CODEC");
    drop(m);
    let m = Foreground::start(&mnt, &["-o", "memory,no_chat,nosearch,codec=none"], &[("MAGICFS_CODEC", "zstd")]);
    assert_eq!(compression(&m), 1.0, "-o codec= beats MAGICFS_CODEC");
    drop(m);
    // A flag given after -o wins over it.
    let m = Foreground::start(&mnt, &["-o", "memory,codec=none,no-chat,no-search", "--codec", "zstd"], &[]);
    assert!(compression(&m) > 4.0, "--codec after -o wins");
    drop(m);

    // [env] sets variables at the environment's rank below real ones; --config beats MAGICFS_CONFIG.
    let env_file = tmp.path().join("env.toml");
    std::fs::write(
        &env_file,
        "[env]\nMAGICFS_CODEC = \"none\"\n[mount]\nmemory = true\nno-chat = true\nno-search = true\n",
    )
    .unwrap();
    let m = Foreground::start(&mnt, &["--config", env_file.to_str().unwrap()], &[("MAGICFS_CONFIG", cfg)]);
    assert_eq!(compression(&m), 1.0, "[env] MAGICFS_CODEC");
    drop(m);

    // A file setting that conflicts with a flag steps aside: memory = true against --data.
    let data = tmp.path().join("data");
    let conflicting = tmp.path().join("memory.toml");
    std::fs::write(&conflicting, "[mount]\nmemory = true\nno-chat = true\nno-search = true\n").unwrap();
    let m = Foreground::start(
        &mnt,
        &["--data", data.to_str().unwrap()],
        &[("MAGICFS_CONFIG", conflicting.to_str().unwrap())],
    );
    assert_eq!(m.status()["backend"], "redb", "{}", m.status());
    drop(m);

    // The mount point itself can come from the file; --help shows the file's values, never secrets.
    let full = tmp.path().join("full.toml");
    std::fs::write(
        &full,
        format!(
            "[mount]\nmountpoint = {:?}\nmemory = true\nno-chat = true\nno-search = true\nwatch = [{:?}]\n\
             [serve]\ntoken = \"sekrit-token\"\nroot = [\"/srv\"]\n",
            mnt.to_str().unwrap(),
            tmp.path().to_str().unwrap()
        ),
    )
    .unwrap();
    let mut c = Command::new(bin());
    c.args(["--config", full.to_str().unwrap(), "mount"]).env("RUST_LOG", "warn").stdin(Stdio::null());
    let mut child = c.spawn().unwrap();
    wait_until("the mount from the file", 30, || is_mounted(&mnt));
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
    let help = run(&["--config", full.to_str().unwrap(), "serve", "--help"], &[]);
    assert!(stdout(&help).contains("/srv"), "{}", stdout(&help));
    assert!(!stdout(&help).contains("sekrit"), "a token from the file shown by --help");

    // Unknown settings are named with their file.
    let typo = tmp.path().join("typo.toml");
    std::fs::write(&typo, "[mount]\ncodek = \"none\"\n").unwrap();
    let o = run(&["--config", typo.to_str().unwrap(), "mount", "/x"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("typo.toml") && stderr(&o).contains("codek") && stderr(&o).contains("codec"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--config", tmp.path().join("nope.toml").to_str().unwrap(), "stats", "--help"], &[]);
    assert_eq!(o.status.code(), Some(2), "a missing --config file: {}", stderr(&o));
}

/// Runs `mount --daemon` on `data` and unmounts it; returns the log.
fn daemon_round(mnt: &Path, data: &Path, env: &[(&str, &str)]) -> String {
    let log = data.join("magicfs.log");
    let ends = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().matches("cleanly").count();
    let before = ends(&log);
    let o = run(
        &["mount", mnt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--daemon", "--no-chat", "--no-search"],
        env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&data.join("magicfs.log").display().to_string()), "names its log: {}", stdout(&o));
    assert!(is_mounted(mnt));
    let st = Command::new("fusermount3").arg("-u").arg(mnt).status().unwrap();
    assert!(st.success());
    wait_until("a clean unmount in the log", 30, || ends(&log) > before);
    wait_until("the daemon to exit", 30, || !lock_held(data));
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn daemon_logs_are_appended_in_the_data_directory_and_honour_rust_log() {
    let tmp = scratch("logs");
    let (mnt, data) = (tmp.path().join("m"), tmp.path().join("data"));
    std::fs::create_dir(&mnt).unwrap();
    let first = daemon_round(&mnt, &data, &[("RUST_LOG", "info")]);
    assert_eq!(first.matches("starting: mount").count(), 1, "{first}");
    let second = daemon_round(&mnt, &data, &[("MAGICFS_LOG", "info")]);
    assert!(second.starts_with(&first), "the log is appended, not truncated:\n{second}");
    assert_eq!(second.matches("starting: mount").count(), 2, "{second}");
    assert!(!data.with_extension("log").exists(), "nothing next to the data directory");
    // A quieter filter leaves the info lines out.
    let third = daemon_round_quiet(&mnt, &data);
    assert_eq!(third.matches("starting: mount").count(), 2, "RUST_LOG=warn: no info lines\n{third}");

    // Secrets never reach the log, even at trace level.
    let log = tmp.path().join("secret.log");
    let mut m = Foreground::start(
        &mnt,
        &["--memory", "--no-search", "--llm-url", "http://127.0.0.1:9/v1", "--log", log.to_str().unwrap()],
        &[("RUST_LOG", "trace"), ("MAGICFS_LLM_API_KEY", "sk-never-logged-0451")],
    );
    std::fs::write(mnt.join("sessions/s"), "User: hello\n").unwrap();
    wait_until("the chat error turn", 60, || {
        std::fs::read_to_string(mnt.join("sessions/s")).unwrap_or_default().contains("Error")
    });
    m.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("TRACE") || text.contains("DEBUG"), "trace level honoured:\n{text}");
    assert!(!text.contains("sk-never-logged-0451"), "the API key is in the log:\n{text}");
}

fn daemon_round_quiet(mnt: &Path, data: &Path) -> String {
    let o = run(
        &["mount", mnt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--daemon", "--no-chat", "--no-search"],
        &[("RUST_LOG", "warn")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let st = Command::new("fusermount3").arg("-u").arg(mnt).status().unwrap();
    assert!(st.success());
    wait_until("the daemon to exit", 30, || !is_mounted(mnt) && !lock_held(data));
    std::fs::read_to_string(data.join("magicfs.log")).unwrap()
}

/// True while a process holds the store's lock.
fn lock_held(data: &Path) -> bool {
    let Ok(f) = std::fs::File::open(data.join("LOCK")) else { return false };
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
}

#[test]
fn mount_options_cover_every_flag() {
    let tmp = scratch("options");
    let mnt = tmp.path().join("m");
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    let opts =
        format!("memory,no_chat,codec=none,threads=2,search-top-k=7,watch={},plugin=echo=/bin/cat", docs.display());
    let m = Foreground::start(&mnt, &["-o", &opts], &[]);
    assert_eq!(compression(&m), 1.0);
    let st = m.status();
    let watched = st["search"]["watch"].as_array().cloned().unwrap_or_default();
    assert!(watched.iter().any(|w| w["path"].as_str() == docs.canonicalize().unwrap().to_str()), "{st}");
    drop(m);
    let o = run(&["mount", mnt.to_str().unwrap(), "-o", "memory,threads"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("threads needs a value"), "{}", stderr(&o));
}

#[test]
fn fstab_lines_mount_with_mount_a_through_the_installed_helper() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mount -a needs root");
        return;
    }
    let tmp = scratch("fstab");
    let stage = tmp.path().join("stage");
    install_staged(&stage);
    for f in [
        "usr/bin/magicfs",
        "usr/lib/magicfs/libllama.so.0",
        "usr/lib/magicfs/libggml-base.so.0",
        "sbin/mount.magicfs",
        "sbin/mount.fuse.magicfs",
        "etc/systemd/system/magicfs@.service",
        "usr/share/bash-completion/completions/magicfs",
        "usr/share/zsh/site-functions/_magicfs",
        "usr/share/fish/vendor_completions.d/magicfs.fish",
        "usr/share/man/man1/magicfs.1",
        "usr/share/man/man1/magicfs-mount.1",
    ] {
        assert!(stage.join(f).exists(), "install.sh did not install {f}");
    }
    let unit = std::fs::read_to_string(stage.join("etc/systemd/system/magicfs@.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("ExecStart=/usr/bin/magicfs "), "{unit}");
    // mount(8) looks for its helpers in /sbin only: the same helper, run with this build.
    for name in ["mount.magicfs", "mount.fuse.magicfs"] {
        let target = Path::new("/sbin").join(name);
        let _ = std::fs::remove_file(&target);
        std::fs::copy(stage.join("sbin/mount.magicfs"), &target).unwrap();
    }

    let (mnt, data, docs, log) =
        (tmp.path().join("mnt"), tmp.path().join("data"), tmp.path().join("docs"), tmp.path().join("m.log"));
    std::fs::create_dir(&mnt).unwrap();
    std::fs::create_dir(&docs).unwrap();
    let fstab = tmp.path().join("fstab");
    let mut f = std::fs::File::create(&fstab).unwrap();
    writeln!(f, "# a test fstab").unwrap();
    writeln!(
        f,
        "{} {} fuse.magicfs defaults,nofail,x-systemd.automount,no-chat,nosearch,codec=none,threads=2,log={} 0 0",
        data.display(),
        mnt.display(),
        log.display()
    )
    .unwrap();
    drop(f);
    let o = Command::new("mount")
        .args(["-a", "--fstab", fstab.to_str().unwrap()])
        .env("MAGICFS_BIN", bin())
        .output()
        .unwrap();
    assert!(o.status.success(), "mount -a: {}{}", stdout(&o), stderr(&o));
    assert!(is_mounted(&mnt), "mount -a mounted nothing");
    std::fs::write(mnt.join("a.txt"), vec![b'a'; 256 << 10]).unwrap();
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(mnt.join(".magic/status")).unwrap()).unwrap();
    assert_eq!(st["store_path"].as_str().map(PathBuf::from), Some(data.clone()), "{st}");
    let o = Command::new("umount").arg(&mnt).output().unwrap();
    assert!(o.status.success(), "umount: {}", stderr(&o));
    wait_until("a clean exit", 30, || std::fs::read_to_string(&log).unwrap_or_default().contains("cleanly"));
    wait_until("the store's lock", 30, || !lock_held(&data));
    let o = run(&["fsck", "--data", data.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("1 inodes") || stdout(&o).contains("inodes"), "{}", stdout(&o));
}

#[test]
fn systemd_is_notified_when_the_mount_is_up_and_when_it_stops() {
    let tmp = scratch("notify");
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mnt = tmp.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let child = Command::new(bin())
        .args(["mount", mnt.to_str().unwrap(), "--memory", "--no-chat", "--no-search"])
        .env("MAGICFS_CONFIG", "/dev/null")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut fg = Foreground { child: Some(child), dir: mnt.clone() };
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(msg.contains("STATUS=mounted"), "{msg}");
    // READY=1 means the mount answers now.
    assert!(is_mounted(&mnt), "READY=1 before the mount is live");
    assert!(fg.status()["inodes"].as_u64().is_some());
    std::fs::write(mnt.join("kept"), b"x").unwrap();
    let child = fg.child.take().unwrap();
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::TERM).unwrap();
    let n = sock.recv(&mut buf).expect("a stop notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    fg.child = Some(child);
    fg.stop();

    // `--foreground` wins over `daemon = true` from a file (as under the unit).
    let cfg = write_config(tmp.path(), "[mount]\ndaemon = true\nmemory = true\nno-chat = true\nno-search = true\n");
    let child = Command::new(bin())
        .args(["--config", cfg.to_str().unwrap(), "mount", mnt.to_str().unwrap(), "--foreground"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut fg = Foreground { child: Some(child), dir: mnt.clone() };
    let n = sock.recv(&mut buf).expect("a notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    assert_eq!(fg.child.as_mut().unwrap().try_wait().unwrap(), None, "pid {pid} still serves the mount");
    fg.stop();
}

#[test]
fn the_unit_file_passes_systemd_analyze_where_it_runs() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/systemd/magicfs@.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for l in ["Type=notify", "NotifyAccess=main", "mount --foreground", "KillMode=mixed"] {
        assert!(text.contains(l), "unit lacks {l}");
    }
    let Ok(o) = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&unit).output() else {
        eprintln!("no systemd-analyze here");
        return;
    };
    let err = stderr(&o);
    assert!(!err.contains("Unknown key") && !err.contains("Invalid"), "systemd-analyze verify:\n{err}");
}

#[test]
fn completions_and_man_pages_come_from_the_command_line() {
    for shell in ["bash", "zsh", "fish"] {
        let o = magicfs(&["completions", shell]);
        assert!(o.status.success());
        let text = stdout(&o);
        assert!(text.contains("mount") && text.contains("model-path"), "{shell} completions lack flags");
    }
    let o = magicfs(&["man"]);
    assert!(o.status.success());
    let page = stdout(&o);
    assert!(page.starts_with(".ie") || page.contains(".TH magicfs"), "{}", &page[..page.len().min(200)]);
    assert!(page.contains("Exit status"), "man page lacks the exit status table");
    let tmp = scratch("man");
    let o = magicfs(&["man", "--dir", tmp.path().to_str().unwrap()]);
    assert!(o.status.success());
    let mount = std::fs::read_to_string(tmp.path().join("magicfs-mount.1")).unwrap();
    assert!(mount.contains("foreground") && mount.contains("MAGICFS_CODEC"), "mount page lacks flags or variables");
}

#[test]
fn progress_bars_draw_on_a_terminal_and_stay_quiet_in_pipes() {
    let tmp = scratch("progress");
    let (mnt, data) = (tmp.path().join("m"), tmp.path().join("data"));
    let mut m = Foreground::start(&mnt, &["--data", data.to_str().unwrap(), "--no-chat", "--no-search"], &[]);
    for i in 0..8u32 {
        let bytes: Vec<u8> =
            (0..1u32 << 20).map(|j| (j.wrapping_mul(2654435761).wrapping_add(i) >> 13) as u8).collect();
        std::fs::write(mnt.join(format!("f{i}")), bytes).unwrap();
    }
    m.stop();
    let snap = tmp.path().join("tree.json");
    let export = format!("{} export {} --output {}", bin().display(), data.display(), snap.display());
    let fsck = format!("{} fsck --data {}", bin().display(), data.display());
    // On a terminal (script(1) gives the commands one): a bar with its message and unit.
    for (cmd, needles) in [(&export, ["export", "B/s"]), (&fsck, ["fsck", "chunks"])] {
        let o = Command::new("script")
            .args(["-qefc", cmd, "/dev/null"])
            .env("MAGICFS_CONFIG", "/dev/null")
            .env("TERM", "xterm")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd}: {}{}", stdout(&o), stderr(&o));
        let screen = stdout(&o);
        for n in needles {
            assert!(screen.contains(n), "{cmd} drew no bar with {n:?} on a terminal:\n{screen:?}");
        }
    }
    // In a pipe: the results only, no bar.
    let o = run(&["fsck", "--data", data.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(!stderr(&o).contains("chunks") && !stderr(&o).contains('\r'), "a bar in a pipe: {:?}", stderr(&o));
    std::fs::remove_file(&snap).unwrap();
    let o = run(&["export", data.to_str().unwrap(), "--output", snap.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("MiB/s") && !stderr(&o).contains('\r'), "a bar in a pipe: {:?}", stderr(&o));
}
