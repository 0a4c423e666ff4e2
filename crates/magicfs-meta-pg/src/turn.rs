//! The write turn: one connection of the mount's own, holding the volume's
//! write lock from `begin` to `commit`.
//!
//! `begin` sends `BEGIN`, takes the advisory transaction lock, reads the
//! change-log head and the changes after the mount's position, all
//! pipelined: one round trip. `commit` writes the batch (one upsert and one
//! delete per touched table, over arrays), the chunk tail it stages, its
//! change-log entry, the new head and the notification, then `COMMIT`: one
//! round trip. The connection commits with `synchronous_commit = off`
//! (visible at once, durable at the next `sync`, see `PgMeta::sync`).

use crate::schema::{self, CHANGES, CHANNEL, STARTED, WRITE_LOCK};
use crate::{service_error, PgMeta};
use futures_util::future::{try_join4, try_join_all};
use magicfs_pg::tokio_postgres::types::ToSql;
use magicfs_pg::tokio_postgres::{self, Client, GenericClient, Statement};
use magicfs_store::{Batch, Change, StoreError, StoreResult, Table, Turn};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A connection with the turn's statements prepared.
pub(crate) struct TurnConn {
    client: Client,
    begin: Statement,
    lock: Statement,
    head: Statement,
    changes: Statement,
    upsert: Vec<Statement>,
    delete: Vec<Statement>,
    get: Vec<Statement>,
    record: Statement,
    advance: Statement,
    notify: Statement,
    commit: Statement,
    rollback: Statement,
    /// Fails (division by zero) unless the head is `$1` and the server
    /// started at `$2` (0: not known yet).
    check: Statement,
    /// Stages a chunk segment's small tail (`magicfs_pg::staging`),
    /// prepared when a batch first carries one (the catalog's tables are
    /// not there for a volume without an object store).
    stage: OnceLock<Statement>,
}

impl TurnConn {
    async fn connect(pg: &magicfs_pg::Pg) -> Result<TurnConn, tokio_postgres::Error> {
        let (client, conn) = pg.url().config().connect(tokio_postgres::NoTls).await?;
        pg.runtime().spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("metadata connection closed: {e}");
            }
        });
        let texts: Vec<String> = [
            "BEGIN".to_string(),
            format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})"),
            format!("SELECT head, trimmed, {STARTED} FROM magicfs_volume WHERE id = 1"),
            CHANGES.to_string(),
            "INSERT INTO magicfs_changes (seq, session, token, batch) VALUES ($1, $2, $3, $4)".to_string(),
            "UPDATE magicfs_volume SET head = $1 WHERE id = 1".to_string(),
            format!("SELECT pg_notify('{CHANNEL}', $1)"),
            "COMMIT".to_string(),
            "ROLLBACK".to_string(),
            format!("SELECT 1 / (CASE WHEN head = $1 AND ({STARTED} = $2 OR $2 = 0) THEN 1 ELSE 0 END) FROM magicfs_volume WHERE id = 1"),
        ]
        .into_iter()
        .chain(Table::ALL.iter().map(|t| schema::upsert(*t)))
        .chain(Table::ALL.iter().map(|t| schema::delete(*t)))
        .chain(Table::ALL.iter().map(|t| schema::get(*t)))
        .collect();
        let st = try_join_all(texts.iter().map(|t| client.prepare(t))).await?;
        // Turns commit without waiting for the server's disk: a commit is
        // visible to every mount at once, and `sync` (fsync) makes it
        // durable. A crash of the server may lose the last ones; every
        // mount then loads the volume again (see `check_started`).
        client.batch_execute("SET synchronous_commit = off").await?;
        // One statement per text, in order.
        let n = Table::ALL.len();
        let at = |i: usize| st[i].clone();
        Ok(TurnConn {
            begin: at(0),
            lock: at(1),
            head: at(2),
            changes: at(3),
            record: at(4),
            advance: at(5),
            notify: at(6),
            commit: at(7),
            rollback: at(8),
            check: at(9),
            upsert: (0..n).map(|i| at(10 + i)).collect(),
            delete: (0..n).map(|i| at(10 + n + i)).collect(),
            get: (0..n).map(|i| at(10 + 2 * n + i)).collect(),
            stage: OnceLock::new(),
            client,
        })
    }

    /// `BEGIN`, the lock, the head and the changes after `since`, in one
    /// round trip; also when the server started.
    async fn begin(&self, since: u64) -> Result<(u64, u64, i64, Vec<Change>), tokio_postgres::Error> {
        let since = since as i64;
        let (_, _, head, rows) = try_join4(
            self.client.execute(&self.begin, &[]),
            self.client.execute(&self.lock, &[]),
            self.client.query_one(&self.head, &[]),
            self.client.query(&self.changes, &[&since]),
        )
        .await?;
        let (h, t, started): (i64, i64, i64) = (head.get(0), head.get(1), head.get(2));
        let mut changes = Vec::with_capacity(rows.len());
        for r in rows {
            changes.push(crate::change_of(&r)?);
        }
        Ok((h as u64, t as u64, started, changes))
    }

    /// The statements of [`write_batch`].
    fn writes<'a>(&'a self, stage: Option<&'a Statement>) -> Writes<'a> {
        Writes {
            upsert: &self.upsert,
            delete: &self.delete,
            record: &self.record,
            advance: &self.advance,
            notify: &self.notify,
            stage,
        }
    }

    /// The staging statement when `batch` carries staged bytes.
    async fn stage_for(&self, batch: &Batch) -> Result<Option<&Statement>, tokio_postgres::Error> {
        if batch.staged.is_none() {
            return Ok(None);
        }
        if self.stage.get().is_none() {
            let st = self.client.prepare(magicfs_pg::staging::STAGE).await?;
            let _ = self.stage.set(st);
        }
        Ok(self.stage.get())
    }

    async fn rollback(&self) {
        if let Err(e) = self.client.execute(&self.rollback, &[]).await {
            log::debug!("rollback: {e}");
        }
    }
}

