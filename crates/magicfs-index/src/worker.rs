//! The indexing worker: one thread at lower priority that waits for the
//! model, loads the stored records, reconciles them with the mount and the
//! watched directories, then (re)indexes whatever the queue names.

use crate::extract::{extract, Skip, MAX_FILE_BYTES};
use crate::index::{base_name, host_key, mount_key, Inner, Job, Known, SESSIONS_PREFIX, WIDTH};
use crate::passage::{passages, CHUNKER_VERSION};
use crate::records::DocRecord;
use crate::store::hex;
use crate::IndexError;
use magicfs_embed::Embedder;
use magicfs_types::FileKind;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Most passages indexed per file (about 50 000 word pieces); the rest of a
/// longer text is not searchable.
pub const MAX_PASSAGES_PER_FILE: usize = 256;

/// How long a claim on a file version lasts (a mount that dies while
/// indexing it leaves it to another after this long).
const CLAIM_LEASE: Duration = Duration::from_secs(120);

/// How often the changes other mounts made to a shared store are applied.
const CHANGES_EVERY: Duration = Duration::from_secs(1);

pub(crate) fn run(inner: Arc<Inner>) {
    // Leave the filesystem its share of the CPU.
    // SAFETY: setpriority on this thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
    let emb = match inner.wait_model() {
        Ok(e) => e,
        Err(e) => {
            log::error!("search: indexing is off: {e}");
            return;
        }
    };
    if let Err(e) = load_records(&inner, &emb, true) {
        log::error!("search: cannot load the index: {e}");
        inner.errors.fetch_add(1, Ordering::Relaxed);
    }
    reconcile_mount(&inner);
    inner.startup_step(1);
    let watcher = crate::watch::start(inner.clone());
    let mut since_sync = 0usize;
    let mut last_changes = std::time::Instant::now();
    while !inner.stop.load(Ordering::Acquire) {
        if last_changes.elapsed() >= CHANGES_EVERY {
            last_changes = std::time::Instant::now();
            if let Err(e) = apply_changes(&inner, &emb) {
                log::warn!("search: {e}");
            }
        }
        // Set when the queue is empty and other mounts' changes are due.
        let mut idle = false;
        let job = {
            let mut q = inner.queue.lock();
            loop {
                if inner.stop.load(Ordering::Acquire) {
                    break None;
                }
                let next_settle = q.promote_settled(std::time::Instant::now());
                if let Some(j) = q.items.pop_front() {
                    q.set.remove(&j);
                    inner.busy.store(true, Ordering::Release);
                    break Some(j);
                }
                if since_sync > 0 {
                    break None;
                }
                if last_changes.elapsed() >= CHANGES_EVERY {
                    idle = true;
                    break None;
                }
                let pause = Duration::from_millis(500);
                inner.queue_cv.wait_for(&mut q, next_settle.map_or(pause, |d| d.min(pause)));
            }
        };
        if idle {
            continue;
        }
        match job {
            Some(job) => {
                if let Err(e) = process(&inner, &emb, job).and_then(|()| inner.maybe_commit_lexical()) {
                    log::warn!("search: {e}");
                    inner.errors.fetch_add(1, Ordering::Relaxed);
                }
                since_sync += 1;
                inner.busy.store(false, Ordering::Release);
            }
            None => {
                // Queue drained: make the words searchable and the records durable.
                if let Err(e) = inner.commit_lexical().and_then(|()| inner.store.sync()) {
                    log::warn!("search: {e}");
                }
                since_sync = 0;
            }
        }
    }
    drop(watcher);
}

