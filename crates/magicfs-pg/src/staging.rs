//! The statement that stages a small tail of a chunk segment (the tables
//! `magicfs_segments` and `magicfs_staged` of `magicfs-objects`' catalog).
//! It lives here because two crates run it: the catalog on its own, and the
//! cluster metadata engine inside the transaction of the batch that names
//! the tail's chunks (one transaction for a small file's data and its
//! metadata).

/// Stages `$4` (bytes) at offset `$3` of segment `$1` for writer `$2`.
///
/// - Segment open and owned by `$2`: the row is written (a row already at
///   that offset keeps the longer bytes: every row is a prefix of the same
///   immutable segment from its offset) and the segment's length and
///   heartbeat move on.
/// - Segment sealed or retired: nothing is written (its object holds every
///   byte put into it before the seal).
/// - Otherwise (adopted by another mount after a long silence, or unknown):
///   the statement fails (SQLSTATE 22P02), naming the segment, so the
///   transaction around it rolls back.
pub const STAGE: &str = "WITH s AS (
         UPDATE magicfs_segments SET len = GREATEST(len, $3 + length($4::bytea)::bigint), beat = now()
         WHERE id = $1 AND state = 0 AND owner = $2 RETURNING id),
     i AS (
         INSERT INTO magicfs_staged (segment, off, bytes) SELECT id, $3, $4::bytea FROM s
         ON CONFLICT (segment, off) DO UPDATE SET bytes = EXCLUDED.bytes
         WHERE length(EXCLUDED.bytes) > length(magicfs_staged.bytes)
         RETURNING 1)
     SELECT CASE WHEN x.mine THEN 1 WHEN x.sealed THEN 0
         -- Refers to x so the planner cannot evaluate it ahead of the test.
         ELSE ('segment ' || $1::bigint::text || ' is no longer open for this writer' || left(x.mine::text, 0))::int
         END
     FROM (SELECT EXISTS (SELECT 1 FROM s) AS mine,
                  EXISTS (SELECT 1 FROM magicfs_segments WHERE id = $1 AND state > 0) AS sealed) x";

/// SQLSTATE of [`STAGE`]'s refusal.
pub const STAGE_REFUSED: &str = "22P02";