/// Keys to upsert (with values) and to delete, per table: the last
/// operation on a key wins, as when the batch is applied in order.
type Rows = Vec<(Table, Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>)>;

fn collapse(batch: &Batch) -> Rows {
    let mut last: BTreeMap<(Table, &[u8]), Option<&[u8]>> = BTreeMap::new();
    for op in &batch.ops {
        last.insert((op.table, &op.key), op.value.as_deref());
    }
    let mut out: Rows = Vec::new();
    for ((t, k), v) in last {
        if out.last().is_none_or(|(lt, ..)| *lt != t) {
            out.push((t, Vec::new(), Vec::new(), Vec::new()));
        }
        if let Some((_, keys, vals, dels)) = out.last_mut() {
            match v {
                Some(v) => {
                    keys.push(k.to_vec());
                    vals.push(v.to_vec());
                }
                None => dels.push(k.to_vec()),
            }
        }
    }
    out
}

/// The statements [`write_batch`] runs.
pub(crate) struct Writes<'a> {
    pub(crate) upsert: &'a [Statement],
    pub(crate) delete: &'a [Statement],
    pub(crate) record: &'a Statement,
    pub(crate) advance: &'a Statement,
    pub(crate) notify: &'a Statement,
    /// Needed when the batch carries staged bytes.
    pub(crate) stage: Option<&'a Statement>,
}

