//! [`Engine`]: runs generations against a filesystem — decides, builds the
//! request, calls the generator, checks the answer, stores the result with
//! its provenance — and keeps the counters and errors shown in `.magic/status`.
//!
//! Checking: an answer whose tail repeats is cut to one copy; then it must be
//! valid for the file's type ([`crate::validate`]: not empty, parsing, the
//! shape the prompt asks for). An invalid answer is asked for again (the
//! request's `attempt` counts up, so the model draws a new seed) up to the
//! engine's attempt limit; what failed is counted per format.
//!
//! Storing follows three rules: only a generator's complete `Ok` output is
//! stored; a file that changed while its content was generated keeps the
//! change (the output is dropped); content is written and committed like any
//! other file's (chunked, compressed, persisted), and provenance is set last.
//! A failed generation leaves its reason in the file's `user.magic.error`.

use crate::error::GenError;
use crate::format::{self, Format};
use crate::names;
use crate::plan::{self, Plan};
use crate::plugin::{Progress, Registry};
use crate::readme;
use crate::tree::{self, Applied};
use magicfs_core::{Ctx, Fs, SetAttr};
use magicfs_llm::{trim_loop, GenParams, LlmBackend, Purpose, Sampling};
use magicfs_types::{Attr, FileKind, Ino};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Errors kept for `.magic/status`.
const RECENT_ERRORS: usize = 16;
/// Token limit of a tree answer.
const TREE_TOKENS: u32 = 1024;
/// Answers asked for per file or tree before giving up.
pub const DEFAULT_ATTEMPTS: u32 = 4;

/// One failure, as shown in `.magic/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorRecord {
    /// Path of the file or directory.
    pub path: String,
    /// Generator involved.
    pub generator: String,
    /// What went wrong.
    pub error: String,
    /// When (RFC 3339).
    pub time: String,
}

struct Running {
    path: String,
    generator: String,
    what: &'static str,
    started: Instant,
    progress: Arc<Progress>,
}

/// Answers checked for one format.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Checked {
    /// Answers that were valid.
    valid: u64,
    /// Answers that were not (each one asked for again, up to the limit).
    invalid: u64,
}

#[derive(Default)]
struct State {
    running: BTreeMap<u64, Running>,
    next_job: u64,
    generated: u64,
    failed: u64,
    trees: u64,
    bytes: u64,
    errors: VecDeque<ErrorRecord>,
    checked: BTreeMap<&'static str, Checked>,
    retries: u64,
    loops_cut: u64,
    /// Tree plans that missed a requested part after every attempt and were completed.
    trees_completed: u64,
}

/// Generation against one filesystem.
pub struct Engine {
    fs: Arc<Fs>,
    registry: Registry,
    llm: Option<Arc<dyn LlmBackend>>,
    /// Answers asked for per file or tree.
    attempts: u32,
    /// Sampling of tree plans.
    tree_sampling: Sampling,
    /// Whether some directory names a prompt or generator (`None`: unknown).
    dir_rules: RwLock<Option<bool>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("registry", &self.registry).finish()
    }
}

impl Engine {
    /// An engine over `fs` with `registry`'s generators; `llm` answers tree requests.
    pub fn new(fs: Arc<Fs>, registry: Registry, llm: Option<Arc<dyn LlmBackend>>) -> Engine {
        Engine {
            fs,
            registry,
            llm,
            attempts: DEFAULT_ATTEMPTS,
            tree_sampling: Sampling::defaults(Purpose::Tree),
            dir_rules: RwLock::new(None),
            state: Mutex::default(),
        }
    }

    /// Asks for at most `n` answers per file or tree (at least 1).
    pub fn with_attempts(mut self, n: u32) -> Engine {
        self.attempts = n.max(1);
        self
    }

    /// Plans trees with `sampling`.
    pub fn with_tree_sampling(mut self, sampling: Sampling) -> Engine {
        self.tree_sampling = sampling;
        self
    }

