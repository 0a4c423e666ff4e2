//! Watched host directories: an inotify watcher (through `notify`) queues
//! every created, changed, renamed or removed path; once a second each root
//! is checked, so a directory that disappears has its records dropped and
//! one that (re)appears is scanned and watched again. The first check is the
//! start-up reconciliation: a full scan against the stored records.

use crate::index::{Inner, Job};
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Starts the watcher thread (nothing to do without roots).
pub(crate) fn start(inner: Arc<Inner>) -> Option<std::thread::JoinHandle<()>> {
    if inner.roots.lock().is_empty() {
        return None;
    }
    std::thread::Builder::new().name("magicfs-watch".into()).spawn(move || run(inner)).ok()
}

fn run(inner: Arc<Inner>) {
    let weak: Weak<Inner> = Arc::downgrade(&inner);
    let handler = move |ev: notify::Result<notify::Event>| {
        let Some(inner) = weak.upgrade() else { return };
        match ev {
            Ok(ev) => {
                let wanted = match ev.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                    EventKind::Access(_) => false,
                    _ => true,
                };
                if wanted {
                    for p in ev.paths {
                        inner.push(Job::Host(p), true);
                    }
                }
            }
            Err(e) => log::warn!("search: watcher: {e}"),
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            for r in inner.roots.lock().iter_mut() {
                r.1 = format!("error: {e}");
            }
            inner.startup_step(usize::MAX);
            log::error!("search: cannot watch directories: {e}");
            return;
        }
    };
    while !inner.stop.load(Ordering::Acquire) {
        let roots: Vec<_> = inner.roots.lock().clone();
        for (i, (root, state)) in roots.iter().enumerate() {
            let present = root.is_dir();
            let next = match (present, state.as_str()) {
                (true, "watching") => continue,
                (true, _) => match watcher.watch(root, RecursiveMode::Recursive) {
                    Ok(()) => {
                        crate::worker::scan_dir(&inner, root);
                        "watching".to_string()
                    }
                    Err(e) => format!("error: {e}"),
                },
                (false, "missing") => continue,
                (false, _) => {
                    let _ = watcher.unwatch(root);
                    inner.push(Job::Host(root.clone()), true);
                    log::warn!("search: watched directory {} is missing; its files leave the index", root.display());
                    "missing".to_string()
                }
            };
            if state == "starting" {
                inner.startup_step(1);
            }
            if let Some(r) = inner.roots.lock().get_mut(i) {
                r.1 = next;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
