//! MagicFS's connection to PostgreSQL, shared by everything that keeps state
//! there (the cluster metadata engine, the search index, work queues).
//!
//! - [`PgUrl`]: `postgres://` URLs, printed without their password.
//! - [`Pg`]: a pool of connections (deadpool over tokio-postgres) on a small
//!   runtime of its own, with a blocking facade ([`Pg::run`]) for the
//!   daemon's threads and an async one ([`Pg::run_async`]).
//! - Bounded retries: a failure of the connection or of the server's state
//!   (refused, reset, shut down, serialisation conflict, deadlock) is retried
//!   with exponential backoff until [`PgOptions::retry_for`] has passed; then
//!   the call fails with [`PgError::Unreachable`], whose message names the
//!   service. A refused login or a missing database fails at once.
//! - [`Pg::migrate`]: named schema steps applied once, under an advisory lock.
//! - [`Pg::listen`]: `LISTEN` on a connection of its own that reconnects.
//! - [`testing`]: the services a test run uses and throwaway databases.
//!
//! The retried closure may run more than once, and a transaction whose
//! `COMMIT` was sent just before the connection broke may have committed:
//! callers make their closures idempotent or check for their own effect.

mod error;
mod listen;
mod migrate;
pub mod testing;
mod url;

pub use deadpool_postgres::{Client, Transaction};
pub use error::{words, PgError};
pub use listen::{Listener, Note};
pub use migrate::Migration;
pub use tokio_postgres;
pub use url::{redact, PgUrl};

use error::{kind_of, Kind};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A future borrowing a pooled client, as [`Pg::run`]'s closures return.
pub type PgFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>>;

/// Settings of a [`Pg`].
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Most connections held at once.
    pub max_connections: usize,
    /// How long transient failures are retried before a call fails.
    pub retry_for: Duration,
    /// First pause between attempts (doubled each time).
    pub backoff_first: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
    /// Runtime threads.
    pub threads: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            retry_for: Duration::from_secs(30),
            backoff_first: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            threads: 2,
        }
    }
}

struct Shared {
    url: PgUrl,
    pool: deadpool_postgres::Pool,
    opts: PgOptions,
    /// Set while the service is failing, so the outage is logged once and
    /// the recovery once.
    failing: AtomicBool,
}

/// A handle on one PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct Pg {
    shared: Arc<Shared>,
    rt: Arc<OwnedRuntime>,
}

/// The pool's runtime. The last handle may be dropped on a thread of some
/// other runtime (a task of the object store's, say), where dropping a
/// runtime the usual way panics; it is shut down in the background instead.
struct OwnedRuntime(std::mem::ManuallyDrop<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        // SAFETY: the runtime is taken once, here, and never used again.
        let rt = unsafe { std::mem::ManuallyDrop::take(&mut self.0) };
        rt.shutdown_background();
    }
}

/// Why one attempt failed.
enum Attempt {
    Pool(deadpool_postgres::PoolError),
    Pg(tokio_postgres::Error),
}

