//! A fixed pool of worker threads with a bounded queue, for callbacks whose
//! reply waits on slow work.

use parking_lot::Mutex;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Worker threads fed through a bounded channel.
pub struct Pool {
    tx: SyncSender<Job>,
}

impl Pool {
    /// Starts `n` workers with room for `queue` waiting jobs.
    pub fn new(n: usize, queue: usize) -> Pool {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(rx));
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let _ = thread::Builder::new().name(format!("magicfs-worker-{i}")).spawn(move || loop {
                let job = rx.lock().recv();
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
        }
        Pool { tx }
    }

    /// Queues `job`; runs it on the calling thread if the pool is gone.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        if let Err(e) = self.tx.send(Box::new(job)) {
            (e.0)();
        }
    }
}
