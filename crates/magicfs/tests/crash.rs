//! Crash safety: kill -9 the daemon at random moments while files are being
//! written; every file that was closed or fsynced before the kill must be
//! intact after a remount, and fsck must find the store clean.

mod common;

use common::{magicfs, noise, scratch, Mount};
use magicfs_types::noise::XorShift64;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Expected content of a file: base noise, optionally with one region
/// overwritten by other noise.
#[derive(Clone, Debug)]
struct Expect {
    len: usize,
    seed: u64,
    patch: Option<(u64, usize, u64)>,
}

impl Expect {
    fn bytes(&self) -> Vec<u8> {
        let mut v = noise(self.len, self.seed);
        if let Some((off, len, seed)) = self.patch {
            v[off as usize..off as usize + len].copy_from_slice(&noise(len, seed));
        }
        v
    }
}

/// close(2) with its error checked (dropping a `File` ignores it, and a
/// failed FLUSH on a dead mount must not count as a completed close).
fn close(f: fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    // SAFETY: we own the descriptor and close it exactly once.
    if unsafe { libc::close(f.into_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes, overwrites and deletes files until the mount dies; records in
/// `done` the expected state of every file whose close or fsync returned.
fn writer(
    dir: std::path::PathBuf,
    round: u64,
    done: Arc<Mutex<HashMap<String, Option<Expect>>>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = XorShift64::new(0x9e3779b97f4a7c15 ^ ((round + 1) * 7919));
    let mut i = 0u64;
    let mut names: Vec<String> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let r = (|| -> std::io::Result<()> {
            match rng.below(10) {
                0..=5 => {
                    let name = format!("r{round}-f{i}");
                    let e = Expect { len: 1 + rng.below(3 << 20) as usize, seed: rng.next_u64(), patch: None };
                    let mut f = OpenOptions::new().write(true).create_new(true).open(dir.join(&name))?;
                    f.write_all(&e.bytes())?;
                    if rng.below(2) == 0 {
                        f.sync_all()?;
                    }
                    close(f)?;
                    done.lock().unwrap().insert(name.clone(), Some(e));
                    names.push(name);
                }
                6..=7 if !names.is_empty() => {
                    let name = names[rng.below(names.len() as u64) as usize].clone();
                    let Some(Some(mut e)) = done.lock().unwrap().get(&name).cloned() else { return Ok(()) };
                    if e.patch.is_some() || e.len < 100 {
                        return Ok(());
                    }
                    let len = 1 + rng.below((e.len / 2) as u64) as usize;
                    let off = rng.below((e.len - len) as u64);
                    let seed = rng.next_u64();
                    let f = OpenOptions::new().write(true).open(dir.join(&name))?;
                    // Mark as unknown while the overwrite is in flight.
                    done.lock().unwrap().remove(&name);
                    f.write_all_at(&noise(len, seed), off)?;
                    f.sync_all()?;
                    close(f)?;
                    e.patch = Some((off, len, seed));
                    done.lock().unwrap().insert(name, Some(e));
                }
                _ if !names.is_empty() => {
                    let name = names.swap_remove(rng.below(names.len() as u64) as usize);
                    done.lock().unwrap().remove(&name);
                    fs::remove_file(dir.join(&name))?;
                    done.lock().unwrap().insert(name, None);
                }
                _ => {}
            }
            Ok(())
        })();
        if r.is_err() {
            return; // the mount is gone
        }
    }
}

#[test]
fn kill9_at_random_moments_loses_nothing_closed_or_fsynced() {
    let tmp = scratch("crash");
    let data = tmp.path().join("data");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&data), &[]);
    let done: Arc<Mutex<HashMap<String, Option<Expect>>>> = Arc::default();
    let mut rng = XorShift64::new(42);
    let rounds = 20;
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let (dir, done, stop) = (m.dir.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || writer(dir, round, done, stop))
        };
        std::thread::sleep(Duration::from_millis(100 + rng.below(600)));
        m.kill9();
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();

        let out = magicfs(&["fsck", "--data", data.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "round {round}: fsck found problems:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        m.restart();
        let expected = done.lock().unwrap().clone();
        let mut checked = 0;
        for (name, e) in &expected {
            let p = m.path(name);
            match e {
                Some(e) => {
                    let got = fs::read(&p).unwrap_or_else(|err| panic!("round {round}: {name} lost: {err}"));
                    assert!(
                        got == e.bytes(),
                        "round {round}: {name} has wrong content ({} bytes, want {})",
                        got.len(),
                        e.len
                    );
                    checked += 1;
                }
                None => assert!(!p.exists(), "round {round}: deleted {name} came back"),
            }
        }
        eprintln!("round {round}: {checked} files verified after kill -9");
    }
    assert!(done.lock().unwrap().values().filter(|e| e.is_some()).count() > rounds as usize);
}

/// A metadata change of a file whose writes are not committed stores the
/// committed size: after kill -9 the file holds its committed bytes, never
/// the new size with zeros where the buffered bytes were.
#[test]
fn kill9_after_a_chmod_of_a_file_being_written_keeps_the_committed_size() {
    let tmp = scratch("crash-chmod");
    let data = tmp.path().join("data");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&data), &[]);
    let old = noise(1000, 3);
    fs::write(m.path("f"), &old).unwrap();
    let mut f = OpenOptions::new().append(true).open(m.path("f")).unwrap();
    f.write_all(&noise(64 << 10, 4)).unwrap();
    fs::set_permissions(m.path("f"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    fs::rename(m.path("f"), m.path("g")).unwrap();
    m.kill9();
    drop(f);
    m.restart();
    let got = fs::read(m.path("g")).unwrap();
    assert!(
        got == old,
        "after kill -9: {} bytes ({} zeros), want the committed {}",
        got.len(),
        got.iter().filter(|b| **b == 0).count(),
        old.len()
    );
    assert_eq!(std::os::unix::fs::MetadataExt::mode(&fs::metadata(m.path("g")).unwrap()) & 0o777, 0o600);
    m.stop();
    let out = magicfs(&["fsck", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "fsck: {}", String::from_utf8_lossy(&out.stdout));
}
