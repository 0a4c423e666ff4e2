//! The volume's tables in PostgreSQL and the statements over them.
//!
//! Each table of [`Table`] is `magicfs_<name> (k bytea PRIMARY KEY, v bytea)`:
//! `bytea` compares byte by byte, like redb's keys, so ordered scans and
//! the key encodings of `keys.rs` carry over unchanged. Beside them:
//! `magicfs_volume` (one row: the store URL, the change-log head and how far
//! the log was trimmed), `magicfs_changes` (every committed batch with its
//! sequence number), `magicfs_sessions` (mounts, with heartbeats and how far
//! each applied the log), `magicfs_sustained` (inodes a session keeps open
//! after they were unlinked) and `magicfs_counters`.

use magicfs_pg::Migration;
use magicfs_store::Table;

/// The component name under which the schema steps are recorded.
pub(crate) const COMPONENT: &str = "meta";

/// The schema steps, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    name: "001-volume",
    sql: "
        CREATE TABLE magicfs_volume (
            id smallint PRIMARY KEY CHECK (id = 1),
            store_url text NOT NULL,
            formatted_at timestamptz NOT NULL DEFAULT now(),
            head bigint NOT NULL DEFAULT 0,
            trimmed bigint NOT NULL DEFAULT 0
        );
        CREATE TABLE magicfs_meta (k bytea PRIMARY KEY, v bytea NOT NULL);
        CREATE TABLE magicfs_inodes (k bytea PRIMARY KEY, v bytea NOT NULL);
        CREATE TABLE magicfs_dirents (k bytea PRIMARY KEY, v bytea NOT NULL);
        CREATE TABLE magicfs_extents (k bytea PRIMARY KEY, v bytea NOT NULL);
        CREATE TABLE magicfs_xattrs (k bytea PRIMARY KEY, v bytea NOT NULL);
        CREATE TABLE magicfs_chunks (k bytea PRIMARY KEY, v bytea NOT NULL);
        CREATE TABLE magicfs_orphans (k bytea PRIMARY KEY, v bytea NOT NULL);
        CREATE TABLE magicfs_changes (
            seq bigint PRIMARY KEY,
            session bigint NOT NULL,
            token bigint NOT NULL,
            batch bytea NOT NULL
        );
        CREATE TABLE magicfs_sessions (
            id bigserial PRIMARY KEY,
            host text NOT NULL,
            pid integer NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat timestamptz NOT NULL DEFAULT now(),
            applied bigint NOT NULL
        );
        CREATE TABLE magicfs_sustained (
            session bigint NOT NULL REFERENCES magicfs_sessions (id) ON DELETE CASCADE,
            ino bytea NOT NULL,
            PRIMARY KEY (session, ino)
        );
        CREATE TABLE magicfs_counters (name text PRIMARY KEY, value bigint NOT NULL);
    ",
}];

/// The channel on which committed sequence numbers are announced.
pub(crate) const CHANNEL: &str = "magicfs_changes";

/// The advisory lock every mutation of the volume holds ("mfs-meta").
pub(crate) const WRITE_LOCK: i64 = 0x6d66_732d_6d65_7461;

/// The advisory lock of the housekeeper ("mfs-keep").
pub(crate) const HOUSEKEEPER_LOCK: i64 = 0x6d66_732d_6b65_6570;

/// The table holding `t`.
pub(crate) fn table(t: Table) -> String {
    format!("magicfs_{}", t.name())
}

/// Upserts many rows of `t` at once (`$1` keys, `$2` values).
pub(crate) fn upsert(t: Table) -> String {
    format!(
        "INSERT INTO {} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
        table(t)
    )
}

/// Deletes many rows of `t` at once (`$1` keys).
pub(crate) fn delete(t: Table) -> String {
    format!("DELETE FROM {} WHERE k = ANY($1::bytea[])", table(t))
}

/// Reads one row of `t` (`$1` key).
pub(crate) fn get(t: Table) -> String {
    format!("SELECT v FROM {} WHERE k = $1", table(t))
}

/// Every row of `t` in key order.
pub(crate) fn scan(t: Table) -> String {
    format!("SELECT k, v FROM {} ORDER BY k", table(t))
}

/// The changes after `$1`.
pub(crate) const CHANGES: &str = "SELECT seq, session, token, batch FROM magicfs_changes WHERE seq > $1 ORDER BY seq";

/// When the server started, in microseconds since the epoch: a server that
/// restarted may have lost its last asynchronous commits, so a mount that
/// sees another value loads the volume again.
pub(crate) const STARTED: &str = "(extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint";

/// How far the log was trimmed (`trimmed`), with the changes after `$1`
/// (`seq, session, token, batch`; NULLs when there are none), then the
/// server's start ([`STARTED`]).
pub(crate) fn changes_and_trimmed() -> String {
    format!(
        "SELECT v.trimmed, c.seq, c.session, c.token, c.batch, {STARTED} \
         FROM magicfs_volume v LEFT JOIN magicfs_changes c ON c.seq > $1 WHERE v.id = 1 ORDER BY c.seq"
    )
}
