//! The segment catalog in PostgreSQL, shared by every mount of a volume
//! (tables `magicfs_segments`, `magicfs_staged`, sequence
//! `magicfs_segment_ids`, created by migrations of component `objects`).
//! Times are the database's (`now()`), so mounts' clocks need not agree.

use crate::catalog::{Catalog, SegInfo, SegState};
use crate::error::{ObjectsError, ObjectsResult};
use bytes::Bytes;
use magicfs_pg::{Migration, Pg, PgError};
use std::time::Duration;

const MIGRATIONS: &[Migration] = &[Migration {
    name: "001-segments",
    sql: "CREATE SEQUENCE magicfs_segment_ids MINVALUE 1 MAXVALUE 4294967295;
          CREATE TABLE magicfs_segments (
              id bigint PRIMARY KEY,
              state smallint NOT NULL,
              owner bigint NOT NULL,
              len bigint NOT NULL DEFAULT 0,
              beat timestamptz NOT NULL DEFAULT now(),
              changed timestamptz NOT NULL DEFAULT now());
          CREATE INDEX magicfs_segments_state ON magicfs_segments (state);
          CREATE TABLE magicfs_staged (
              segment bigint NOT NULL REFERENCES magicfs_segments (id) ON DELETE CASCADE,
              off bigint NOT NULL,
              bytes bytea NOT NULL,
              PRIMARY KEY (segment, off));",
}];

/// `magicfs_segments.state`: 0 open, 1 sealed, 2 retired.
const OPEN: i16 = 0;
const SEALED: i16 = 1;

/// The catalog of a volume whose metadata is in PostgreSQL.
pub struct PgCatalog {
    pg: Pg,
}

fn fail(e: PgError) -> ObjectsError {
    ObjectsError::Catalog(e.to_string())
}

fn state_of(state: i16, len: i64) -> SegState {
    match state {
        OPEN => SegState::Open,
        SEALED => SegState::Sealed(len as u64),
        _ => SegState::Retired(len as u64),
    }
}

impl PgCatalog {
    /// The catalog in `pg`'s database, its tables created if missing.
    pub fn open(pg: Pg) -> ObjectsResult<PgCatalog> {
        pg.migrate("objects", MIGRATIONS).map_err(fail)?;
        Ok(PgCatalog { pg })
    }
}