/// Makes the stored records whose model and chunker match searchable (by
/// meaning and by words) and queues the others for re-embedding.
pub(crate) fn load_records(inner: &Inner, emb: &Embedder, forget_unwatched: bool) -> Result<(), IndexError> {
    let roots: Vec<PathBuf> = inner.roots.lock().iter().map(|(p, _)| p.clone()).collect();
    let mut stale = Vec::new();
    let mut orphans = Vec::new();
    let mut words_failed = None;
    {
        let mut known = inner.known.lock();
        let mut sk = inner.skipped.lock();
        inner.store.load(emb.model_id(), CHUNKER_VERSION, &mut |key, rec, searchable| {
            if let Some(p) = key.strip_prefix("h/") {
                if forget_unwatched && !roots.iter().any(|r| Path::new(p).starts_with(r)) {
                    orphans.push(key.to_string());
                    return;
                }
            }
            if !searchable {
                stale.push(key.to_string());
                return;
            }
            if !rec.texts.is_empty() {
                if let Err(e) = inner.lexical.set(key, &rec.name, &rec.texts) {
                    words_failed = Some(e);
                }
            }
            known.insert(key.to_string(), Known::new(rec.size, rec.mtime_ns, &rec.name));
            if let Some(s) = rec.skipped {
                sk.insert(key.to_string(), s);
            }
        })?;
    }
    if let Some(e) = words_failed {
        return Err(e);
    }
    inner.commit_lexical()?;
    if !orphans.is_empty() {
        log::info!("search: forgetting {} files of directories no longer watched", orphans.len());
        inner.drop_keys(&orphans);
    }
    for key in stale {
        if let Some(job) = job_of(&key) {
            inner.push(job, false);
        }
    }
    inner.bump();
    Ok(())
}

/// Follows what other mounts sharing the store indexed or forgot: their
/// records join this mount's lexical index and summaries (the vectors are
/// in the shared store already).
fn apply_changes(inner: &Inner, emb: &Embedder) -> Result<(), IndexError> {
    let changes = inner.store.changes()?;
    if changes.is_empty() {
        return Ok(());
    }
    for (key, rec) in changes {
        match rec {
            Some(rec) if rec.model == emb.model_id() && rec.chunker == CHUNKER_VERSION => {
                if rec.texts.is_empty() {
                    inner.lexical.remove(std::slice::from_ref(&key));
                } else {
                    inner.lexical.set(&key, &rec.name, &rec.texts)?;
                }
                let mut sk = inner.skipped.lock();
                match rec.skipped {
                    Some(s) => sk.insert(key.clone(), s),
                    None => sk.remove(&key),
                };
                inner.known.lock().insert(key, Known::new(rec.size, rec.mtime_ns, &rec.name));
            }
            Some(_) => {}
            None => {
                inner.lexical.remove(std::slice::from_ref(&key));
                inner.known.lock().remove(&key);
                inner.skipped.lock().remove(&key);
            }
        }
    }
    inner.commit_lexical()?;
    inner.bump();
    Ok(())
}

fn job_of(key: &str) -> Option<Job> {
    if let Some(i) = key.strip_prefix("m/") {
        return i.parse().ok().map(Job::Mount);
    }
    key.strip_prefix("h/").map(|p| Job::Host(PathBuf::from(p)))
}

/// True when `path` (relative to the mount root) is a chat transcript that is left out.
fn left_out(inner: &Inner, path: &str) -> bool {
    !inner.cfg.include_sessions && path.starts_with(SESSIONS_PREFIX)
}

/// Queues mount files that changed while nobody was looking (or were
/// renamed), forgets gone ones and transcripts left out.
fn reconcile_mount(inner: &Inner) {
    let Some(fs) = &inner.fs else { return };
    let files = fs.regular_files();
    let paths = fs.paths_of(&files.iter().map(|a| a.ino).collect::<Vec<_>>());
    let mut present = HashSet::new();
    let known = inner.known.lock().clone();
    for a in files {
        let Some(path) = paths.get(&a.ino).map(|p| String::from_utf8_lossy(p).into_owned()) else { continue };
        if left_out(inner, &path) {
            continue;
        }
        let key = mount_key(a.ino);
        let k = Known::new(a.size, mtime_ns(a.mtime.sec, a.mtime.nsec), base_name(&path));
        if known.get(&key) != Some(&k) {
            inner.push(Job::Mount(a.ino), false);
        }
        present.insert(key);
    }
    let gone: Vec<String> = known.keys().filter(|k| k.starts_with("m/") && !present.contains(*k)).cloned().collect();
    inner.drop_keys(&gone);
}

