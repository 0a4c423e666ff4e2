//! The MagicFS metadata engine on PostgreSQL: one volume per database,
//! mounted by any number of machines at once.
//!
//! [`PgMeta::format`] creates the volume's tables (see `schema.rs`) and
//! records where its chunks live; [`PgMeta::open`] joins it as a new
//! session. Mutations run as turns of [`SharedMeta`]: a transaction holding
//! the volume's advisory write lock on a connection of the mount's own
//! (`turn.rs`), two round trips each. Everything else — loading a
//! snapshot, reading the change log, heartbeats, housekeeping — goes
//! through the pool of [`magicfs_pg::Pg`], with its bounded retries.
//! Mounts hear of new changes by `LISTEN`/`NOTIFY` (the payload is the
//! sequence number) and poll as a fallback.

mod claims;
mod schema;
mod turn;

use magicfs_pg::tokio_postgres::{self, Row};
use magicfs_pg::{Listener, Note, Pg, PgError, PgOptions, PgUrl};
use magicfs_store::{
    Batch, Change, Housekeeping, MetaEngine, RowSink, SharedMeta, StoreError, StoreInfo, StoreResult, Table, Turn,
};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use magicfs_pg::PgUrl as Url;

/// Tokens of batches committed outside turns (never equal to a mount's own
/// turn tokens, which count up from 1).
const ENGINE_TOKENS: u64 = 1 << 62;

pub(crate) use magicfs_pg::words;

/// Whether retrying (on a new connection) may help.
pub(crate) fn transient(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error().map(|d| d.code().code()) {
        None => true,
        Some(c) => {
            matches!(c, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "55P03") || c.starts_with("08")
        }
    }
}

/// A driver error as a store error that names the service.
pub(crate) fn service_error(pg: &Pg, e: &tokio_postgres::Error) -> StoreError {
    StoreError::Service(format!("{}: {}", pg.service(), words(e)))
}

pub(crate) fn pg_error(e: PgError) -> StoreError {
    StoreError::Service(e.to_string())
}

/// Decodes a change-log row (`seq, session, token, batch`).
pub(crate) fn change_of(r: &Row) -> Result<Change, tokio_postgres::Error> {
    change_of_at(r, 0)
}

/// Decodes a change-log row whose columns start at `at`.
fn change_of_at(r: &Row, at: usize) -> Result<Change, tokio_postgres::Error> {
    let (seq, session, token): (i64, i64, i64) = (r.try_get(at)?, r.try_get(at + 1)?, r.try_get(at + 2)?);
    let bytes: Vec<u8> = r.try_get(at + 3)?;
    // An undecodable batch becomes an empty one here and is reported by the caller.
    let batch = Batch::decode(&bytes).unwrap_or_else(|| {
        log::error!("change {seq} of the volume's log does not decode; it is skipped");
        Batch::new()
    });
    Ok(Change { seq: seq as u64, session: session as u64, token: token as u64, batch })
}

/// The payload announcing change `seq`: the sequence number, then the
/// session whose mount already applied it (0: none), which skips it.
pub(crate) fn note(seq: u64, applied_by: u64) -> String {
    format!("{seq} {applied_by}")
}

/// How long a mount waits after a notification for more of the same burst
/// before it reads the change log: one read per burst, not per change.
const GATHER: Duration = Duration::from_millis(20);

/// A session on a PostgreSQL volume.
pub struct PgMeta {
    pg: Pg,
    session: u64,
    store_url: String,
    volume_id: String,
    retry_for: Duration,
    /// The idle turn connection.
    turns: Mutex<Option<turn::TurnConn>>,
    listener: Mutex<Listener>,
    tokens: AtomicU64,
    /// When the server had started as of this session's last snapshot
    /// ([`schema::STARTED`]; 0 before the first).
    started: AtomicI64,
}

/// How long a command waits for an unreachable server before it says so.
const CONNECT_FOR: Duration = Duration::from_secs(5);