impl Pg {
    /// Connects to `url` and checks that the database answers (retrying
    /// transient failures for `opts.retry_for`).
    pub fn connect(url: &PgUrl, opts: PgOptions) -> Result<Pg, PgError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads.max(1))
            .thread_name("magicfs-pg")
            .enable_all()
            .build()
            .map_err(|e| PgError::Query {
                service: url.service(),
                code: None,
                message: format!("cannot start the database runtime: {e}"),
            })?;
        let mgr = deadpool_postgres::Manager::from_config(
            url.config().clone(),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let pool = deadpool_postgres::Pool::builder(mgr)
            .max_size(opts.max_connections.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| PgError::Query { service: url.service(), code: None, message: e.to_string() })?;
        let pg = Pg {
            shared: Arc::new(Shared { url: url.clone(), pool, opts, failing: AtomicBool::new(false) }),
            rt: Arc::new(OwnedRuntime(std::mem::ManuallyDrop::new(rt))),
        };
        pg.run(|c| Box::pin(async move { c.simple_query("SELECT 1").await.map(|_| ()) }))?;
        Ok(pg)
    }

    /// The URL this handle connects to.
    pub fn url(&self) -> &PgUrl {
        &self.shared.url
    }

    /// `PostgreSQL at HOST:PORT`, for messages.
    pub fn service(&self) -> String {
        self.shared.url.service()
    }

    /// The runtime the pool lives on (for tasks that must run beside it).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt.0
    }

    /// Runs `f` with a pooled client from a thread that is not a runtime
    /// worker, retrying transient failures (see the crate docs).
    pub fn run<T, F>(&self, f: F) -> Result<T, PgError>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut Client) -> PgFuture<'c, T> + Send,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            // Called from inside some runtime: block on another thread so
            // that runtime is not stalled by a nested block_on.
            return std::thread::scope(|s| match s.spawn(|| self.runtime().block_on(self.run_async(f))).join() {
                Ok(r) => r,
                Err(_) => Err(PgError::Query {
                    service: self.service(),
                    code: None,
                    message: "the database call panicked".into(),
                }),
            });
        }
        self.runtime().block_on(self.run_async(f))
    }

    /// The async form of [`Pg::run`].
    pub async fn run_async<T, F>(&self, mut f: F) -> Result<T, PgError>
    where
        F: for<'c> FnMut(&'c mut Client) -> PgFuture<'c, T>,
    {
        let start = Instant::now();
        let mut pause = self.shared.opts.backoff_first;
        loop {
            let attempt = match self.shared.pool.get().await {
                Ok(mut client) => f(&mut client).await.map_err(Attempt::Pg),
                Err(e) => Err(Attempt::Pool(e)),
            };
            let e = match attempt {
                Ok(v) => {
                    if self.shared.failing.swap(false, Ordering::Relaxed) {
                        log::info!("{} answers again", self.service());
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            let (kind, cause) = match &e {
                Attempt::Pg(e) => (kind_of(e), words(e)),
                Attempt::Pool(deadpool_postgres::PoolError::Backend(e)) => (kind_of(e), words(e)),
                Attempt::Pool(deadpool_postgres::PoolError::Timeout(_)) => {
                    (Kind::Transient, "timed out waiting for a connection".to_string())
                }
                Attempt::Pool(other) => (Kind::Fatal, other.to_string()),
            };
            let elapsed = start.elapsed();
            if kind == Kind::Transient && elapsed + pause < self.shared.opts.retry_for {
                if !self.shared.failing.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "{}: {cause}; retrying for up to {} s",
                        self.service(),
                        self.shared.opts.retry_for.as_secs()
                    );
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(self.shared.opts.backoff_max);
                continue;
            }
            let service = self.service();
            let err = match kind {
                Kind::Transient => PgError::Unreachable { service, tried_for: elapsed, cause },
                Kind::Auth => PgError::Auth { service, user: self.shared.url.user().to_string(), cause },
                Kind::MissingDatabase => {
                    PgError::MissingDatabase { service, database: self.shared.url.dbname().to_string() }
                }
                Kind::Fatal => {
                    let code = match &e {
                        Attempt::Pg(e) => e.code().map(|c| c.code().to_string()),
                        _ => None,
                    };
                    PgError::Query { service, code, message: cause }
                }
            };
            if kind == Kind::Transient {
                log::error!("{err}");
            }
            return Err(err);
        }
    }

    /// Runs `sql` (one or more statements, no parameters) with retries.
    pub fn execute_batch(&self, sql: &str) -> Result<(), PgError> {
        self.run(|c| {
            let sql = sql.to_string();
            Box::pin(async move { c.batch_execute(&sql).await })
        })
    }

    /// Connections in the pool and how many are idle.
    pub fn pool_status(&self) -> (usize, usize) {
        let s = self.shared.pool.status();
        (s.size, s.available)
    }
}