/// Writes a batch (with the chunk bytes it stages), its change-log entry
/// (`seq`) and the new head, and announces it, as applied by the session
/// `applied_by` already (0: none); the caller holds the write lock inside
/// a transaction.
pub(crate) async fn write_batch<C: GenericClient + Sync>(
    c: &C,
    w: Writes<'_>,
    (batch, seq, session, token): (&Batch, u64, u64, u64),
    applied_by: u64,
) -> Result<(), tokio_postgres::Error> {
    let Writes { upsert, delete, record, advance, notify, stage } = w;
    let rows = collapse(batch);
    let mut encoded = Vec::new();
    batch.encode_into(&mut encoded);
    let note = crate::note(seq, applied_by);
    let (seq, session, token) = (seq as i64, session as i64, token as i64);
    let staged = batch.staged.as_ref().map(|s| (s.segment as i64, s.owner as i64, s.offset as i64, &s.bytes[..]));
    let stage = match (&staged, stage) {
        (None, _) => None,
        (Some(_), Some(st)) => Some(st.clone()),
        (Some(_), None) => Some(c.prepare(magicfs_pg::staging::STAGE).await?),
    };
    let mut calls: Vec<(&Statement, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
    if let (Some((segment, owner, offset, bytes)), Some(st)) = (&staged, &stage) {
        calls.push((st, vec![segment, owner, offset, bytes]));
    }
    for (t, keys, vals, dels) in &rows {
        if !keys.is_empty() {
            calls.push((&upsert[*t as usize], vec![keys, vals]));
        }
        if !dels.is_empty() {
            calls.push((&delete[*t as usize], vec![dels]));
        }
    }
    calls.push((record, vec![&seq, &session, &token, &encoded]));
    calls.push((advance, vec![&seq]));
    let writes = try_join_all(calls.iter().map(|(st, p)| c.execute(*st, p)));
    futures_util::future::try_join(writes, c.query_one(notify, &[&note])).await?;
    Ok(())
}

/// A turn of a [`PgMeta`]: the connection, inside a transaction holding the lock.
pub(crate) struct PgTurn<'a> {
    engine: &'a PgMeta,
    conn: Option<TurnConn>,
    /// The sequence number this turn commits as.
    seq: u64,
}

impl PgMeta {
    /// A connection for a turn: the idle one, or a new one.
    async fn turn_conn(&self, idle: Option<TurnConn>) -> Result<TurnConn, tokio_postgres::Error> {
        match idle {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => TurnConn::connect(&self.pg).await,
        }
    }

    /// Runs `f` on the turn connection, retrying failures of the
    /// connection with backoff for the engine's retry window (the server
    /// down or restarting). `f` must only fail before anything committed
    /// when its error is transient.
    fn on_turn_conn<T>(
        &self,
        mut f: impl AsyncFnMut(&TurnConn) -> Result<T, tokio_postgres::Error>,
    ) -> StoreResult<(TurnConn, T)> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(50);
        let mut warned = false;
        loop {
            let idle = self.turns.lock().take();
            let attempt = self.pg.runtime().block_on(async {
                let conn = self.turn_conn(idle).await?;
                match f(&conn).await {
                    Ok(r) => Ok((conn, r)),
                    Err(e) => {
                        conn.rollback().await;
                        if !crate::transient(&e) {
                            *self.turns.lock() = Some(conn);
                        }
                        Err(e)
                    }
                }
            });
            match attempt {
                Ok(r) => {
                    if warned {
                        log::info!("{} answers again", self.pg.service());
                    }
                    return Ok(r);
                }
                Err(e) if crate::transient(&e) && start.elapsed() + pause < self.retry_for => {
                    if !warned {
                        log::warn!(
                            "{}: {}; retrying for up to {} s",
                            self.pg.service(),
                            crate::words(&e),
                            self.retry_for.as_secs()
                        );
                        warned = true;
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) if crate::transient(&e) => {
                    let err = format!(
                        "{} is unreachable (tried for {:.0} s): {}",
                        self.pg.service(),
                        start.elapsed().as_secs_f64(),
                        crate::words(&e)
                    );
                    log::error!("{err}");
                    return Err(StoreError::Service(err));
                }
                Err(e) => return Err(service_error(&self.pg, &e)),
            }
        }
    }

    /// Waits for the write lock and reads what changed.
    pub(crate) fn begin_turn(&self, since: u64) -> StoreResult<(Box<dyn Turn + '_>, Vec<Change>)> {
        let (conn, (head, trimmed, started, changes)) = self.on_turn_conn(async |c: &TurnConn| c.begin(since).await)?;
        let stale = match self.check_started(since, started) {
            Err(e) => Some(e),
            Ok(()) => (since < trimmed).then_some(StoreError::Stale { since, oldest: trimmed + 1 }),
        };
        if let Some(e) = stale {
            self.pg.runtime().block_on(conn.rollback());
            *self.turns.lock() = Some(conn);
            return Err(e);
        }
        Ok((Box::new(PgTurn { engine: self, conn: Some(conn), seq: head + 1 }), changes))
    }