/// Connects, failing within [`CONNECT_FOR`] when the server cannot be
/// reached (wrong host or port, server down), then with `opts`.
fn connect(url: &PgUrl, opts: PgOptions) -> StoreResult<Pg> {
    let quick =
        PgOptions { retry_for: CONNECT_FOR.min(opts.retry_for), max_connections: 1, threads: 1, ..opts.clone() };
    drop(Pg::connect(url, quick).map_err(pg_error)?);
    Pg::connect(url, opts).map_err(pg_error)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// What the database says of its volume: where its chunks live, when it
/// was formatted (for people), and a name unique to this formatting.
#[derive(Default)]
struct VolumeRow {
    store: String,
    when: String,
    id: String,
}

/// The database's volume, if it holds one.
fn volume_store(pg: &Pg) -> StoreResult<Option<VolumeRow>> {
    pg.run(|c| {
        Box::pin(async move {
            let exists: Option<String> = c.query_one("SELECT to_regclass('magicfs_volume')::text", &[]).await?.get(0);
            if exists.is_none() {
                return Ok(None);
            }
            let row = c
                .query_opt(
                    "SELECT store_url, to_char(formatted_at, 'YYYY-MM-DD HH24:MI:SS TZ'), \
                     current_database() || '-' || (extract(epoch FROM formatted_at) * 1000000)::bigint \
                     FROM magicfs_volume WHERE id = 1",
                    &[],
                )
                .await?;
            Ok(row.map(|r| VolumeRow { store: r.get(0), when: r.get(1), id: r.get(2) }))
        })
    })
    .map_err(pg_error)
}

impl PgMeta {
    /// Creates a volume in the database `url` names, recording `store_url`
    /// (where its chunks live). Fails if the database already holds one.
    pub fn format(url: &PgUrl, store_url: &str, opts: PgOptions) -> StoreResult<()> {
        let pg = connect(url, opts)?;
        if let Some(v) = volume_store(&pg)? {
            return Err(already_formatted(url, &v.store, &v.when));
        }
        pg.migrate(schema::COMPONENT, schema::MIGRATIONS).map_err(pg_error)?;
        let store = store_url.to_string();
        let inserted = pg
            .run(|c| {
                let store = store.clone();
                Box::pin(async move {
                    c.execute(
                        "INSERT INTO magicfs_volume (id, store_url) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                        &[&store],
                    )
                    .await
                })
            })
            .map_err(pg_error)?;
        if inserted == 0 {
            let v = volume_store(&pg)?.unwrap_or_default();
            return Err(already_formatted(url, &v.store, &v.when));
        }
        Ok(())
    }

    /// Fails, saying what is there, when the database `url` names already
    /// holds a volume (checked before anything is created for a new one).
    pub fn check_unformatted(url: &PgUrl, opts: PgOptions) -> StoreResult<()> {
        let pg = connect(url, opts)?;
        match volume_store(&pg)? {
            Some(v) => Err(already_formatted(url, &v.store, &v.when)),
            None => Ok(()),
        }
    }

    /// Joins the volume in the database `url` names as a new session.
    pub fn open(url: &PgUrl, opts: PgOptions) -> StoreResult<PgMeta> {
        let retry_for = opts.retry_for;
        let pg = connect(url, opts)?;
        let Some(volume) = volume_store(&pg)? else {
            return Err(StoreError::Volume(format!(
                "{}: database {:?} holds no MagicFS volume; create one with \
                 `magicfs format --meta {url} --store s3://BUCKET/PREFIX` (or --store file:///DIR)",
                pg.service(),
                url.dbname()
            )));
        };
        pg.migrate(schema::COMPONENT, schema::MIGRATIONS).map_err(pg_error)?;
        pg.migrate(claims::COMPONENT, claims::MIGRATIONS).map_err(pg_error)?;
        let (host, pid) = (hostname(), std::process::id() as i32);
        let session: i64 = pg
            .run(|c| {
                let host = host.clone();
                Box::pin(async move {
                    c.query_one(
                        "INSERT INTO magicfs_sessions (host, pid, applied) SELECT $1, $2, head FROM magicfs_volume \
                         WHERE id = 1 RETURNING id",
                        &[&host, &pid],
                    )
                    .await
                    .map(|r| r.get(0))
                })
            })
            .map_err(pg_error)?;
        let listener = pg.listen(&[schema::CHANNEL]);
        Ok(PgMeta {
            pg,
            session: session as u64,
            store_url: volume.store,
            volume_id: volume.id,
            retry_for,
            turns: Mutex::new(None),
            listener: Mutex::new(listener),
            tokens: AtomicU64::new(ENGINE_TOKENS),
            started: AtomicI64::new(0),
        })
    }

    /// Where the volume's chunks live (recorded by `format`).
    pub fn store_url(&self) -> &str {
        &self.store_url
    }

    /// A name for this volume that no other formatting shares (the
    /// database's name and when it was formatted): local caches are kept
    /// apart by it.
    pub fn volume_id(&self) -> String {
        self.volume_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect()
    }

    /// The connection pool.
    pub fn pg(&self) -> &Pg {
        &self.pg
    }
}

fn already_formatted(url: &PgUrl, store: &str, when: &str) -> StoreError {
    StoreError::Volume(format!(
        "database {:?} at {} already holds a MagicFS volume (store {store}, formatted {when}); \
         mount it with `magicfs mount MNT --meta {url}`, or format another database",
        url.dbname(),
        url.host_port()
    ))
}

impl MetaEngine for PgMeta {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn scan(&self, t: Table, f: &mut dyn FnMut(&[u8], &[u8])) -> StoreResult<()> {
        let sql = schema::scan(t);
        let rows = self
            .pg
            .run(|c| {
                let sql = sql.clone();
                Box::pin(async move { c.query(&sql, &[]).await })
            })
            .map_err(pg_error)?;
        for r in rows {
            let (k, v): (Vec<u8>, Vec<u8>) = (r.get(0), r.get(1));
            f(&k, &v);
        }
        Ok(())
    }

    fn get(&self, t: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let sql = schema::get(t);
        let key = key.to_vec();
        self.pg
            .run(|c| {
                let (sql, key) = (sql.clone(), key.clone());
                Box::pin(async move { c.query_opt(&sql, &[&key]).await.map(|r| r.map(|r| r.get(0))) })
            })
            .map_err(pg_error)
    }

    fn snapshot(&self, f: &mut RowSink<'_>) -> StoreResult<u64> {
        let session = self.session as i64;
        let (host, pid) = (hostname(), std::process::id() as i32);
        let (head, started, tables) = self
            .pg
            .run(|c| {
                let host = host.clone();
                Box::pin(async move {
                    let tx = c
                        .build_transaction()
                        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                        .start()
                        .await?;
                    let r = tx
                        .query_one(&format!("SELECT head, {} FROM magicfs_volume WHERE id = 1", schema::STARTED), &[])
                        .await?;
                    let (head, started): (i64, i64) = (r.get(0), r.get(1));
                    // (Re)joins the volume at the snapshot's position.
                    tx.execute(
                        "INSERT INTO magicfs_sessions (id, host, pid, applied) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (id) DO UPDATE SET heartbeat = now(), applied = $4",
                        &[&session, &host, &pid, &head],
                    )
                    .await?;
                    let mut tables = Vec::with_capacity(Table::ALL.len());
                    for t in Table::ALL {
                        tables.push(tx.query(&schema::scan(t), &[]).await?);
                    }
                    tx.commit().await?;
                    Ok((head, started, tables))
                })
            })
            .map_err(pg_error)?;
        self.started.store(started, Ordering::Release);
        for (t, rows) in Table::ALL.iter().zip(tables) {
            for r in rows {
                let (k, v): (Vec<u8>, Vec<u8>) = (r.get(0), r.get(1));
                f(*t, &k, &v);
            }
        }
        Ok(head as u64)
    }

    fn commit(&self, batch: Batch) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let token = self.tokens.fetch_add(1, Ordering::Relaxed);
        let session = self.session;
        let batch = std::sync::Arc::new(batch);
        self.pg
            .run(|c| {
                let batch = batch.clone();
                Box::pin(async move {
                    let tx = c.transaction().await?;
                    tx.execute(&format!("SELECT pg_advisory_xact_lock({})", schema::WRITE_LOCK), &[]).await?;
                    // A retry after an uncertain commit must not apply the batch twice.
                    let done = tx
                        .query_opt(
                            "SELECT 1 FROM magicfs_changes WHERE session = $1 AND token = $2",
                            &[&(session as i64), &(token as i64)],
                        )
                        .await?;
                    if done.is_none() {
                        let head: i64 = tx.query_one("SELECT head FROM magicfs_volume WHERE id = 1", &[]).await?.get(0);
                        let st = statements(&tx).await?;
                        let w = turn::Writes {
                            upsert: &st.upsert,
                            delete: &st.delete,
                            record: &st.record,
                            advance: &st.advance,
                            notify: &st.notify,
                            stage: None,
                        };
                        turn::write_batch(
                            &*tx,
                            w,
                            (&batch, head as u64 + 1, session, token),
                            // Not applied by any mount yet: every mount reads it.
                            0,
                        )
                        .await?;
                    }
                    tx.commit().await
                })
            })
            .map_err(pg_error)
    }

    fn sync(&self) -> StoreResult<()> {
        // Turns commit asynchronously. A transaction that writes a row and
        // commits synchronously waits for the server's log to be flushed
        // past its own commit, so past every turn before it (one that
        // writes nothing would not wait): this session's row, or the
        // volume's when the session has expired.
        let session = self.session as i64;
        self.pg
            .run(|c| {
                Box::pin(async move {
                    let st = c.prepare_cached("UPDATE magicfs_sessions SET heartbeat = now() WHERE id = $1").await?;
                    if c.execute(&st, &[&session]).await? == 0 {
                        c.execute("UPDATE magicfs_volume SET head = head WHERE id = 1", &[]).await?;
                    }
                    Ok(())
                })
            })
            .map_err(pg_error)
    }

    fn close(&self) -> StoreResult<()> {
        self.turns.lock().take();
        self.sync()
    }

    fn info(&self, i: &mut StoreInfo) {
        i.url = Some(self.pg.url().to_string());
        i.session = Some(self.session);
    }

    fn shared(&self) -> Option<&dyn SharedMeta> {
        Some(self)
    }
}

