//! Shared helpers for integration tests: real mounts of the real binary.
#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The magicfs binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_magicfs"))
}

/// Runs `magicfs ARGS` to completion.
pub fn magicfs(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run magicfs")
}

/// True when `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4).map(|p| Path::new(p) == canon).unwrap_or(false))
}

/// A running `magicfs mount`.
pub struct Mount {
    pub dir: PathBuf,
    pub data: Option<PathBuf>,
    /// A cluster volume's metadata URL (instead of `data`).
    pub meta: Option<String>,
    child: Option<Child>,
    extra: Vec<String>,
    chat: bool,
}

impl Mount {
    /// Mounts a store in `data` (or memory when `None`) on `dir`.
    pub fn start(dir: &Path, data: Option<&Path>, extra: &[&str]) -> Mount {
        Mount::launch_on(dir, data, None, extra, false)
    }

    /// Like [`Mount::start`], with chat sessions answered (the model is loaded).
    pub fn start_chat(dir: &Path, data: Option<&Path>, extra: &[&str]) -> Mount {
        Mount::launch_on(dir, data, None, extra, true)
    }

    /// Mounts the cluster volume whose metadata is at `meta` on `dir`.
    pub fn cluster(dir: &Path, meta: &str, extra: &[&str]) -> Mount {
        Mount::launch_on(dir, None, Some(meta), extra, false)
    }

    /// Like [`Mount::cluster`], with chat sessions answered (the model is loaded).
    pub fn cluster_chat(dir: &Path, meta: &str, extra: &[&str]) -> Mount {
        Mount::launch_on(dir, None, Some(meta), extra, true)
    }

    fn launch_on(dir: &Path, data: Option<&Path>, meta: Option<&str>, extra: &[&str], chat: bool) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let mut m = Mount {
            dir: dir.to_path_buf(),
            data: data.map(Path::to_path_buf),
            meta: meta.map(str::to_string),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            chat,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bin());
        cmd.arg("mount").arg(&self.dir);
        match (&self.meta, &self.data) {
            (Some(u), _) => cmd.arg("--meta").arg(u),
            (None, Some(d)) => cmd.arg("--data").arg(d),
            (None, None) => cmd.arg("--memory"),
        };
        if self.meta.is_some() {
            // A cluster volume's chunks may be in the test run's S3 service.
            cmd.envs(magicfs_pg::testing::services().s3_env());
        }
        cmd.args(&self.extra).env("MAGICFS_LOG", "warn").stdin(Stdio::null());
        if self.chat {
            // Chat tests read the daemon's log (appended across restarts).
            let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
            cmd.env("MAGICFS_LOG", "info").stderr(log);
        } else {
            cmd.arg("--no-chat");
        }
        let mut child = cmd.spawn().expect("spawn magicfs mount");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&self.dir) {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("magicfs mount exited early: {st}");
            }
            assert!(Instant::now() < deadline, "mount did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Where a chat mount's daemon logs.
    pub fn log_path(&self) -> PathBuf {
        self.dir.with_extension("log")
    }

    /// The daemon's log so far (chat mounts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Process id of the daemon.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("mounted")
    }

    /// Peak resident memory of the daemon, in bytes.
    pub fn peak_rss(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = s
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb * 1024
    }

    /// Path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Clean unmount (SIGTERM) and wait for the daemon to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain kill(2) on our child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let st = c.wait().expect("wait for magicfs");
            assert!(st.success(), "magicfs exited with {st}");
        }
        assert!(!is_mounted(&self.dir), "still mounted after stop");
    }

    /// kill -9 the daemon and clear the dead mount.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("fusermount3").arg("-uz").arg(&self.dir).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_mounted(&self.dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop, then mount the same store again.
    pub fn remount(&mut self) {
        self.stop();
        self.spawn();
    }

    /// `fusermount3 -u` the mount (as a user would) and wait at most
    /// `timeout` for the daemon to exit; returns how long that took, or
    /// `None` if it did not exit in time (it is then killed).
    pub fn fusermount_and_wait(&mut self, timeout: Duration) -> Option<Duration> {
        let t = Instant::now();
        let out = Command::new("fusermount3").arg("-u").arg(&self.dir).output().expect("run fusermount3");
        assert!(out.status.success(), "fusermount3 -u: {}", String::from_utf8_lossy(&out.stderr));
        let mut c = self.child.take()?;
        while t.elapsed() < timeout {
            if let Ok(Some(_)) = c.try_wait() {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Mount again after a kill.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// The parsed `.magic/status`.
    pub fn status(&self) -> serde_json::Value {
        let s = std::fs::read_to_string(self.path(".magic/status")).expect("read status");
        serde_json::from_str(&s).expect("status is JSON")
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain kill(2) on our child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.dir).status();
        }
    }
}

