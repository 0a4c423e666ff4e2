//! The `exec` generator: an external program in any language. It gets the
//! [`GenRequest`] as one JSON document on standard input and writes the
//! file's content on standard output, then exits 0. A non-zero exit, output
//! that is not text, more than [`MAX_OUTPUT`] bytes, or running past the time
//! limit is a failure and nothing is stored. Its output is checked like a
//! model's (empty, repeating, invalid for the file's type) and asked for
//! again with the request's `attempt` counting up. The program runs in its
//! own process group, which is killed whole on timeout.

use crate::error::GenError;
use crate::plugin::{ContentGenerator, Output, Progress};
use crate::request::GenRequest;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Largest output accepted from a plugin.
pub const MAX_OUTPUT: usize = 16 << 20;

/// An external program registered under a name.
#[derive(Debug, Clone)]
pub struct ExecGenerator {
    name: String,
    program: PathBuf,
    timeout: Duration,
}

impl ExecGenerator {
    /// A plugin `name` running `program` with at most `timeout` per file.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, timeout: Duration) -> ExecGenerator {
        ExecGenerator { name: name.into(), program: program.into(), timeout }
    }

    /// Parses `NAME=PROGRAM` (the `--plugin` flag).
    pub fn parse_spec(spec: &str, timeout: Duration) -> Result<ExecGenerator, String> {
        let (name, prog) = spec.split_once('=').ok_or_else(|| format!("'{spec}': expected NAME=PROGRAM"))?;
        let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("plugin name '{name}': use letters, digits, '-' and '_'"));
        }
        if ["llm", "readme", "none"].contains(&name) {
            return Err(format!("plugin name '{name}' is a built-in generator; pick another"));
        }
        let program = PathBuf::from(prog);
        if !program.is_file() {
            return Err(format!("plugin program {} does not exist or is not a file", program.display()));
        }
        Ok(ExecGenerator::new(name, program, timeout))
    }

    fn kill_group(pid: u32) {
        // SAFETY: kill(2) on the plugin's own process group.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    }
}

impl ContentGenerator for ExecGenerator {
    fn name(&self) -> &str {
        &self.name
    }