impl PgMeta {
    /// Fails with `Stale` (the mount loads the volume again) when the
    /// server restarted since this session's snapshot: turns commit
    /// asynchronously, so a crash may have lost the last changes this
    /// mount already applied.
    pub(crate) fn check_started(&self, since: u64, started: i64) -> StoreResult<()> {
        let known = self.started.load(Ordering::Acquire);
        if known == 0 || known == started {
            return Ok(());
        }
        log::warn!(
            "{} restarted; changes committed just before may be lost: loading the volume again",
            self.pg.service()
        );
        Err(StoreError::Stale { since, oldest: since + 1 })
    }

    /// When the server started, as of this session's snapshot.
    pub(crate) fn started(&self) -> i64 {
        self.started.load(Ordering::Acquire)
    }
}

/// Statements for a commit outside a turn, prepared on the pooled connection.
struct Statements {
    upsert: Vec<tokio_postgres::Statement>,
    delete: Vec<tokio_postgres::Statement>,
    record: tokio_postgres::Statement,
    advance: tokio_postgres::Statement,
    notify: tokio_postgres::Statement,
}

async fn statements(tx: &magicfs_pg::Transaction<'_>) -> Result<Statements, tokio_postgres::Error> {
    let mut upsert = Vec::new();
    let mut delete = Vec::new();
    for t in Table::ALL {
        upsert.push(tx.prepare_cached(&schema::upsert(t)).await?);
        delete.push(tx.prepare_cached(&schema::delete(t)).await?);
    }
    Ok(Statements {
        upsert,
        delete,
        record: tx
            .prepare_cached("INSERT INTO magicfs_changes (seq, session, token, batch) VALUES ($1, $2, $3, $4)")
            .await?,
        advance: tx.prepare_cached("UPDATE magicfs_volume SET head = $1 WHERE id = 1").await?,
        notify: tx.prepare_cached(&format!("SELECT pg_notify('{}', $1)", schema::CHANNEL)).await?,
    })
}