/// Runs a shell command in `dir`, asserting success; returns stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("bash").arg("-ceu").arg(script).current_dir(dir).output().expect("run bash");
    assert!(
        out.status.success(),
        "command failed: {script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The errno of the last failed libc call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `statvfs(2)` of `p`.
pub fn statvfs(p: &Path) -> libc::statvfs {
    // SAFETY: statvfs is plain data; valid path and out-pointer.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(cpath(p).as_ptr(), &mut s) }, 0, "statvfs {}", p.display());
    s
}

/// A C string of a path.
pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Deterministic pseudo-random bytes.
#[allow(unused_imports)]
pub use magicfs_types::noise::noise;

/// A scratch directory under /tmp for one test (not on the mount).
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("magicfs-{name}-")).tempdir().unwrap()
}

/// Reads the xattr `name` of `p` as text; `None` when it is not there.
pub fn get_xattr(p: &Path, name: &str) -> Option<String> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::getxattr(cpath(p).as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(String::from_utf8(buf).unwrap())
}

/// Sets the xattr `name` of `p` to `v`, failing the test if that fails.
pub fn set_xattr(p: &Path, name: &str, v: &str) {
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::setxattr(cpath(p).as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    assert_eq!(r, 0, "setxattr {name} on {}: errno {}", p.display(), errno());
}

/// The cache directory the scripts fill (`~/.cache/magicfs`).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/magicfs")
}

/// Python with the `mcp` and `playwright` packages (`scripts/client-venv.sh`).
pub fn client_python() -> PathBuf {
    let p = std::env::var_os("MAGICFS_CLIENT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("client-venv/bin/python"));
    assert!(p.is_file(), "{} is missing: run scripts/client-venv.sh", p.display());
    p
}

/// The SmolLM2 model `scripts/models.sh` fetches.
pub fn smollm2() -> PathBuf {
    let dir = std::env::var_os("MAGICFS_MODELS").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("models"));
    let m = dir.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(m.is_file(), "{} is missing: run scripts/models.sh", m.display());
    m
}

/// A server started in the background; stopped with SIGTERM on drop.
pub struct Server {
    child: Child,
    /// What followed `marker` on the line that announced it (its address).
    pub addr: String,
}

impl Server {
    /// Starts `cmd` and waits for a line on its stderr containing `marker`.
    pub fn start(mut cmd: Command, marker: &str) -> Server {
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn server");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let line = lines.next().expect("the server exited before it listened").unwrap();
            if let Some(at) = line.find(marker) {
                break line[at + marker.len()..].split_whitespace().next().unwrap_or("").to_string();
            }
            assert!(Instant::now() < deadline, "the server printed no address");
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Waits until the mount's search index is idle and holds at least `files` files.
pub fn wait_indexed(m: &Mount, files: u64, within: Duration) {
    let end = Instant::now() + within;
    loop {
        let s = m.status()["search"].clone();
        if s["model"] == "ready"
            && s["queued"] == 0
            && s["indexing"] == false
            && s["scanning"] == false
            && s["files_indexed"].as_u64().unwrap_or(0) >= files
        {
            return;
        }
        assert!(Instant::now() < end, "index not ready in {within:?}: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The turns of the chat session `id` of a mount (the file must parse).
pub fn turns(m: &Mount, id: &str) -> Vec<magicfs_chat::transcript::Turn> {
    let bytes = std::fs::read(m.path(&format!("sessions/{id}"))).unwrap();
    magicfs_chat::transcript::parse(&bytes).unwrap_or_else(|e| panic!("session {id} does not parse: {e}"))
}

/// The roles of `turns`, in order.
pub fn roles(t: &[magicfs_chat::transcript::Turn]) -> Vec<magicfs_chat::transcript::TurnRole> {
    t.iter().map(|t| t.role).collect()
}

/// The sentinel that exists while session `id` is being answered.
pub fn sentinel(m: &Mount, id: &str) -> PathBuf {
    m.path(&format!("sessions/.generating.{id}"))
}