fn mtime_ns(sec: i64, nsec: u32) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec as i64)
}

fn process(inner: &Inner, emb: &Embedder, job: Job) -> Result<(), IndexError> {
    match job {
        Job::Mount(ino) => {
            let Some(fs) = &inner.fs else { return Ok(()) };
            let key = mount_key(ino);
            let attr = match fs.getattr(ino) {
                Ok(a) if a.kind == FileKind::File && a.nlink > 0 => a,
                _ => {
                    inner.drop_keys(&[key]);
                    return Ok(());
                }
            };
            let name = fs.paths_of(&[ino]).remove(&ino).map(|p| String::from_utf8_lossy(&p).into_owned());
            let Some(name) = name else {
                inner.drop_keys(&[key]);
                return Ok(());
            };
            if left_out(inner, &name) {
                // Moved into sessions/ (or the setting changed): it leaves the index.
                if inner.known.lock().contains_key(&key) {
                    inner.drop_keys(&[key]);
                }
                return Ok(());
            }
            let base = base_name(&name);
            let k = Known::new(attr.size, mtime_ns(attr.mtime.sec, attr.mtime.nsec), base);
            if inner.known.lock().get(&key) == Some(&k) {
                return Ok(());
            }
            // On a shared store another mount may be indexing this very version, or have done it.
            let version = format!("{}:{}:{:x}", k.size, k.mtime_ns, k.name);
            if !inner.store.claim(&key, &version, CLAIM_LEASE)? {
                return Ok(());
            }
            if attr.size > MAX_FILE_BYTES {
                return store(inner, emb, &key, base, k, Err(Skip::TooLarge));
            }
            let text = match fs.read(ino, 0, attr.size) {
                Ok(bytes) => extract(&name, &bytes),
                Err(_) => Err(Skip::Unreadable),
            };
            store(inner, emb, &key, base, k, text)
        }
        Job::Host(path) => process_host(inner, emb, &path),
    }
}

fn process_host(inner: &Inner, emb: &Embedder, path: &Path) -> Result<(), IndexError> {
    let key = host_key(path);
    match std::fs::symlink_metadata(path) {
        Err(_) => {
            // Gone: the file, or a whole directory.
            let prefix = format!("{key}/");
            let gone: Vec<String> =
                inner.known.lock().keys().filter(|k| **k == key || k.starts_with(&prefix)).cloned().collect();
            inner.drop_keys(&gone);
            Ok(())
        }
        Ok(m) if m.is_dir() => {
            scan_dir(inner, path);
            Ok(())
        }
        Ok(m) if m.file_type().is_symlink() => {
            // Links are not followed (no loops, no escaping the watched tree).
            inner.drop_keys(&[key]);
            Ok(())
        }
        Ok(m) => {
            use std::os::unix::fs::MetadataExt;
            let name = path.to_string_lossy();
            let base = base_name(&name);
            let k = Known::new(m.len(), mtime_ns(m.mtime(), m.mtime_nsec() as u32), base);
            if inner.known.lock().get(&key) == Some(&k) {
                return Ok(());
            }
            if !m.is_file() {
                return store(inner, emb, &key, base, k, Err(Skip::NotRegular));
            }
            if m.len() > MAX_FILE_BYTES {
                return store(inner, emb, &key, base, k, Err(Skip::TooLarge));
            }
            let text = match read_regular(path) {
                Ok(bytes) => extract(&name, &bytes),
                Err(e) => {
                    log::info!("search: skipping {}: {e}", path.display());
                    Err(Skip::Unreadable)
                }
            };
            store(inner, emb, &key, base, k, text)
        }
    }
}