    /// One round trip: `BEGIN`, the lock, a check that the head is still
    /// `since`, the batch, `COMMIT`. `None` when the head had moved (the
    /// check fails, so the transaction rolls back and nothing is written).
    pub(crate) fn commit_current(&self, since: u64, batch: &Batch, token: u64) -> StoreResult<Option<u64>> {
        let (seq, session) = (since + 1, self.session);
        // Connecting is retried; the pipeline itself runs once (a broken
        // connection leaves its outcome unknown: the caller finds out).
        let (conn, ()) = self.on_turn_conn(async |_: &TurnConn| Ok(()))?;
        let r = self.pg.runtime().block_on(async {
            let c = &conn;
            let (since, started) = (since as i64, self.started());
            let stage = c.stage_for(batch).await?;
            let (b, l, check, wrote, done) = futures_util::future::join5(
                c.client.execute(&c.begin, &[]),
                c.client.execute(&c.lock, &[]),
                c.client.execute(&c.check, &[&since, &started]),
                write_batch(&c.client, c.writes(stage), (batch, seq, session, token), session),
                c.client.execute(&c.commit, &[]),
            )
            .await;
            if let Err(e) = &check {
                if e.code() == Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO) {
                    c.rollback().await;
                    return Ok(None);
                }
            }
            match b.and(l).and(check).and(wrote).and(done) {
                Ok(_) => Ok(Some(seq)),
                Err(e) => {
                    c.rollback().await;
                    Err(e)
                }
            }
        });
        match r {
            Ok(v) => {
                *self.turns.lock() = Some(conn);
                Ok(v)
            }
            Err(e) => {
                if !crate::transient(&e) {
                    *self.turns.lock() = Some(conn);
                }
                Err(service_error(&self.pg, &e))
            }
        }
    }
}

impl Turn for PgTurn<'_> {
    fn commit(mut self: Box<Self>, batch: &Batch, token: u64) -> StoreResult<u64> {
        let Some(conn) = self.conn.take() else { return Err(StoreError::Service("turn already ended".into())) };
        let (e, seq) = (self.engine, self.seq);
        let session = e.session;
        let r = e.pg.runtime().block_on(async {
            let c = &conn;
            let wrote = match c.stage_for(batch).await {
                Ok(stage) => write_batch(&c.client, c.writes(stage), (batch, seq, session, token), session).await,
                Err(e) => Err(e),
            };
            match wrote {
                Ok(()) => c.client.execute(&c.commit, &[]).await.map(|_| ()),
                Err(err) => {
                    c.rollback().await;
                    Err(err)
                }
            }
        });
        match r {
            Ok(()) => {
                *e.turns.lock() = Some(conn);
                Ok(seq)
            }
            Err(err) => {
                if !crate::transient(&err) {
                    *e.turns.lock() = Some(conn);
                }
                Err(service_error(&e.pg, &err))
            }
        }
    }

    fn get(&mut self, t: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let Some(conn) = &self.conn else { return Err(StoreError::Service("turn already ended".into())) };
        let key = key.to_vec();
        self.engine
            .pg
            .runtime()
            .block_on(conn.client.query_opt(&conn.get[t as usize], &[&key]))
            .map(|r| r.map(|r| r.get::<_, Vec<u8>>(0)))
            .map_err(|e| service_error(&self.engine.pg, &e))
    }
}

impl Drop for PgTurn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.engine.pg.runtime().block_on(conn.rollback());
            if !conn.client.is_closed() {
                *self.engine.turns.lock() = Some(conn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_operation_on_a_key_wins() {
        let mut b = Batch::new();
        b.put(Table::Inodes, vec![1], vec![1]);
        b.del(Table::Inodes, vec![1]);
        b.del(Table::Inodes, vec![2]);
        b.put(Table::Inodes, vec![2], vec![2]);
        b.put(Table::Chunks, vec![3], vec![3]);
        let rows = collapse(&b);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], (Table::Inodes, vec![vec![2]], vec![vec![2]], vec![vec![1]]));
        assert_eq!(rows[1], (Table::Chunks, vec![vec![3]], vec![vec![3]], vec![]));
    }
}