    /// The filesystem.
    pub fn fs(&self) -> &Arc<Fs> {
        &self.fs
    }

    /// Cheap test (no directory scan beyond a cached flag) for the request
    /// loop: could reading this file start a generation?
    pub fn may_generate(&self, attr: &Attr) -> bool {
        attr.kind == FileKind::File
            && attr.size == 0
            && (plan::has_own_rules(&self.fs, attr.ino) || self.dirs_have_rules())
    }

    fn dirs_have_rules(&self) -> bool {
        if let Some(v) = *self.dir_rules.read() {
            return v;
        }
        let found = self
            .fs
            .inodes_with_xattr(&[names::PROMPT, names::GENERATOR])
            .into_iter()
            .any(|i| self.fs.getattr(i).is_ok_and(|a| a.kind == FileKind::Dir));
        *self.dir_rules.write() = Some(found);
        found
    }

    /// Call after a `user.magic.*` attribute that steers generation changed.
    pub fn rules_changed(&self) {
        *self.dir_rules.write() = None;
    }

    /// Decides whether `ino` is generated now (see [`plan::plan`]).
    pub fn plan(&self, ino: Ino, force: bool) -> Result<Option<Plan>, GenError> {
        Ok(plan::plan(&self.fs, ino, force)?)
    }

    fn begin(&self, path: &str, generator: &str, what: &'static str) -> (u64, Arc<Progress>) {
        let progress = Arc::new(Progress::default());
        let mut st = self.state.lock();
        st.next_job += 1;
        let id = st.next_job;
        st.running.insert(
            id,
            Running {
                path: path.to_string(),
                generator: generator.to_string(),
                what,
                started: Instant::now(),
                progress: progress.clone(),
            },
        );
        (id, progress)
    }

    fn end<T>(&self, id: u64, ino: Option<Ino>, r: &Result<T, GenError>) {
        // The reason stays on the file for `getfattr -n user.magic.error`.
        if let Some(ino) = ino {
            let set = match r {
                Ok(_) if self.fs.getxattr(ino, names::ERROR).is_ok() => self.fs.removexattr(ino, names::ERROR),
                Ok(_) => Ok(()),
                Err(GenError::Cancelled | GenError::Changed) => Ok(()),
                Err(e) => self.fs.setxattr(ino, names::ERROR, e.to_string().as_bytes(), 0),
            };
            if let Err(e) = set {
                log::debug!("user.magic.error of inode {ino}: {e:?}");
            }
        }
        let mut st = self.state.lock();
        let Some(job) = st.running.remove(&id) else { return };
        if let Err(e) = r {
            st.failed += 1;
            log::warn!("generating {} with {}: {e}", job.path, job.generator);
            if st.errors.len() == RECENT_ERRORS {
                st.errors.pop_front();
            }
            st.errors.push_back(ErrorRecord {
                path: job.path,
                generator: job.generator,
                error: e.to_string(),
                time: names::rfc3339(SystemTime::now()),
            });
        }
    }

    /// Generates and stores the content of the planned file; `force` replaces
    /// existing content (explicit regeneration). Slow: call on a worker.
    /// On a shared volume a first generation is done once, cluster-wide
    /// (see the `once` module); a forced one runs where it was asked for.
    pub fn run(&self, plan: &Plan, force: bool) -> Result<Attr, GenError> {
        if !force && self.fs.is_cluster() {
            return self.run_once(plan);
        }
        self.generate(plan, force)
    }

    /// Generates and stores `plan`'s content here, counted in the status.
    pub(crate) fn generate(&self, plan: &Plan, force: bool) -> Result<Attr, GenError> {
        let path = self.fs.path_of(plan.ino).unwrap_or_else(|| format!("inode {}", plan.ino));
        let (id, progress) = self.begin(&path, &plan.generator, "file");
        let r = self.run_inner(plan, force, &progress);
        if let Ok(a) = &r {
            let mut st = self.state.lock();
            st.generated += 1;
            st.bytes += a.size;
        }
        self.end(id, Some(plan.ino), &r);
        r
    }