    fn generate(&self, req: &GenRequest, progress: &Progress) -> Result<Output, GenError> {
        let input = serde_json::to_vec(req).map_err(|e| GenError::Plugin(format!("request: {e}")))?;
        // A plugin written a moment ago is "busy" (ETXTBSY) while another
        // thread's fork still holds the writer's descriptor, until that child
        // execs: try again for a little while.
        let mut busy = 0u32;
        let mut child = loop {
            let spawned = Command::new(&self.program)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn();
            match spawned {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && busy < 10 => {
                    busy += 1;
                    std::thread::sleep(Duration::from_millis(10 * u64::from(busy)));
                }
                r => break r.map_err(|e| GenError::Plugin(format!("cannot start {}: {e}", self.program.display())))?,
            }
        };
        let pid = child.id();
        let (mut stdin, mut stdout, mut stderr) = match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
            (Some(i), Some(o), Some(e)) => (i, o, e),
            _ => {
                Self::kill_group(pid);
                let _ = child.wait();
                return Err(GenError::Plugin("no pipes to the plugin".into()));
            }
        };
        // A plugin that never reads its input must not block us: write from a thread.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let err_reader = std::thread::spawn(move || {
            let mut e = Vec::new();
            let _ = (&mut stderr).take(64 << 10).read_to_end(&mut e);
            e
        });
        let (tx, rx) = std::sync::mpsc::channel::<Result<Vec<u8>, String>>();
        let prog = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let prog2 = prog.clone();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 64 << 10];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if out.len() + n > MAX_OUTPUT {
                            let _ = tx.send(Err(format!("output exceeds {} MiB", MAX_OUTPUT >> 20)));
                            return;
                        }
                        out.extend_from_slice(&buf[..n]);
                        prog2.store(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("reading output: {e}")));
                        return;
                    }
                }
            }
            let _ = tx.send(Ok(out));
        });
        let deadline = Instant::now() + self.timeout;
        let out = loop {
            progress.set_bytes(prog.load(std::sync::atomic::Ordering::Relaxed));
            if progress.cancelled() {
                Self::kill_group(pid);
                let _ = child.wait();
                return Err(GenError::Cancelled);
            }
            let now = Instant::now();
            if now >= deadline {
                Self::kill_group(pid);
                let _ = child.wait();
                return Err(GenError::Timeout { generator: self.name.clone(), secs: self.timeout.as_secs_f64() });
            }
            match rx.recv_timeout((deadline - now).min(Duration::from_millis(100))) {
                Ok(r) => break r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break Err("output reader ended".into()),
            }
        };
        // Output is complete (or failed); the exit status decides.
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() >= deadline => {
                    Self::kill_group(pid);
                    let _ = child.wait();
                    return Err(GenError::Timeout { generator: self.name.clone(), secs: self.timeout.as_secs_f64() });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(GenError::Plugin(format!("waiting for the plugin: {e}"))),
            }
        };
        let _ = writer.join();
        let err = err_reader.join().unwrap_or_default();
        let err = String::from_utf8_lossy(&err);
        let err = err.trim();
        let out = out.map_err(GenError::Plugin)?;
        if !status.success() {
            let tail: String = err.chars().rev().take(400).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(GenError::Plugin(format!("{} exited with {status}: {tail}", self.program.display())));
        }
        if out.contains(&0) || std::str::from_utf8(&out).is_err() {
            return Err(GenError::Plugin(format!(
                "{} printed {} bytes that are not UTF-8 text; plugins must print text",
                self.program.display(),
                out.len()
            )));
        }
        progress.set_bytes(out.len() as u64);
        Ok(Output { bytes: out, model: format!("exec:{}", self.program.display()), finish: "stop" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn req() -> GenRequest {
        GenRequest {
            version: 1,
            generator: "t".into(),
            path: "/a/b.txt".into(),
            name: "b.txt".into(),
            prompt: "hello".into(),
            context: vec![],
            tree_root: "/a".into(),
            tree: vec![],
            siblings: vec![],
            format: "txt".into(),
            attempt: 1,
            sampling: Default::default(),
        }
    }

    #[test]
    fn ok_timeout_garbage_and_failure() {
        let d = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(5);
        let ok = ExecGenerator::new("t", script(d.path(), "ok", "cat | tr a-z A-Z"), t);
        let out = ok.generate(&req(), &Progress::default()).unwrap();
        assert!(String::from_utf8(out.bytes).unwrap().contains("\"PROMPT\":\"HELLO\""));
        let hang =
            ExecGenerator::new("t", script(d.path(), "hang", "echo partial; sleep 30"), Duration::from_millis(300));
        let start = Instant::now();
        assert!(matches!(hang.generate(&req(), &Progress::default()), Err(GenError::Timeout { .. })));
        assert!(start.elapsed() < Duration::from_secs(5), "the whole process group is killed");
        let bin = ExecGenerator::new("t", script(d.path(), "bin", "printf 'a\\000\\377'"), t);
        let r = bin.generate(&req(), &Progress::default()).err();
        assert!(matches!(&r, Some(GenError::Plugin(m)) if m.contains("not UTF-8")), "{r:?}");
        let fail = ExecGenerator::new("t", script(d.path(), "fail", "echo half; echo oops >&2; exit 3"), t);
        let r = fail.generate(&req(), &Progress::default()).err();
        assert!(matches!(&r, Some(GenError::Plugin(m)) if m.contains("oops") && m.contains("exit")), "{r:?}");
        assert!(ExecGenerator::parse_spec("llm=/bin/true", t).is_err());
        assert!(ExecGenerator::parse_spec("x=/nonexistent", t).is_err());
        assert!(ExecGenerator::parse_spec("noequals", t).is_err());
    }
}