impl Catalog for PgCatalog {
    fn create(&self, owner: u64) -> ObjectsResult<u32> {
        let owner = owner as i64;
        let id: i64 = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    let r = c
                        .query_one(
                            "INSERT INTO magicfs_segments (id, state, owner)
                             VALUES (nextval('magicfs_segment_ids'), 0, $1) RETURNING id",
                            &[&owner],
                        )
                        .await?;
                    Ok(r.get(0))
                })
            })
            .map_err(fail)?;
        u32::try_from(id).map_err(|_| ObjectsError::Catalog("segment ids exhausted".into()))
    }

    fn stage(&self, id: u32, owner: u64, offset: u64, bytes: &[u8]) -> ObjectsResult<()> {
        let (id, owner, off) = (id as i64, owner as i64, offset as i64);
        let bytes = Bytes::copy_from_slice(bytes);
        let r = self.pg.run(|c| {
            let bytes = bytes.clone();
            Box::pin(async move {
                let bytes: &[u8] = &bytes;
                // One round trip; idempotent when retried (same row).
                let st = c.prepare_cached(magicfs_pg::staging::STAGE).await?;
                c.query_one(&st, &[&id, &owner, &off, &bytes]).await.map(|r| r.get::<_, i32>(0))
            })
        });
        match r {
            Ok(1) => Ok(()),
            Ok(_) => Err(ObjectsError::Catalog(format!("segment {id} is sealed; it takes no more rows"))),
            Err(PgError::Query { code: Some(c), .. }) if c == magicfs_pg::staging::STAGE_REFUSED => {
                Err(ObjectsError::Catalog(format!(
                    "segment {id} is no longer open for this writer (another mount sealed it after a long silence)"
                )))
            }
            Err(e) => Err(fail(e)),
        }
    }

    fn seal(&self, id: u32, len: u64) -> ObjectsResult<()> {
        let (id, len) = (id as i64, len as i64);
        self.pg
            .run(|c| {
                Box::pin(async move {
                    c.execute(
                        "WITH d AS (DELETE FROM magicfs_staged WHERE segment = $1)
                         UPDATE magicfs_segments SET state = 1, len = $2, changed = now() WHERE id = $1 AND state = 0",
                        &[&id, &len],
                    )
                    .await
                })
            })
            .map_err(fail)?;
        Ok(())
    }

    fn state(&self, id: u32) -> ObjectsResult<SegState> {
        let id = id as i64;
        let r = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    let r = c.query_opt("SELECT state, len FROM magicfs_segments WHERE id = $1", &[&id]).await?;
                    Ok(r.map(|r| (r.get::<_, i16>(0), r.get::<_, i64>(1))))
                })
            })
            .map_err(fail)?;
        Ok(r.map_or(SegState::Unknown, |(s, l)| state_of(s, l)))
    }

    fn staged(&self, id: u32, offset: u64, len: u32) -> ObjectsResult<Option<Bytes>> {
        let (id, off, len) = (id as i64, offset as i64, len as i64);
        let r: Option<Vec<u8>> = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    let r = c
                        .query_opt(
                            "SELECT substring(bytes FROM ($2::bigint - off + 1)::int FOR ($3::bigint)::int) FROM magicfs_staged
                             WHERE segment = $1 AND off <= $2::bigint AND off + length(bytes) >= $2::bigint + $3::bigint
                             ORDER BY off DESC LIMIT 1",
                            &[&id, &off, &len],
                        )
                        .await?;
                    Ok(r.map(|r| r.get(0)))
                })
            })
            .map_err(fail)?;
        Ok(r.map(Bytes::from))
    }

    fn staged_rows(&self, id: u32) -> ObjectsResult<Vec<(u64, Bytes)>> {
        let id = id as i64;
        let rows: Vec<(i64, Vec<u8>)> = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    let rows = c
                        .query("SELECT off, bytes FROM magicfs_staged WHERE segment = $1 ORDER BY off", &[&id])
                        .await?;
                    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
                })
            })
            .map_err(fail)?;
        Ok(rows.into_iter().map(|(o, b)| (o as u64, Bytes::from(b))).collect())
    }

    fn heartbeat(&self, owner: u64, ids: &[u32]) -> ObjectsResult<()> {
        let owner = owner as i64;
        let ids: Vec<i64> = ids.iter().map(|i| *i as i64).collect();
        self.pg
            .run(|c| {
                let ids = ids.clone();
                Box::pin(async move {
                    c.execute(
                        "UPDATE magicfs_segments SET beat = now() WHERE owner = $1 AND id = ANY($2) AND state = 0",
                        &[&owner, &ids],
                    )
                    .await
                })
            })
            .map_err(fail)?;
        Ok(())
    }

    fn adopt(&self, owner: u64, idle: Duration) -> ObjectsResult<Vec<u32>> {
        let (owner, idle) = (owner as i64, idle.as_secs_f64());
        let ids: Vec<i64> = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    let rows = c
                        .query(
                            "UPDATE magicfs_segments SET owner = $1, beat = now()
                             WHERE state = 0 AND owner <> $1 AND beat < now() - make_interval(secs => $2)
                             RETURNING id",
                            &[&owner, &idle],
                        )
                        .await?;
                    Ok(rows.iter().map(|r| r.get(0)).collect())
                })
            })
            .map_err(fail)?;
        let mut v: Vec<u32> = ids.into_iter().map(|i| i as u32).collect();
        v.sort_unstable();
        Ok(v)
    }

    fn list(&self) -> ObjectsResult<Vec<SegInfo>> {
        let rows: Vec<(i64, i16, i64, f64)> = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    let rows = c
                        .query(
                            "SELECT id, state, len, extract(epoch FROM now() - changed)::float8
                             FROM magicfs_segments ORDER BY id",
                            &[],
                        )
                        .await?;
                    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
                })
            })
            .map_err(fail)?;
        Ok(rows
            .into_iter()
            .map(|(id, s, len, age)| SegInfo {
                id: id as u32,
                state: state_of(s, len),
                len: len as u64,
                age: Duration::from_secs_f64(age.max(0.0)),
            })
            .collect())
    }

    fn retire(&self, id: u32) -> ObjectsResult<()> {
        let id = id as i64;
        let n = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    c.execute(
                        "UPDATE magicfs_segments SET state = 2, changed = now() WHERE id = $1 AND state = 1",
                        &[&id],
                    )
                    .await
                })
            })
            .map_err(fail)?;
        if n == 0 {
            return Err(ObjectsError::Catalog(format!("segment {id} is not sealed; only sealed segments are retired")));
        }
        Ok(())
    }

    fn expired(&self, grace: Duration) -> ObjectsResult<Vec<u32>> {
        let grace = grace.as_secs_f64();
        let ids: Vec<i64> = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    let rows = c
                        .query(
                            "SELECT id FROM magicfs_segments
                             WHERE state = 2 AND changed <= now() - make_interval(secs => $1) ORDER BY id",
                            &[&grace],
                        )
                        .await?;
                    Ok(rows.iter().map(|r| r.get(0)).collect())
                })
            })
            .map_err(fail)?;
        Ok(ids.into_iter().map(|i| i as u32).collect())
    }

    fn forget(&self, id: u32) -> ObjectsResult<()> {
        let id = id as i64;
        self.pg
            .run(|c| Box::pin(async move { c.execute("DELETE FROM magicfs_segments WHERE id = $1", &[&id]).await }))
            .map_err(fail)?;
        Ok(())
    }
}