    fn run_inner(&self, plan: &Plan, force: bool, progress: &Progress) -> Result<Attr, GenError> {
        let generator = self.registry.get(&plan.generator)?;
        let before = self.fs.getattr(plan.ino)?;
        let mut req = plan::request(&self.fs, plan)?;
        let fmt = Format::parse(&req.format).unwrap_or(Format::Other);
        let shape = format::shape(fmt, &req.prompt);
        let mut reason = String::new();
        // The first answer that parsed but described its file instead of
        // holding its contents: stored when no later attempt does better.
        let mut kept: Option<(String, String, &'static str, u32)> = None;
        for attempt in 1..=self.attempts {
            req.attempt = attempt;
            if attempt > 1 {
                self.state.lock().retries += 1;
            }
            let out = generator.generate(&req, progress)?;
            if progress.cancelled() {
                return Err(GenError::Cancelled);
            }
            let raw = String::from_utf8_lossy(&out.bytes);
            let (mut text, cut) = trim_loop(&raw);
            if cut {
                text = format!("{}\n", text.trim_end());
            }
            let looped = cut || out.finish == "loop";
            let mut checked = crate::validate::validate(fmt, shape, &text);
            if checked.is_err() && (out.finish == "length" || looped) {
                // Cut off by the token limit or the loop detector: keep its
                // whole items, or its complete data, when they parse.
                let whole =
                    crate::validate::complete_prefix(fmt, &text).or_else(|| crate::validate::complete_data(fmt, &text));
                if let Some(whole) = whole {
                    log::info!("{}: attempt {attempt}: cut back to its last whole item", req.path);
                    text = whole;
                    checked = Ok(());
                }
            }
            let finish = if looped { "loop" } else { out.finish };
            // Asked for again only while the next attempt asks the same way
            // (a YAML or TOML file's JSON attempts come first).
            let same_way = format::via_json(fmt, attempt) == format::via_json(fmt, attempt + 1);
            if checked.is_ok() && attempt < self.attempts && same_way {
                if let Some(why) = crate::validate::describes_itself(fmt, &req.name, &text) {
                    kept.get_or_insert((text.clone(), out.model.clone(), finish, attempt));
                    checked = Err(why);
                }
            }
            let mut st = self.state.lock();
            st.loops_cut += u64::from(looped);
            let c = st.checked.entry(fmt.name()).or_default();
            match checked {
                Ok(()) => {
                    c.valid += 1;
                    drop(st);
                    return self.store(plan, force, &before, text.as_bytes(), &out.model, finish, attempt);
                }
                Err(why) => {
                    c.invalid += 1;
                    drop(st);
                    log::info!("{}: attempt {attempt} of {}: {why}", req.path, self.attempts);
                    reason = why;
                }
            }
        }
        if let Some((text, model, finish, attempt)) = kept {
            log::info!("{}: keeping attempt {attempt}, which parsed", req.path);
            self.state.lock().checked.entry(fmt.name()).or_default().valid += 1;
            return self.store(plan, force, &before, text.as_bytes(), &model, finish, attempt);
        }
        Err(GenError::Invalid { attempts: self.attempts, reason })
    }

    /// Stores valid content with its provenance.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        plan: &Plan,
        force: bool,
        before: &Attr,
        bytes: &[u8],
        model: &str,
        finish: &str,
        attempt: u32,
    ) -> Result<Attr, GenError> {
        let now = self.fs.getattr(plan.ino)?;
        let changed = now.mtime != before.mtime || now.size != before.size || self.fs.dirty_bytes(plan.ino) > 0;
        if changed || (!force && now.size > 0) {
            return Err(GenError::Changed);
        }
        if now.size > 0 {
            self.fs.setattr(plan.ino, SetAttr { size: Some(0), ..SetAttr::default() })?;
        }
        self.fs.write(plan.ino, 0, bytes)?;
        self.fs.flush(plan.ino)?;
        let hash = names::prompt_hash(&plan.generator, &plan.context, &plan.prompt);
        let time = names::rfc3339(SystemTime::now());
        let attempt = attempt.to_string();
        for (k, v) in [
            (names::PROV_GENERATOR, plan.generator.as_bytes()),
            (names::PROV_MODEL, model.as_bytes()),
            (names::PROV_PROMPT_HASH, hash.as_bytes()),
            (names::PROV_FINISH, finish.as_bytes()),
            (names::PROV_ATTEMPT, attempt.as_bytes()),
            (names::PROV_TIME, time.as_bytes()),
        ] {
            self.fs.setxattr(plan.ino, k, v, 0)?;
        }
        Ok(self.fs.getattr(plan.ino)?)
    }