impl SharedMeta for PgMeta {
    fn session(&self) -> u64 {
        self.session
    }

    fn begin(&self, since: u64) -> StoreResult<(Box<dyn Turn + '_>, Vec<Change>)> {
        self.begin_turn(since)
    }

    fn commit_if_current(&self, since: u64, batch: &Batch, token: u64) -> StoreResult<Option<u64>> {
        self.commit_current(since, batch, token)
    }

    fn changes(&self, since: u64) -> StoreResult<Vec<Change>> {
        let since_i = since as i64;
        // One prepared statement: how far the log was trimmed, with the
        // changes after `since` (a row of NULLs when there are none).
        let rows = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    let st = c.prepare_cached(&schema::changes_and_trimmed()).await?;
                    c.query(&st, &[&since_i]).await
                })
            })
            .map_err(pg_error)?;
        let trimmed = rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64;
        if since < trimmed {
            return Err(StoreError::Stale { since, oldest: trimmed + 1 });
        }
        if let Some(r) = rows.first() {
            self.check_started(since, r.get(5))?;
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if r.get::<_, Option<i64>>(1).is_some() {
                out.push(change_of_at(r, 1).map_err(|e| service_error(&self.pg, &e))?);
            }
        }
        Ok(out)
    }

    fn wait_for_change(&self, since: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let l = self.listener.lock();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match l.notes().recv_timeout(left) {
                Ok(Note::Notification { payload, .. }) => {
                    let mut words = payload.split(' ').map(|w| w.parse::<u64>().ok());
                    let (seq, applied_by) = (words.next().flatten(), words.next().flatten());
                    // This mount's own mutations are applied as they commit.
                    if seq.is_some_and(|s| s > since) && applied_by != Some(self.session) {
                        // Let the rest of a burst arrive, then read it at once.
                        std::thread::sleep(GATHER.min(left));
                        while l.notes().try_recv().is_ok() {}
                        return;
                    }
                }
                // Notifications may have been missed while disconnected.
                Ok(Note::Connected) => return,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left);
                    return;
                }
            }
        }
    }

    fn heartbeat(&self, applied: u64, hold: &[u64], release: &[u64]) -> StoreResult<()> {
        let session = self.session as i64;
        let applied = applied as i64;
        let hold: Vec<Vec<u8>> = hold.iter().map(|i| i.to_be_bytes().to_vec()).collect();
        let release: Vec<Vec<u8>> = release.iter().map(|i| i.to_be_bytes().to_vec()).collect();
        let alive = self
            .pg
            .run(|c| {
                let (hold, release) = (hold.clone(), release.clone());
                Box::pin(async move {
                    let tx = c.transaction().await?;
                    let n = tx
                        .execute(
                            "UPDATE magicfs_sessions SET heartbeat = now(), applied = greatest(applied, $2) WHERE id = $1",
                            &[&session, &applied],
                        )
                        .await?;
                    if n == 0 {
                        return Ok(false);
                    }
                    if !hold.is_empty() {
                        tx.execute(
                            "INSERT INTO magicfs_sustained (session, ino) SELECT $1, unnest($2::bytea[]) \
                             ON CONFLICT DO NOTHING",
                            &[&session, &hold],
                        )
                        .await?;
                    }
                    if !release.is_empty() {
                        tx.execute(
                            "DELETE FROM magicfs_sustained WHERE session = $1 AND ino = ANY($2::bytea[])",
                            &[&session, &release],
                        )
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(true)
                })
            })
            .map_err(pg_error)?;
        if alive {
            Ok(())
        } else {
            Err(StoreError::SessionExpired(self.session))
        }
    }

    fn housekeeping(&self, timeout: Duration) -> StoreResult<Option<Housekeeping>> {
        let secs = timeout.as_secs_f64();
        self.pg
            .run(|c| {
                Box::pin(async move {
                    let tx = c.transaction().await?;
                    let mine: bool = tx
                        .query_one(&format!("SELECT pg_try_advisory_xact_lock({})", schema::HOUSEKEEPER_LOCK), &[])
                        .await?
                        .get(0);
                    if !mine {
                        return Ok(None);
                    }
                    let expired: Vec<i64> = tx
                        .query(
                            "DELETE FROM magicfs_sessions WHERE heartbeat < now() - make_interval(secs => $1) RETURNING id",
                            &[&secs],
                        )
                        .await?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    let head: i64 = tx.query_one("SELECT head FROM magicfs_volume WHERE id = 1", &[]).await?.get(0);
                    let min: Option<i64> =
                        tx.query_one("SELECT min(applied) FROM magicfs_sessions", &[]).await?.get(0);
                    let min_applied = min.unwrap_or(head).min(head);
                    let trimmed = tx.execute("DELETE FROM magicfs_changes WHERE seq <= $1", &[&min_applied]).await?;
                    tx.execute("UPDATE magicfs_volume SET trimmed = greatest(trimmed, $1) WHERE id = 1", &[&min_applied])
                        .await?;
                    let unsustained: Vec<u64> = tx
                        .query(
                            "SELECT o.k FROM magicfs_orphans o \
                             WHERE NOT EXISTS (SELECT 1 FROM magicfs_sustained s WHERE s.ino = o.k) ORDER BY o.k",
                            &[],
                        )
                        .await?
                        .iter()
                        .filter_map(|r| magicfs_store::keys::be_u64(&r.get::<_, Vec<u8>>(0)))
                        .collect();
                    tx.commit().await?;
                    Ok(Some(Housekeeping {
                        head: head as u64,
                        min_applied: min_applied as u64,
                        unsustained,
                        expired: expired.into_iter().map(|i| i as u64).collect(),
                        trimmed,
                    }))
                })
            })
            .map_err(pg_error)
    }

    fn next_id(&self, name: &str) -> StoreResult<u64> {
        let name = name.to_string();
        self.pg
            .run(|c| {
                let name = name.clone();
                Box::pin(async move {
                    c.query_one(
                        "INSERT INTO magicfs_counters (name, value) VALUES ($1, 1) \
                         ON CONFLICT (name) DO UPDATE SET value = magicfs_counters.value + 1 RETURNING value",
                        &[&name],
                    )
                    .await
                    .map(|r| r.get::<_, i64>(0) as u64)
                })
            })
            .map_err(pg_error)
    }

    fn end_session(&self) -> StoreResult<()> {
        let session = self.session as i64;
        self.pg
            .run(|c| {
                Box::pin(async move {
                    c.execute("DELETE FROM magicfs_sessions WHERE id = $1", &[&session]).await.map(|_| ())
                })
            })
            .map_err(pg_error)
    }
}
