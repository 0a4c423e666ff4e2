//! Claims of a volume in PostgreSQL (see `magicfs_store::claims`): one row
//! per held key in `magicfs_claims` (kind, key, holding session, lease
//! end). A claim is one statement: an insert that, on conflict, takes the
//! row over only when it is this session's, its lease ran out (database
//! time), or its session is gone; `RETURNING` says whether it did.

use crate::{pg_error, PgMeta};
use magicfs_pg::Migration;
use magicfs_store::{Claims, StoreResult};
use std::time::Duration;

/// The component name under which the schema steps are recorded.
pub(crate) const COMPONENT: &str = "claims";

/// The schema steps, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    name: "001-claims",
    sql: "
        CREATE TABLE IF NOT EXISTS magicfs_claims (
            kind text NOT NULL,
            key text NOT NULL,
            session bigint NOT NULL,
            until timestamptz NOT NULL,
            PRIMARY KEY (kind, key)
        );
    ",
}];

const CLAIM: &str = "
    INSERT INTO magicfs_claims AS c (kind, key, session, until)
    VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
    ON CONFLICT (kind, key) DO UPDATE SET session = EXCLUDED.session, until = EXCLUDED.until
    WHERE c.session = EXCLUDED.session OR c.until < now()
       OR NOT EXISTS (SELECT 1 FROM magicfs_sessions s WHERE s.id = c.session)
    RETURNING 1";

const FINISH: &str = "DELETE FROM magicfs_claims WHERE kind = $1 AND key = $2 AND session = $3";

impl Claims for PgMeta {
    fn claim(&self, kind: &str, key: &str, lease: Duration) -> StoreResult<bool> {
        let (kind, key, session) = (kind.to_string(), key.to_string(), self.session as i64);
        let ms = lease.as_millis().min(i64::MAX as u128) as f64;
        self.pg
            .run(|c| {
                let (kind, key) = (kind.clone(), key.clone());
                Box::pin(async move { Ok(c.query_opt(CLAIM, &[&kind, &key, &session, &ms]).await?.is_some()) })
            })
            .map_err(pg_error)
    }

    fn finish(&self, kind: &str, key: &str) -> StoreResult<()> {
        let (kind, key, session) = (kind.to_string(), key.to_string(), self.session as i64);
        self.pg
            .run(|c| {
                let (kind, key) = (kind.clone(), key.clone());
                Box::pin(async move { c.execute(FINISH, &[&kind, &key, &session]).await.map(|_| ()) })
            })
            .map_err(pg_error)
    }
}