    /// Regenerates `ino` whatever it holds (`magicfs generate --again`).
    pub fn regenerate(&self, ino: Ino) -> Result<Attr, GenError> {
        if self.fs.getattr(ino)?.kind == FileKind::Dir {
            return Err(GenError::Fs(magicfs_types::FsError::IsDir));
        }
        match self.plan(ino, true)? {
            Some(p) => self.run(&p, true),
            None => {
                let path = self.fs.path_of(ino).unwrap_or_else(|| format!("inode {ino}"));
                let (id, _) = self.begin(&path, "-", "file");
                let e = GenError::NoRule(path);
                self.end::<()>(id, None, &Err(e.clone()));
                Err(e)
            }
        }
    }

    /// Asks the model for a tree described by `prompt` and creates it under
    /// `dir` (every file empty, with its own prompt). Slow: call on a worker.
    pub fn make_tree(&self, dir: Ino, prompt: &str, ctx: Ctx) -> Result<Applied, GenError> {
        let path = self.fs.path_of(dir).unwrap_or_else(|| format!("inode {dir}"));
        let (id, progress) = self.begin(&path, "llm", "tree");
        let r = self.make_tree_inner(dir, prompt, ctx, &progress);
        if r.is_ok() {
            self.state.lock().trees += 1;
        }
        self.end(id, Some(dir), &r);
        self.rules_changed();
        r
    }