/// Reads a regular file without blocking on FIFOs swapped in meanwhile.
fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW).open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = Vec::with_capacity(m.len() as usize);
    f.by_ref().take(MAX_FILE_BYTES + 1).read_to_end(&mut out)?;
    Ok(out)
}

/// Walks `dir`: queues changed files, forgets records of files no longer there.
pub(crate) fn scan_dir(inner: &Inner, dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    let known = inner.known.lock().clone();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                if e.file_name() != ".git" {
                    stack.push(p);
                }
                continue;
            }
            if m.file_type().is_symlink() {
                continue;
            }
            let key = host_key(&p);
            let base = e.file_name().to_string_lossy().into_owned();
            let k = Known::new(m.len(), mtime_ns(m.mtime(), m.mtime_nsec() as u32), &base);
            if known.get(&key) != Some(&k) {
                inner.push(Job::Host(p), false);
            }
            seen.insert(key);
        }
    }
    let prefix = format!("{}/", host_key(dir));
    let gone: Vec<String> = known.keys().filter(|k| k.starts_with(&prefix) && !seen.contains(*k)).cloned().collect();
    inner.drop_keys(&gone);
}

/// Embeds what changed and stores the file's record, vectors and words.
fn store(
    inner: &Inner,
    emb: &Embedder,
    key: &str,
    base: &str,
    k: Known,
    text: Result<String, Skip>,
) -> Result<(), IndexError> {
    let mut rec = DocRecord {
        model: emb.model_id().to_string(),
        chunker: CHUNKER_VERSION.to_string(),
        size: k.size,
        mtime_ns: k.mtime_ns,
        skipped: None,
        hashes: Vec::new(),
        texts: Vec::new(),
        name: base.to_string(),
    };
    let mut vectors = Vec::new();
    match text {
        Err(s) => rec.skipped = Some(s),
        Ok(text) => {
            let mut ps = passages(emb.tokenizer(), &text);
            ps.truncate(MAX_PASSAGES_PER_FILE);
            let old = inner.reusable(key);
            let mut have: Vec<Option<Vec<f32>>> =
                ps.iter().map(|p| old.get(&p.hash).cloned().or_else(|| inner.recent_vector(&p.hash))).collect();
            let missing: Vec<usize> = (0..ps.len()).filter(|&i| have[i].is_none()).collect();
            inner.reused.fetch_add((ps.len() - missing.len()) as u64, Ordering::Relaxed);
            // Embed in slices so that a stop request is honoured within one slice.
            for slice in missing.chunks(16) {
                if inner.stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                let ids: Vec<Vec<u32>> = slice.iter().map(|&i| ps[i].ids.clone()).collect();
                let out = emb.embed_ids(&ids, inner.cfg.index_threads);
                for (&i, v) in slice.iter().zip(out) {
                    have[i] = Some(v.to_vec());
                }
                inner.embedded.fetch_add(slice.len() as u64, Ordering::Relaxed);
            }
            for (p, v) in ps.into_iter().zip(have) {
                let v = v.unwrap_or_else(|| vec![0.0; WIDTH]);
                vectors.extend_from_slice(&v);
                rec.hashes.push(hex(&p.hash));
                rec.texts.push(p.text);
            }
        }
    }
    inner.store.put(key, &rec, &vectors)?;
    if rec.texts.is_empty() {
        inner.lexical.remove(&[key.to_string()]);
    } else {
        inner.lexical.set(key, base, &rec.texts)?;
    }
    inner.known.lock().insert(key.to_string(), k);
    {
        let mut sk = inner.skipped.lock();
        match rec.skipped {
            Some(s) => sk.insert(key.to_string(), s),
            None => sk.remove(key),
        };
    }
    inner.files_done.fetch_add(1, Ordering::Relaxed);
    inner.bump();
    Ok(())
}
