//! Generation on a volume several daemons mount: a file is generated once,
//! cluster-wide.
//!
//! Readers on several mounts may ask for the same empty file at once. Each
//! mount's worker claims the file (`gen`, inode) on the volume
//! (`magicfs_store::claims`) before it generates. The holder catches up
//! with the volume's change log, generates only if the file is still
//! empty, stores the content (committed like any write) and ends the
//! claim. A mount that was refused waits: it catches up and answers as
//! soon as the content shows, or claims the file itself once the holder
//! is done (and then finds the content, or, if the holder failed, tries
//! itself), or once the holder's lease ran out (a mount that died). The
//! holder renews its claim while the model runs.

use crate::engine::Engine;
use crate::error::GenError;
use crate::plan::Plan;
use magicfs_types::Attr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The claims' kind.
const KIND: &str = "gen";
/// How long a claim lasts without renewal.
const LEASE: Duration = Duration::from_secs(30);
/// How often the holder renews.
const RENEW: Duration = Duration::from_secs(10);
/// How often a refused mount looks again.
const POLL: Duration = Duration::from_millis(100);

impl Engine {
    /// [`Engine::run`] for a first generation on a shared volume (see the module's notes).
    pub(crate) fn run_once(&self, plan: &Plan) -> Result<Attr, GenError> {
        let fs = self.fs();
        let key = plan.ino.to_string();
        let mut waited = false;
        loop {
            if fs.claim(KIND, &key, LEASE)? {
                let r = self.generate_claimed(plan);
                fs.finish_claim(KIND, &key);
                if waited {
                    log::info!("inode {}: generated on another mount; not generated here", plan.ino);
                }
                return r;
            }
            // Another mount generates it: its content arrives with the change log.
            waited = true;
            let until = Instant::now() + POLL;
            fs.catch_up()?;
            let a = fs.getattr(plan.ino)?;
            if a.size > 0 {
                return Ok(a);
            }
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
    }

    /// Generates `plan` under this mount's claim, unless the file already
    /// has content (another mount made it), renewing the claim meanwhile.
    fn generate_claimed(&self, plan: &Plan) -> Result<Attr, GenError> {
        let fs = self.fs();
        fs.catch_up()?;
        let a = fs.getattr(plan.ino)?;
        if a.size > 0 {
            return Ok(a);
        }
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut last = Instant::now();
                while !done.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50));
                    if last.elapsed() >= RENEW {
                        last = Instant::now();
                        let _ = fs.claim(KIND, &plan.ino.to_string(), LEASE);
                    }
                }
            });
            let r = self.generate(plan, false);
            done.store(true, Ordering::Release);
            r
        })
    }
}