    fn make_tree_inner(&self, dir: Ino, prompt: &str, ctx: Ctx, progress: &Progress) -> Result<Applied, GenError> {
        if self.fs.getattr(dir)?.kind != FileKind::Dir {
            return Err(GenError::Fs(magicfs_types::FsError::NotDir));
        }
        if prompt.trim().is_empty() {
            return Err(GenError::Tree("the prompt is empty".into()));
        }
        let backend = self.llm.as_ref().ok_or_else(|| {
            GenError::Model(
                "no language model is configured; mount with --model-path FILE.gguf or --llm-url URL".into(),
            )
        })?;
        let want = tree::requested(prompt);
        let min = want.count.max(1);
        let mut best: Option<(usize, Vec<tree::PlannedFile>)> = None;
        let mut reason = String::new();
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                self.state.lock().retries += 1;
            }
            let mut sampling = self.tree_sampling.clone();
            sampling.seed = Some(sampling.seed_for(attempt));
            let params = GenParams {
                max_tokens: TREE_TOKENS,
                sampling,
                json_schema: Some(tree::schema_for(min, tree::MAX_FILES.max(min))),
                cancel: Some(progress.cancel.clone()),
                ..GenParams::default()
            };
            let mut n = 0u64;
            let mut sink = |piece: &str| {
                n += piece.len() as u64;
                progress.set_bytes(n);
                if progress.cancelled() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            let done = backend
                .chat(&tree::messages(prompt, &want), &params, &mut sink)
                .map_err(|e| GenError::Model(e.to_string()))?;
            if progress.cancelled() {
                return Err(GenError::Cancelled);
            }
            // A plan cut off by the token limit keeps its complete entries.
            let text = match (tree::parse(&done.text), done.finish) {
                (Err(_), magicfs_llm::FinishReason::Length) => {
                    crate::validate::complete_data(Format::Json, &done.text).unwrap_or(done.text.clone())
                }
                _ => done.text.clone(),
            };
            let files = match tree::parse(&text) {
                Ok(f) => f,
                Err(e) => {
                    reason = match done.finish {
                        magicfs_llm::FinishReason::Length => {
                            format!("the answer was cut at {} tokens: {e}", done.completion_tokens)
                        }
                        _ => e.to_string(),
                    };
                    self.count_check("tree", false);
                    continue;
                }
            };
            match tree::check(&files, &want) {
                Ok(()) => {
                    self.count_check("tree", true);
                    return tree::apply(&self.fs, dir, prompt.trim(), text.trim(), &files, ctx);
                }
                Err(why) => {
                    log::info!("tree {prompt:?}: attempt {attempt} of {}: {why}", self.attempts);
                    self.count_check("tree", false);
                    let gone = tree::missing(&files, &want).len() + want.count.saturating_sub(files.len());
                    if best.as_ref().is_none_or(|(g, _)| gone < *g) {
                        best = Some((gone, files));
                    }
                    reason = why;
                }
            }
        }
        let Some((_, files)) = best else { return Err(GenError::Tree(reason)) };
        // The model kept leaving requested parts out: add them to its best plan.
        let files = tree::complete(files, &want, prompt);
        self.state.lock().trees_completed += 1;
        log::info!("tree {prompt:?}: completed the best plan with the parts it lacked ({reason})");
        let answer = serde_json::json!({ "files": files }).to_string();
        tree::apply(&self.fs, dir, prompt.trim(), &answer, &files, ctx)
    }

    fn count_check(&self, what: &'static str, valid: bool) {
        let mut st = self.state.lock();
        let c = st.checked.entry(what).or_default();
        if valid {
            c.valid += 1;
        } else {
            c.invalid += 1;
        }
    }

    /// True when directory `dir` asks for a `README.magic` overlay.
    pub fn wants_overlay(&self, dir: Ino) -> bool {
        self.fs.getxattr(dir, names::GENERATOR).is_ok_and(|v| v.trim_ascii() == b"readme")
    }

    /// The live `README.magic` of `dir`, rendered now.
    pub fn render_overlay(&self, dir: Ino) -> Vec<u8> {
        let title = self
            .fs
            .path_of(dir)
            .map(|p| p.rsplit('/').find(|s| !s.is_empty()).unwrap_or("/").to_string())
            .unwrap_or_default();
        let prompt = self.fs.getxattr(dir, names::PROMPT).ok().map(|v| String::from_utf8_lossy(&v).into_owned());
        let (entries, cut) = plan::walk(&self.fs, dir, 500, 8);
        readme::render(&title, prompt.as_deref(), &entries, cut).into_bytes()
    }

    /// Asks every running generation to stop (at unmount); nothing is stored.
    pub fn cancel_all(&self) {
        for r in self.state.lock().running.values() {
            r.progress.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// The `generation` section of `.magic/status`.
    pub fn status(&self) -> serde_json::Value {
        let st = self.state.lock();
        let running: Vec<_> = st
            .running
            .values()
            .map(|r| {
                serde_json::json!({
                    "path": r.path,
                    "generator": r.generator,
                    "kind": r.what,
                    "seconds": (r.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                    "bytes": r.progress.bytes.load(Ordering::Relaxed),
                })
            })
            .collect();
        serde_json::json!({
            "generators": self.registry.names(),
            "model": self.llm.as_ref().map(|b| b.model_id()),
            "running": running,
            "generated": st.generated,
            "generated_bytes": st.bytes,
            "trees": st.trees,
            "trees_completed": st.trees_completed,
            "failed": st.failed,
            "validation": st.checked,
            "retries": st.retries,
            "loops_cut": st.loops_cut,
            "attempts": self.attempts,
            "last_error": st.errors.back(),
            "recent_errors": st.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{ContentGenerator, Output};
    use crate::request::GenRequest;
    use magicfs_core::FsConfig;
    use magicfs_types::ROOT_INO;

    /// Writes `text`; optionally writes into the file itself meanwhile, or fails.
    struct Scripted {
        fs: Arc<Fs>,
        meddle: Option<Ino>,
        fail: bool,
    }

    impl ContentGenerator for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn generate(&self, req: &GenRequest, progress: &Progress) -> Result<Output, GenError> {
            progress.set_bytes(7);
            if let Some(ino) = self.meddle {
                self.fs.write(ino, 0, b"user wrote this").unwrap();
                self.fs.flush(ino).unwrap();
            }
            if self.fail {
                return Err(GenError::Plugin("half done".into()));
            }
            Ok(Output { bytes: format!("for {}\n", req.path).into_bytes(), model: "m".into(), finish: "stop" })
        }
    }

    fn setup(meddle: bool, fail: bool) -> (Arc<Fs>, Engine, Ino) {
        let fs = Arc::new(Fs::memory(FsConfig::default()));
        let (a, fh) = fs.create(ROOT_INO, b"f", 0o644, libc::O_RDWR, Ctx { uid: 0, gid: 0 }).unwrap();
        fs.release(fh).unwrap();
        fs.setxattr(a.ino, names::GENERATOR, b"scripted", 0).unwrap();
        let mut reg = Registry::new();
        reg.register(Arc::new(Scripted { fs: fs.clone(), meddle: meddle.then_some(a.ino), fail }));
        let e = Engine::new(fs.clone(), reg, None);
        (fs, e, a.ino)
    }

    #[test]
    fn stores_with_provenance_and_never_regenerates_silently() {
        let (fs, e, ino) = setup(false, false);
        let p = e.plan(ino, false).unwrap().unwrap();
        let a = e.run(&p, false).unwrap();
        assert_eq!(fs.read(ino, 0, 100).unwrap(), b"for /f\n");
        assert_eq!(a.size, 7);
        assert_eq!(fs.getxattr(ino, names::PROV_GENERATOR).unwrap(), b"scripted");
        assert!(e.plan(ino, false).unwrap().is_none(), "generated content stays");
        fs.setattr(ino, SetAttr { size: Some(0), ..SetAttr::default() }).unwrap();
        assert!(e.plan(ino, false).unwrap().is_none(), "even when truncated later");
        assert!(e.regenerate(ino).is_ok());
        assert_eq!(e.status()["generated"], 2);
    }

    #[test]
    fn a_write_during_generation_wins() {
        let (fs, e, ino) = setup(true, false);
        let p = e.plan(ino, false).unwrap().unwrap();
        assert_eq!(e.run(&p, false), Err(GenError::Changed));
        assert_eq!(fs.read(ino, 0, 100).unwrap(), b"user wrote this");
        assert!(fs.getxattr(ino, names::PROV_TIME).is_err());
    }

    #[test]
    fn failures_store_nothing_and_are_reported() {
        let (fs, e, ino) = setup(false, true);
        let p = e.plan(ino, false).unwrap().unwrap();
        assert!(matches!(e.run(&p, false), Err(GenError::Plugin(_))));
        assert_eq!(fs.getattr(ino).unwrap().size, 0);
        let st = e.status();
        assert_eq!(st["failed"], 1);
        assert_eq!(st["last_error"]["path"], "/f");
        assert!(st["last_error"]["error"].as_str().unwrap().contains("half done"));
        assert!(e.plan(ino, false).unwrap().is_some(), "tried again on the next read");
        let dir = fs.mkdir(ROOT_INO, b"d", 0o755, Ctx { uid: 0, gid: 0 }).unwrap();
        assert_eq!(e.regenerate(dir.ino).unwrap_err().errno(), libc::EISDIR);
        let (plain, fh) = fs.create(ROOT_INO, b"plain", 0o644, libc::O_RDWR, Ctx { uid: 0, gid: 0 }).unwrap();
        fs.release(fh).unwrap();
        assert_eq!(e.regenerate(plain.ino).unwrap_err().errno(), libc::ENODATA);
    }
}
