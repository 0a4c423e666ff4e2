//! The session engine: notices writers closing session files, queues the
//! sessions whose last turn is a User turn, and answers them on its own
//! worker threads, streaming the reply into the file through the `Fs` API.
//!
//! Invariants:
//! - A session is in the queue at most once; sessions are served in the
//!   order they were queued (a follow-up goes to the back: fair). Workers
//!   answer several sessions at once and the model takes them in turns, so
//!   one long reply never starves the others.
//! - A reply starts only once no writer that writes at its own offset
//!   (opened without `O_APPEND`) holds the file open: such a writer could
//!   otherwise write over the reply. `O_APPEND` writers never hold a reply
//!   back (their writes land at the end, after the reply).
//! - `sessions/.generating.<id>` exists from the moment a reply is due
//!   until it is complete (it is created on the closing writer's `flush`,
//!   before `close()` returns).
//! - The model sees the end of the transcript only: at most
//!   [`ChatConfig::history_bytes`] are read from the end (plus the System
//!   turns at its start), so a long history costs no more than a short one.
//! - A reply whose tail starts repeating is stopped and cut to one copy.
//! - While a reply streams, appends by users to that session are held and
//!   written after the reply: turns never interleave.
//! - A reply that did not finish is never left looking complete: it is
//!   followed by an `Error:` turn, or (daemon shutdown) cut off again so the
//!   restarted daemon answers the turn anew.
//! - Nothing here runs on a FUSE request thread except the bookkeeping
//!   hooks, which touch memory and the inode table only.
//! - On a shared volume a reply is written only under this mount's claim
//!   on the session (see the `cluster` module), taken before the transcript is read
//!   and ended after the reply is committed and its sentinel removed: a
//!   turn is answered once, cluster-wide.

mod cluster;

use crate::transcript::{self, InputError, RoleGuard, TurnRole};
use magicfs_core::{Ctx, Fs, SetAttr};
use magicfs_llm::{FinishReason, GenParams, LlmBackend, LlmError, LoopDetector, Purpose, Sampling};
use magicfs_types::{magic, FsError, FsResult, ROOT_INO};
use parking_lot::{Condvar, Mutex};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Name of the sessions directory in the root.
pub const SESSIONS_DIR: &[u8] = b"sessions";
/// Prefix of the sentinel names.
pub const SENTINEL_PREFIX: &str = ".generating.";
/// Bytes of a file's end read on close to find its last turn.
const TAIL: u64 = 64 << 10;

/// Bytes of a file's start read for its System turns when the history window does not reach it.
const HEAD: u64 = 64 << 10;

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Replies generated at once (the rest queue; the model takes them in turns).
    pub workers: usize,
    /// Default `max_tokens` (a session's `user.magic.max_tokens` overrides).
    pub max_tokens: u32,
    /// Default sampling (a session's `user.magic.<key>` xattrs override, e.g. `user.magic.temperature`).
    pub sampling: Sampling,
    /// Bytes of the transcript's end that are read to answer it: more than
    /// the model's context can hold (64 bytes per context token).
    pub history_bytes: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            workers: 4,
            max_tokens: 512,
            sampling: Sampling::defaults(Purpose::Chat),
            history_bytes: 4096 * 64,
        }
    }
}

/// Why a running reply was stopped.
const RUNNING: u8 = 0;
const SENTINEL_REMOVED: u8 = 1;
const TRUNCATED: u8 = 2;
const DELETED: u8 = 3;
const SHUTDOWN: u8 = 4;
/// Another mount took the session over (this mount's claim lapsed).
const LOST: u8 = 5;
/// Longest wait for the workers at shutdown.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// Why a running reply was stopped, and the flag the backend watches.
struct Cancel {
    why: AtomicU8,
    stop: Arc<AtomicBool>,
}

impl Cancel {
    fn new() -> Arc<Cancel> {
        Arc::new(Cancel { why: AtomicU8::new(RUNNING), stop: Arc::new(AtomicBool::new(false)) })
    }

    /// Stops the reply for `why` (the first reason wins).
    fn stop(&self, why: u8) {
        if self.why.compare_exchange(RUNNING, why, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.stop.store(true, Ordering::Release);
        }
    }

    fn why(&self) -> u8 {
        self.why.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct Sess {
    ino: u64,
    queued: bool,
    /// A reply is due, waiting for writers at their own offsets to close the file.
    pending: bool,
    streaming: bool,
    /// A writer closed the file while its reply streamed: look again after.
    recheck: bool,
    cancel: Option<Arc<Cancel>>,
    /// Appends that arrived while the reply streamed.
    held: Vec<u8>,
    owner: Option<Ctx>,
}

/// An open handle that may write a session file.
struct Writer {
    ino: u64,
    /// Opened with `O_APPEND`: its writes land at the end, never over a reply.
    append: bool,
}

#[derive(Default)]
struct Inner {
    by_ino: HashMap<u64, String>,
    sessions: HashMap<String, Sess>,
    queue: VecDeque<String>,
    writers: HashMap<u64, Writer>,
    shutdown: bool,
    /// Sessions another mount held when this one wanted to answer them
    /// (shared volumes): tried again by the cluster scan.
    waiting: std::collections::HashSet<String>,
}

impl Inner {
    /// True while a handle that writes at its own offset holds `ino` open.
    fn offset_writers(&self, ino: u64) -> bool {
        self.writers.values().any(|w| w.ino == ino && !w.append)
    }
}

#[derive(Default)]
struct Stats {
    replies: u64,
    loops_cut: u64,
    errors: u64,
    cancelled: u64,
    completion_tokens: u64,
    last_error: Option<Value>,
    last_reply: Option<Value>,
}

/// Chat sessions over a filesystem.
pub struct Sessions {
    fs: Arc<Fs>,
    backend: Arc<dyn LlmBackend>,
    cfg: ChatConfig,
    inner: Mutex<Inner>,
    wake: Condvar,
    stats: Mutex<Stats>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// How an answer ended (for the log and the counters).
enum Outcome {
    NoReply,
    Reply { tokens: u32, finish: FinishReason, first_byte_ms: Option<f64>, ms: f64, history_turns: usize },
    Failed { kind: &'static str, message: String },
    Cancelled(u8),
}

fn kind_of(e: &LlmError) -> &'static str {
    match e {
        LlmError::Model(_) => "model",
        LlmError::Backend(_) => "backend",
        LlmError::Request(_) => "request",
    }
}

fn message_of(e: &LlmError) -> String {
    match e {
        LlmError::Model(m) | LlmError::Backend(m) | LlmError::Request(m) => m.replace('\n', " "),
    }
}

impl Sessions {
    /// An engine over `fs` answering with `backend`; call [`Sessions::start`] next.
    pub fn new(fs: Arc<Fs>, backend: Arc<dyn LlmBackend>, cfg: ChatConfig) -> Arc<Sessions> {
        Arc::new(Sessions {
            fs,
            backend,
            cfg,
            inner: Mutex::new(Inner::default()),
            wake: Condvar::new(),
            stats: Mutex::new(Stats::default()),
            threads: Mutex::new(Vec::new()),
        })
    }

    /// Creates `sessions/` if missing, queues the sessions whose sentinel
    /// survived a stop (their reply was never completed), and starts the workers.
    pub fn start(self: &Arc<Self>) -> FsResult<()> {
        let me = cluster::daemon_ctx();
        let dir = match self.fs.lookup(ROOT_INO, SESSIONS_DIR) {
            Ok(a) => a.ino,
            Err(FsError::NotFound) => self.fs.mkdir(ROOT_INO, SESSIONS_DIR, 0o755, me)?.ino,
            Err(e) => return Err(e),
        };
        let entries = self.fs.read_dir_path("sessions")?;
        for e in entries {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let Some(id) = name.strip_prefix(SENTINEL_PREFIX) else { continue };
            match self.fs.lookup(dir, id.as_bytes()) {
                Ok(a) => {
                    log::info!(
                        "session {id}: its reply was not completed before the daemon stopped; answering it again"
                    );
                    let mut inner = self.inner.lock();
                    inner.by_ino.insert(a.ino, id.to_string());
                    let s = inner.sessions.entry(id.to_string()).or_default();
                    s.ino = a.ino;
                    s.queued = true;
                    inner.queue.push_back(id.to_string());
                }
                Err(_) => {
                    let _ = self.fs.unlink(dir, name.as_bytes());
                }
            }
        }
        let mut threads = self.threads.lock();
        for i in 0..self.cfg.workers.max(1) {
            let me = self.clone();
            let t = std::thread::Builder::new()
                .name(format!("magicfs-chat-{i}"))
                .spawn(move || me.worker())
                .map_err(|_| FsError::Io)?;
            threads.push(t);
        }
        if self.fs.is_cluster() {
            let me = self.clone();
            let t = std::thread::Builder::new()
                .name("magicfs-chat-scan".into())
                .spawn(move || me.scan_cluster())
                .map_err(|_| FsError::Io)?;
            threads.push(t);
        }
        Ok(())
    }

    /// Stops the workers: a reply being written is cut back off (its
    /// sentinel stays, so the next start answers it again). Idempotent.
    pub fn shutdown(&self) {
        {
            let mut inner = self.inner.lock();
            if inner.shutdown {
                return;
            }
            inner.shutdown = true;
            for s in inner.sessions.values() {
                if let Some(c) = &s.cancel {
                    c.stop(SHUTDOWN);
                }
            }
        }
        self.wake.notify_all();
        // Replies stop within a token or a prompt batch; a worker stuck
        // beyond that (a server that does not answer) is left behind.
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        let threads: Vec<_> = self.threads.lock().drain(..).collect();
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                log::warn!("a chat worker did not stop within {SHUTDOWN_WAIT:?}; leaving it");
            }
        }
    }

    fn dir(&self) -> Option<u64> {
        self.fs.lookup(ROOT_INO, SESSIONS_DIR).ok().map(|a| a.ino)
    }

    /// True when `parent` is `sessions/`.
    pub fn is_sessions_dir(&self, parent: u64) -> bool {
        self.dir() == Some(parent)
    }

    /// Records that `name` in `parent` is inode `ino` (from lookup and create):
    /// session files are recognised by inode afterwards.
    pub fn note_entry(&self, parent: u64, name: &[u8], ino: u64) {
        if name.first() == Some(&b'.') || !self.is_sessions_dir(parent) {
            return;
        }
        let Ok(id) = std::str::from_utf8(name) else { return };
        let mut inner = self.inner.lock();
        if inner.by_ino.get(&ino).map(String::as_str) != Some(id) {
            inner.by_ino.insert(ino, id.to_string());
            inner.sessions.entry(id.to_string()).or_default().ino = ino;
        }
    }

    /// True for session files (they are served without the kernel's caches).
    pub fn is_session(&self, ino: u64) -> bool {
        self.inner.lock().by_ino.contains_key(&ino)
    }

    /// A handle was opened on `ino` with `flags`.
    pub fn opened(&self, ino: u64, fh: u64, flags: i32) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            let mut inner = self.inner.lock();
            if inner.by_ino.contains_key(&ino) {
                inner.writers.insert(fh, Writer { ino, append: flags & libc::O_APPEND != 0 });
            }
        }
    }

    /// A handle was closed for good: a reply waiting for the file's writers may start.
    pub fn released(&self, fh: u64) {
        let mut inner = self.inner.lock();
        let Some(w) = inner.writers.remove(&fh) else { return };
        if inner.shutdown || inner.offset_writers(w.ino) {
            return;
        }
        let Some(id) = inner.by_ino.get(&w.ino).cloned() else { return };
        let Some(s) = inner.sessions.get_mut(&id) else { return };
        if !std::mem::take(&mut s.pending) || s.queued || s.streaming {
            return;
        }
        if !self.wants_reply(w.ino) {
            drop(inner);
            self.remove_sentinel(&id);
            return;
        }
        s.queued = true;
        inner.queue.push_back(id);
        drop(inner);
        self.wake.notify_one();
    }

    /// Takes over a write to a session file: `O_APPEND` writes go to the
    /// daemon's end of file (the kernel's idea of the size may be stale), and
    /// are held while a reply streams. `None` for other files.
    pub fn write(&self, ino: u64, offset: u64, data: &[u8], append: bool) -> Option<FsResult<bool>> {
        let mut inner = self.inner.lock();
        let id = inner.by_ino.get(&ino)?.clone();
        let s = inner.sessions.entry(id).or_default();
        if append && s.streaming {
            s.held.extend_from_slice(data);
            return Some(Ok(false));
        }
        let at = if append {
            match self.fs.getattr(ino) {
                Ok(a) => a.size,
                Err(e) => return Some(Err(e)),
            }
        } else {
            offset
        };
        Some(self.fs.write(ino, at, data))
    }

    /// A writer's handle `fh` on `ino` was flushed (on `close`): if the last
    /// turn is a User turn, create the sentinel and queue the reply (or mark
    /// it pending until the file's offset writers have closed it).
    pub fn flushed(&self, ino: u64, fh: u64, who: Ctx) {
        let mut inner = self.inner.lock();
        if !inner.writers.contains_key(&fh) || inner.shutdown {
            return;
        }
        let Some(id) = inner.by_ino.get(&ino).cloned() else { return };
        let held_open = inner.offset_writers(ino);
        let s = inner.sessions.entry(id.clone()).or_default();
        s.owner = Some(who);
        if s.streaming {
            s.recheck = true;
            return;
        }
        if s.queued {
            return;
        }
        if !self.wants_reply(ino) {
            return;
        }
        // The sentinel appears before close() returns; the reply waits while
        // a writer at its own offset (this one, or a copy of its descriptor
        // in another process) could still write over it.
        if held_open {
            s.pending = true;
            drop(inner);
            self.make_sentinel(&id, who);
            return;
        }
        s.queued = true;
        inner.queue.push_back(id.clone());
        drop(inner);
        self.make_sentinel(&id, who);
        self.wake.notify_one();
    }

    /// Whether the end of the file looks like it awaits a reply (a User turn
    /// last, or text whose last turn is too far back to see: the worker decides).
    fn wants_reply(&self, ino: u64) -> bool {
        let Ok(a) = self.fs.getattr(ino) else { return false };
        if a.size == 0 {
            return false;
        }
        let from = a.size.saturating_sub(TAIL);
        let Ok(tail) = self.fs.read(ino, from, TAIL) else { return false };
        match transcript::last_role(&tail, from == 0) {
            Some(TurnRole::User) | None => true,
            Some(_) => false,
        }
    }

    fn make_sentinel(&self, id: &str, who: Ctx) {
        let Some(dir) = self.dir() else { return };
        let name = format!("{SENTINEL_PREFIX}{id}");
        match self.fs.mknod(dir, name.as_bytes(), libc::S_IFREG | 0o644, 0, who) {
            Ok(_) | Err(FsError::Exists) => {}
            Err(e) => log::warn!("session {id}: cannot create {name}: {e}"),
        }
    }

    /// Removes the sentinel; false when someone else already had.
    fn remove_sentinel(&self, id: &str) -> bool {
        let Some(dir) = self.dir() else { return true };
        match self.fs.unlink(dir, format!("{SENTINEL_PREFIX}{id}").as_bytes()) {
            Ok(()) => true,
            Err(FsError::NotFound) => false,
            Err(e) => {
                log::warn!("session {id}: cannot remove its sentinel: {e}");
                true
            }
        }
    }

    /// A session file was truncated (`>` starts a new conversation): a reply
    /// being written is abandoned and the model's cached state dropped.
    pub fn truncated(&self, ino: u64) {
        let inner = self.inner.lock();
        let Some(id) = inner.by_ino.get(&ino).cloned() else { return };
        if let Some(c) = inner.sessions.get(&id).and_then(|s| s.cancel.clone()) {
            c.stop(TRUNCATED);
        }
        drop(inner);
        self.backend.forget(&id);
    }

    /// `name` was unlinked from `parent` through the mount: removing a
    /// sentinel cancels its reply; removing a session forgets it.
    pub fn unlinked(&self, parent: u64, name: &[u8]) {
        if !self.is_sessions_dir(parent) {
            return;
        }
        let Ok(name) = std::str::from_utf8(name) else { return };
        let mut inner = self.inner.lock();
        if let Some(id) = name.strip_prefix(SENTINEL_PREFIX) {
            let id = id.to_string();
            if let Some(s) = inner.sessions.get_mut(&id) {
                s.pending = false;
                if s.queued {
                    s.queued = false;
                    let ino = s.ino;
                    inner.queue.retain(|q| *q != id);
                    drop(inner);
                    log::info!("session {id}: sentinel removed; queued reply dropped");
                    self.stats.lock().cancelled += 1;
                    // Every removal of a sentinel that a reply was waiting
                    // for ends the turn with `Error: cancelled`, whether
                    // the reply had started or not.
                    if self.wants_reply(ino) {
                        self.error_turn(
                            ino,
                            false,
                            "cancelled",
                            "the sentinel was removed before the reply started".into(),
                        );
                    }
                    return;
                } else if let Some(c) = &s.cancel {
                    c.stop(SENTINEL_REMOVED);
                }
            }
            return;
        }
        if let Some(s) = inner.sessions.remove(name) {
            inner.by_ino.remove(&s.ino);
            inner.queue.retain(|q| q != name);
            if let Some(c) = &s.cancel {
                c.stop(DELETED);
                // The worker still owns the entry's streaming state: put a tombstone back.
                inner.sessions.insert(
                    name.to_string(),
                    Sess { ino: s.ino, streaming: true, cancel: s.cancel, ..Sess::default() },
                );
            } else if s.queued || s.pending {
                drop(inner);
                self.remove_sentinel(name);
            }
            self.backend.forget(name);
        }
    }

    /// The `chat` section of `.magic/status`.
    pub fn status(&self) -> Value {
        let (queued, generating) = {
            let inner = self.inner.lock();
            let generating: Vec<&String> = inner.sessions.iter().filter(|(_, s)| s.streaming).map(|(k, _)| k).collect();
            (json!(inner.queue), json!(generating))
        };
        let st = self.stats.lock();
        json!({
            "backend": self.backend.status(),
            "queued": queued,
            "generating": generating,
            "replies": st.replies,
            "loops_cut": st.loops_cut,
            "errors": st.errors,
            "cancelled": st.cancelled,
            "completion_tokens": st.completion_tokens,
            "last_reply": st.last_reply,
            "last_error": st.last_error,
        })
    }

    fn worker(self: Arc<Self>) {
        loop {
            let id = {
                let mut inner = self.inner.lock();
                loop {
                    if inner.shutdown {
                        return;
                    }
                    if let Some(id) = inner.queue.pop_front() {
                        break id;
                    }
                    self.wake.wait(&mut inner);
                }
            };
            self.serve(&id);
        }
    }

    /// Answers session `id` (popped from the queue).
    fn serve(&self, id: &str) {
        if !self.claim(id) {
            return;
        }
        let mut claimed = true;
        let (ino, cancel) = {
            let mut inner = self.inner.lock();
            let Some(s) = inner.sessions.get_mut(id).filter(|s| s.queued) else {
                drop(inner);
                self.unclaim(id);
                return;
            };
            let cancel = Cancel::new();
            s.queued = false;
            s.streaming = true;
            s.recheck = false;
            s.cancel = Some(cancel.clone());
            (s.ino, cancel)
        };
        let outcome = self.answer(id, ino, &cancel);
        let why = cancel.why();
        // Hand back: write what users appended meanwhile (under the lock, so
        // later appends land after it), then look again.
        let (held, recheck, owner) = {
            let mut inner = self.inner.lock();
            match inner.sessions.get_mut(id) {
                Some(s) => {
                    s.streaming = false;
                    s.cancel = None;
                    let held = std::mem::take(&mut s.held);
                    if !held.is_empty() && why != DELETED {
                        let r = self.fs.getattr(ino).and_then(|a| self.fs.write(ino, a.size, &held));
                        if let Err(e) = r {
                            log::error!("session {id}: writing the turns appended during the reply: {e}");
                        }
                    }
                    (!held.is_empty(), s.recheck, s.owner)
                }
                None => (false, false, None),
            }
        };
        if why == DELETED {
            self.inner.lock().sessions.remove(id);
        } else if held {
            if let Err(e) = self.fs.flush(ino) {
                log::error!("session {id}: committing the turns appended during the reply: {e}");
            }
        }
        // Stopped for the daemon's shutdown or because another mount took
        // the session over: the sentinel stays for whoever answers next.
        let handed_on = why == SHUTDOWN || why == LOST;
        let again = why != DELETED && !handed_on && (recheck || held) && self.wants_reply(ino);
        if again {
            // The claim ends first: the follow-up claims anew (a worker of this mount or another).
            self.unclaim(id);
            claimed = false;
            let mut inner = self.inner.lock();
            let stopping = inner.shutdown;
            if let Some(s) = inner.sessions.get_mut(id) {
                if !s.queued && !stopping {
                    s.queued = true;
                    inner.queue.push_back(id.to_string());
                    drop(inner);
                    if let Some(o) = owner {
                        self.make_sentinel(id, o);
                    }
                    self.wake.notify_one();
                }
            }
        } else if !handed_on && !self.remove_sentinel(id) && matches!(outcome, Outcome::Reply { .. }) {
            // The sentinel went between the reply's end and its removal
            // here: that was a cancel too, and it gets its turn.
            self.error_turn(ino, false, "cancelled", "the sentinel was removed as the reply ended".into());
            self.unclaim(id);
            self.record(id, Outcome::Cancelled(SENTINEL_REMOVED));
            return;
        }
        if claimed {
            self.unclaim(id);
        }
        self.record(id, outcome);
    }

    fn record(&self, id: &str, outcome: Outcome) {
        let mut st = self.stats.lock();
        let at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        match outcome {
            Outcome::NoReply => {}
            Outcome::Reply { tokens, finish, first_byte_ms, ms, history_turns } => {
                st.replies += 1;
                st.completion_tokens += tokens as u64;
                if finish == FinishReason::Loop {
                    st.loops_cut += 1;
                }
                let finish = finish.name();
                log::info!("session {id}: replied, {tokens} tokens in {ms:.0} ms (finish: {finish})");
                st.last_reply = Some(json!({
                    "session": id, "tokens": tokens, "finish": finish, "first_byte_ms": first_byte_ms, "ms": ms,
                    "history_turns": history_turns, "at": at,
                }));
            }
            Outcome::Failed { kind, message } => {
                st.errors += 1;
                log::error!("session {id}: {kind}: {message}");
                st.last_error = Some(json!({"session": id, "kind": kind, "message": message, "at": at}));
            }
            Outcome::Cancelled(why) => {
                st.cancelled += 1;
                let why = match why {
                    SENTINEL_REMOVED => "sentinel removed",
                    TRUNCATED => "session truncated",
                    DELETED => "session deleted",
                    LOST => "another mount took the session over",
                    _ => "daemon stopping",
                };
                log::info!("session {id}: reply cancelled ({why})");
            }
        }
    }

    /// Appends `text` at the end of `ino` (under the engine lock, so user
    /// appends cannot land in between); returns where it was written.
    fn append(&self, ino: u64, text: &[u8]) -> FsResult<u64> {
        let _inner = self.inner.lock();
        let size = self.fs.getattr(ino)?.size;
        self.fs.write(ino, size, text).map(|_| size)
    }

    /// Cuts `ino` back to `size` bytes (under the engine lock).
    fn cut(&self, ino: u64, size: u64) -> FsResult<()> {
        let _inner = self.inner.lock();
        self.fs.setattr(ino, SetAttr { size: Some(size), ..SetAttr::default() }).map(|_| ())
    }

    fn error_turn(&self, ino: u64, partial: bool, kind: &'static str, message: String) -> Outcome {
        let lead = if partial { "\n" } else { "" };
        let tail = if partial { "; the reply above is incomplete" } else { "" };
        let line = format!("{lead}Error: {kind}: {message}{tail}\n");
        if let Err(e) = self.append(ino, line.as_bytes()).and_then(|_| self.fs.flush(ino)) {
            log::error!("cannot write an error turn into inode {ino}: {e}");
        }
        Outcome::Failed { kind, message }
    }

    fn params(&self, ino: u64, id: &str, cancel: &Cancel) -> Result<(GenParams, Option<String>), String> {
        let get = |name: &str| -> Option<String> {
            self.fs.getxattr(ino, name.as_bytes()).ok().map(|v| String::from_utf8_lossy(&v).trim().to_string())
        };
        let mut p = GenParams {
            max_tokens: self.cfg.max_tokens,
            sampling: self.cfg.sampling.clone(),
            session: Some(id.to_string()),
            cancel: Some(cancel.stop.clone()),
            ..GenParams::default()
        };
        p.sampling.apply_overrides(|key| get(&format!("user.magic.{key}")))?;
        if let Some(v) = get(magic::MAX_TOKENS) {
            p.max_tokens = magic::parse_max_tokens(v.as_bytes())?;
        }
        p.model = get("user.magic.model").filter(|m| !m.is_empty());
        Ok((p, get("user.magic.system")))
    }

    /// The turns of the transcript the model may see: those in the last
    /// [`ChatConfig::history_bytes`] of the file (the turn cut by the
    /// window's start is left out), after the System turns at its start.
    fn history(&self, ino: u64, size: u64) -> Result<Vec<transcript::Turn>, (&'static str, String)> {
        let read = |from: u64, len: u64| {
            self.fs.read(ino, from, len).map_err(|e| ("input", format!("reading the session: {e}")))
        };
        let window = self.cfg.history_bytes.max(4096);
        if size <= window {
            let bytes = read(0, size)?;
            return transcript::parse(&bytes).map_err(|e| ("input", e.to_string()));
        }
        let from = size - window;
        let tail = read(from, window)?;
        let turns = transcript::parse_tail(&tail).map_err(|e| match e {
            InputError::NotText(at) => ("input", InputError::NotText(from as usize + at).to_string()),
            e => ("input", e.to_string()),
        })?;
        if turns.is_empty() {
            return Err((
                "request",
                format!(
                    "the last turn is over {window} bytes, more than the model's context can hold \
                     (send a shorter message or start a new session)"
                ),
            ));
        }
        // System turns at the start of the file frame the whole conversation.
        let head = read(0, HEAD.min(from))?;
        let mut all = transcript::leading_system(&head);
        all.extend(turns);
        Ok(all)
    }

    fn answer(&self, id: &str, ino: u64, cancel: &Cancel) -> Outcome {
        let started = Instant::now();
        let size = match self.fs.getattr(ino) {
            Ok(a) => a.size,
            Err(_) => return Outcome::NoReply,
        };
        let turns = match self.history(ino, size) {
            Ok(t) => t,
            Err((kind, message)) => return self.error_turn(ino, false, kind, message),
        };
        if turns.last().map(|t| t.role) != Some(TurnRole::User) {
            return Outcome::NoReply;
        }
        let (params, system) = match self.params(ino, id, cancel) {
            Ok(p) => p,
            Err(m) => return self.error_turn(ino, false, "request", m),
        };
        let messages = transcript::messages(&turns, system.as_deref());
        let start_size = size;
        let mut guard = RoleGuard::default();
        let mut loops = LoopDetector::new();
        let mut body_at = None; // where the reply's text starts in the file
        let mut stopped = false;
        let mut looped = None;
        let mut write_err = None;
        let mut first_byte = None;
        let mut shared = cluster::Streaming::new(self.fs.is_cluster());
        let mut sink = |piece: &str| -> ControlFlow<()> {
            if cancel.why() != RUNNING {
                return ControlFlow::Break(());
            }
            if !shared.tick(self, id, ino) {
                cancel.stop(LOST);
                return ControlFlow::Break(());
            }
            let (mut text, stop) = guard.push(piece);
            if body_at.is_none() {
                text = text.trim_start().to_string();
            }
            if !text.is_empty() {
                let (out, lead) = match body_at {
                    Some(_) => (text.clone(), 0),
                    None => (format!("Assistant: {text}"), "Assistant: ".len() as u64),
                };
                match self.append(ino, out.as_bytes()) {
                    Ok(at) => {
                        if body_at.is_none() {
                            body_at = Some(at + lead);
                            first_byte = Some(started.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    Err(e) => {
                        write_err = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                if let Some(keep) = loops.push(&text) {
                    looped = Some(keep);
                    return ControlFlow::Break(());
                }
            }
            if stop {
                stopped = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        };
        let result = self.backend.chat(&messages, &params, &mut sink);
        let wrote = body_at.is_some();
        if let Some(e) = write_err {
            return Outcome::Failed { kind: "input", message: format!("writing the reply: {e}") };
        }
        let why = cancel.why();
        match why {
            RUNNING => {}
            SENTINEL_REMOVED => {
                let when = if wrote { "" } else { " before the reply started" };
                self.error_turn(ino, wrote, "cancelled", format!("the sentinel was removed{when}"));
                return Outcome::Cancelled(why);
            }
            SHUTDOWN => {
                // Cut the partial reply off again; the sentinel stays for the next start.
                if let Err(e) = self.cut(ino, start_size).and_then(|_| self.fs.flush(ino)) {
                    log::error!("session {id}: cannot remove the partial reply at shutdown: {e}");
                }
                return Outcome::Cancelled(why);
            }
            _ => return Outcome::Cancelled(why), // truncated or deleted: nothing to add
        }
        match result {
            Ok(c) => {
                if let (Some(keep), Some(at)) = (looped, body_at) {
                    // The reply started repeating itself: keep one copy.
                    let keep_to = at + keep as u64;
                    let trimmed = loops.text()[..keep].trim_end().len() as u64;
                    if let Err(e) = self.cut(ino, keep_to.min(at + trimmed)) {
                        return Outcome::Failed { kind: "input", message: format!("cutting a repeated reply: {e}") };
                    }
                }
                let mut rest = if stopped || looped.is_some() { String::new() } else { guard.finish() };
                if !wrote {
                    rest = format!("Assistant: {}", rest.trim_start());
                }
                rest.push('\n');
                let r = self.append(ino, rest.as_bytes()).and_then(|_| self.fs.flush(ino));
                if let Err(e) = r {
                    return Outcome::Failed { kind: "input", message: format!("writing the reply: {e}") };
                }
                let finish = match (looped, stopped) {
                    (Some(_), _) => FinishReason::Loop,
                    (None, true) => FinishReason::Stop,
                    (None, false) => c.finish,
                };
                Outcome::Reply {
                    tokens: c.completion_tokens,
                    finish,
                    first_byte_ms: first_byte,
                    ms: started.elapsed().as_secs_f64() * 1000.0,
                    history_turns: messages.len(),
                }
            }
            Err(e) => self.error_turn(ino, wrote, kind_of(&e), message_of(&e)),
        }
    }

    /// Waits until no reply is queued or streaming (tests, benchmarks), at most `timeout`.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            {
                let inner = self.inner.lock();
                if inner.queue.is_empty() && !inner.sessions.values().any(|s| s.streaming) {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}
