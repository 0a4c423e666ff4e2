//! The conformance suite every [`MetaEngine`] passes.
//!
//! Each engine's crate runs it with [`meta_engine_conformance!`](crate::meta_engine_conformance),
//! giving a [`Fixture`] that makes fresh volumes: this crate runs it over the
//! memory engine, a shared memory volume and the redb engine, and the
//! PostgreSQL engine's crate over a real server. Tests that need several
//! sessions or a reopen are skipped by fixtures that cannot give them.

use crate::{Batch, MetaEngine, StoreError, Table};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Makes the engines one conformance test runs against.
pub trait Fixture: Send + Sync {
    /// A session on a fresh, empty volume (the fixture keeps the volume for
    /// [`Fixture::another`] and [`Fixture::reopen`]).
    fn engine(&self) -> Arc<dyn MetaEngine>;
    /// Another session on the same volume, for shared engines.
    fn another(&self) -> Option<Arc<dyn MetaEngine>> {
        None
    }
    /// The volume opened again after every engine of it was closed and
    /// dropped, for engines that keep data across opens.
    fn reopen(&self) -> Option<Arc<dyn MetaEngine>> {
        None
    }
}

fn rows(e: &dyn MetaEngine, t: Table) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v = Vec::new();
    e.scan(t, &mut |k, val| v.push((k.to_vec(), val.to_vec()))).expect("scan");
    v
}

/// A row change: table, key, new value (`None`: delete).
type RowOp<'a> = (Table, &'a [u8], Option<&'a [u8]>);

fn batch(ops: &[RowOp<'_>]) -> Batch {
    let mut b = Batch::new();
    for (t, k, v) in ops {
        match v {
            Some(v) => b.put(*t, k.to_vec(), v.to_vec()),
            None => b.del(*t, k.to_vec()),
        }
    }
    b
}

/// Rows come back from `scan` and `get` as committed, in unsigned byte
/// order of their keys, and each table is separate.
pub fn rows_roundtrip_in_byte_order(f: &dyn Fixture) {
    let e = f.engine();
    let keys: [&[u8]; 5] = [&[0x80], &[0x00, 0xff], &[0x7f], &[0x00], &[0xff, 0xff, 0x00]];
    let mut b = Batch::new();
    for (i, k) in keys.iter().enumerate() {
        b.put(Table::Dirents, k.to_vec(), vec![i as u8; 3]);
    }
    b.put(Table::Xattrs, vec![1], b"x".to_vec());
    b.put(Table::Chunks, vec![9; 32], vec![0; 29]);
    e.commit(b).expect("commit");
    let got: Vec<Vec<u8>> = rows(&*e, Table::Dirents).into_iter().map(|(k, _)| k).collect();
    let mut want: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    want.sort();
    assert_eq!(got, want, "keys in unsigned byte order");
    assert_eq!(e.get(Table::Dirents, &[0x7f]).expect("get"), Some(vec![2; 3]));
    assert_eq!(e.get(Table::Dirents, &[0x7e]).expect("get"), None);
    assert_eq!(e.get(Table::Xattrs, &[0x7f]).expect("get"), None, "tables are separate");
    assert_eq!(rows(&*e, Table::Xattrs), vec![(vec![1], b"x".to_vec())]);
    assert!(rows(&*e, Table::Extents).is_empty());
}

/// A batch applies in order: the last operation on a key wins, deletes
/// remove, empty values are values, large values survive whole.
pub fn batches_apply_in_order(f: &dyn Fixture) {
    let e = f.engine();
    let big = vec![0xa5u8; 300_000];
    e.commit(batch(&[
        (Table::Inodes, b"a", Some(b"1")),
        (Table::Inodes, b"a", None),
        (Table::Inodes, b"b", None),
        (Table::Inodes, b"b", Some(b"2")),
        (Table::Inodes, b"c", Some(b"3")),
        (Table::Inodes, b"c", Some(b"33")),
        (Table::Orphans, b"o", Some(b"")),
        (Table::Extents, b"big", Some(&big)),
    ]))
    .expect("commit");
    e.commit(batch(&[(Table::Inodes, b"c", None), (Table::Inodes, b"d", Some(b"4"))])).expect("commit");
    assert_eq!(rows(&*e, Table::Inodes), vec![(b"b".to_vec(), b"2".to_vec()), (b"d".to_vec(), b"4".to_vec())]);
    assert_eq!(e.get(Table::Orphans, b"o").expect("get"), Some(Vec::new()));
    assert_eq!(e.get(Table::Extents, b"big").expect("get").map(|v| v.len()), Some(big.len()));
    e.commit(Batch::new()).expect("an empty batch commits");
}

/// `snapshot` gives every table in [`Table::ALL`] order with its rows.
pub fn snapshot_lists_every_table(f: &dyn Fixture) {
    let e = f.engine();
    let mut b = Batch::new();
    for t in Table::ALL.iter().rev() {
        b.put(*t, vec![*t as u8, 2], vec![1]);
        b.put(*t, vec![*t as u8, 1], vec![2]);
    }
    e.commit(b).expect("commit");
    let mut seen = Vec::new();
    // Engines may keep rows of their own in `meta` (the redb image's log position).
    e.snapshot(&mut |t, k, _| {
        if k.len() == 2 && k[0] == t as u8 {
            seen.push((t, k.to_vec()))
        }
    })
    .expect("snapshot");
    let want: Vec<(Table, Vec<u8>)> =
        Table::ALL.iter().flat_map(|t| [(*t, vec![*t as u8, 1]), (*t, vec![*t as u8, 2])]).collect();
    assert_eq!(seen, want);
}

/// What was committed is there after closing and opening the volume again.
pub fn commits_survive_reopen(f: &dyn Fixture) {
    let e = f.engine();
    e.commit(batch(&[(Table::Inodes, b"k", Some(b"v")), (Table::Meta, b"next_ino", Some(&[7; 8]))])).expect("commit");
    e.commit(batch(&[(Table::Dirents, b"d", Some(b"x"))])).expect("commit");
    e.close().expect("close");
    drop(e);
    let Some(e) = f.reopen() else { return };
    assert_eq!(e.get(Table::Inodes, b"k").expect("get"), Some(b"v".to_vec()));
    assert_eq!(e.get(Table::Dirents, b"d").expect("get"), Some(b"x".to_vec()));
    assert_eq!(e.get(Table::Meta, b"next_ino").expect("get"), Some(vec![7; 8]));
}

/// A turn's batch reaches the other sessions through the change log, with
/// its sequence number, session and token; a dropped turn leaves nothing.
pub fn turns_publish_changes(f: &dyn Fixture) {
    let a = f.engine();
    let Some(b) = f.another() else { return };
    let (sa, sb) = (a.shared().expect("shared"), b.shared().expect("shared"));
    assert_ne!(sa.session(), sb.session());
    let (turn, before) = sa.begin(0).expect("begin");
    let base = before.last().map_or(0, |c| c.seq);
    let seq = turn.commit(&batch(&[(Table::Inodes, b"1", Some(b"one"))]), 41).expect("commit");
    assert_eq!(seq, base + 1);
    let (turn, _) = sa.begin(seq).expect("begin");
    drop(turn);
    let (turn, seen) = sb.begin(base).expect("begin");
    assert_eq!(seen.len(), 1, "the dropped turn left no change");
    assert_eq!((seen[0].seq, seen[0].session, seen[0].token), (seq, sa.session(), 41));
    assert_eq!(seen[0].batch, batch(&[(Table::Inodes, b"1", Some(b"one"))]));
    let seq2 =
        turn.commit(&batch(&[(Table::Inodes, b"1", None), (Table::Inodes, b"2", Some(b"two"))]), 7).expect("commit");
    assert_eq!(seq2, seq + 1);
    let after = sa.changes(seq).expect("changes");
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].seq, after[0].session), (seq2, sb.session()));
    assert!(sa.changes(seq2).expect("changes").is_empty());
    assert_eq!(a.get(Table::Inodes, b"1").expect("get"), None);
    assert_eq!(a.get(Table::Inodes, b"2").expect("get"), Some(b"two".to_vec()));
    let head = a.snapshot(&mut |_, _, _| {}).expect("snapshot");
    assert_eq!(head, seq2, "a snapshot says which change it includes");
}

/// A mount that is current commits in one go; one that missed a change
/// writes nothing and learns it.
pub fn current_mounts_commit_at_once(f: &dyn Fixture) {
    let a = f.engine();
    let Some(b) = f.another() else { return };
    let (sa, sb) = (a.shared().expect("shared"), b.shared().expect("shared"));
    let head = sa.changes(0).expect("changes").last().map_or(0, |c| c.seq);
    let s1 = sa.commit_if_current(head, &batch(&[(Table::Inodes, b"q", Some(b"1"))]), 5).expect("commit");
    assert_eq!(s1, Some(head + 1));
    // b has not applied s1: its attempt writes nothing.
    let r = sb.commit_if_current(head, &batch(&[(Table::Inodes, b"q", Some(b"2"))]), 6).expect("commit");
    assert_eq!(r, None);
    assert_eq!(b.get(Table::Inodes, b"q").expect("get"), Some(b"1".to_vec()));
    let seen = sb.changes(head).expect("changes");
    assert_eq!((seen.len(), seen[0].token, seen[0].session), (1, 5, sa.session()));
    // Once current, it commits.
    let s2 = sb.commit_if_current(head + 1, &batch(&[(Table::Inodes, b"q", Some(b"2"))]), 6).expect("commit");
    assert_eq!(s2, Some(head + 2));
    assert_eq!(a.get(Table::Inodes, b"q").expect("get"), Some(b"2".to_vec()));
    // The lock is free again.
    let (turn, changes) = sa.begin(head + 1).expect("begin");
    assert_eq!(changes.len(), 1);
    drop(turn);
}

/// Turns exclude each other: a second `begin` waits for the first turn to
/// end, and then sees its change.
pub fn turns_exclude_each_other(f: &dyn Fixture) {
    let a = f.engine();
    let Some(b) = f.another() else { return };
    let sa = a.shared().expect("shared");
    let (turn, _) = sa.begin(0).expect("begin");
    let waiting = Arc::new(AtomicBool::new(true));
    let (w, b2) = (waiting.clone(), b.clone());
    let t = std::thread::spawn(move || {
        let sb = b2.shared().expect("shared");
        let (turn, seen) = sb.begin(0).expect("begin");
        let got = w.load(Ordering::SeqCst);
        drop(turn);
        (got, seen.iter().any(|c| c.token == 99))
    });
    std::thread::sleep(Duration::from_millis(300));
    waiting.store(false, Ordering::SeqCst);
    turn.commit(&batch(&[(Table::Xattrs, b"k", Some(b"v"))]), 99).expect("commit");
    let (entered_while_held, saw) = t.join().expect("join");
    assert!(!entered_while_held, "the second turn began while the first held the lock");
    assert!(saw, "the second turn did not see the first one's change");
}

/// `wait_for_change` returns soon after another session commits, and times
/// out when nothing happens.
pub fn waiting_wakes_on_change(f: &dyn Fixture) {
    let a = f.engine();
    let Some(b) = f.another() else { return };
    let sa = a.shared().expect("shared");
    let head = sa.changes(0).expect("changes").last().map_or(0, |c| c.seq);
    // An engine may return early once after it starts listening (it cannot
    // know what it missed before).
    sa.wait_for_change(head, Duration::from_millis(500));
    let t0 = Instant::now();
    sa.wait_for_change(head, Duration::from_millis(300));
    assert!(t0.elapsed() >= Duration::from_millis(250), "returned without a change");
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        b.commit(batch(&[(Table::Inodes, b"w", Some(b"1"))])).expect("commit");
    });
    let t0 = Instant::now();
    let mut seen = Vec::new();
    while seen.is_empty() && t0.elapsed() < Duration::from_secs(5) {
        sa.wait_for_change(head, Duration::from_secs(5));
        seen = sa.changes(head).expect("changes");
    }
    t.join().expect("join");
    assert_eq!(seen.len(), 1);
    assert!(t0.elapsed() < Duration::from_secs(2), "woke after {:?}", t0.elapsed());
}

/// Housekeeping expires silent sessions with what they held, lists the
/// orphans nobody holds, and trims the log below what every live session
/// applied; a session behind the trimmed log gets `Stale`.
pub fn housekeeping_expires_holds_and_trims(f: &dyn Fixture) {
    let a = f.engine();
    let Some(b) = f.another() else { return };
    let (sa, sb) = (a.shared().expect("shared"), b.shared().expect("shared"));
    let (o1, o2) = (crate::keys::ino_key(100), crate::keys::ino_key(101));
    let (turn, _) = sa.begin(0).expect("begin");
    let s1 = turn.commit(&batch(&[(Table::Orphans, &o1, Some(b"")), (Table::Orphans, &o2, Some(b""))]), 1).expect("c");
    sb.heartbeat(s1, &[101], &[]).expect("heartbeat");
    sa.heartbeat(s1, &[], &[]).expect("heartbeat");
    let h = sa.housekeeping(Duration::from_secs(60)).expect("housekeeping").expect("not busy");
    assert_eq!(h.unsustained, vec![100], "101 is held by the other session");
    assert!(h.expired.is_empty());
    assert_eq!((h.head, h.min_applied), (s1, s1));
    // More changes; b falls behind, then stops heartbeating.
    let (turn, _) = sa.begin(s1).expect("begin");
    let s2 = turn.commit(&batch(&[(Table::Inodes, b"x", Some(b"1"))]), 2).expect("commit");
    sa.heartbeat(s2, &[], &[]).expect("heartbeat");
    let h = sa.housekeeping(Duration::from_secs(60)).expect("housekeeping").expect("not busy");
    assert_eq!(h.min_applied, s1, "b has applied only s1");
    assert!(sb.changes(s1).is_ok());
    std::thread::sleep(Duration::from_millis(1200));
    sa.heartbeat(s2, &[], &[]).expect("heartbeat");
    let h = sa.housekeeping(Duration::from_secs(1)).expect("housekeeping").expect("not busy");
    assert_eq!(h.expired, vec![sb.session()]);
    let mut un = h.unsustained.clone();
    un.sort_unstable();
    assert_eq!(un, vec![100, 101], "what the expired session held is released");
    assert_eq!(h.min_applied, s2);
    assert!(matches!(sb.changes(0), Err(StoreError::Stale { .. })), "a reader behind the trimmed log is told");
    assert!(matches!(sb.heartbeat(s2, &[], &[]), Err(StoreError::SessionExpired(_))));
    assert!(sa.changes(s2).expect("changes").is_empty());
}

/// Counters hand out distinct, increasing numbers across sessions.
pub fn ids_are_unique(f: &dyn Fixture) {
    let a = f.engine();
    let Some(b) = f.another() else { return };
    let (sa, sb) = (a.shared().expect("shared"), b.shared().expect("shared"));
    let mut seen = std::collections::BTreeSet::new();
    let mut last = 0;
    for i in 0..20 {
        let id = if i % 2 == 0 { sa.next_id("pack") } else { sb.next_id("pack") }.expect("id");
        assert!(id > last && seen.insert(id));
        last = id;
    }
    assert!(sa.next_id("other").expect("id") >= 1);
}

/// Claims: a store of one daemon always grants. On a shared volume one
/// session holds a key at a time (racing sessions: exactly one wins), renews
/// it by claiming again, and frees it with `finish`; a lapsed lease or an
/// ended session lets another session take it; kinds are separate.
pub fn claims_grant_one_session_at_a_time(f: &dyn Fixture) {
    use crate::claims::{claim, finish};
    let long = Duration::from_secs(60);
    let a = f.engine();
    let Some(b) = f.another() else {
        assert!(claim(&*a, "chat", "s1", long).expect("claim"));
        assert!(claim(&*a, "chat", "s1", long).expect("claim"), "a store of one daemon always grants");
        finish(&*a, "chat", "s1").expect("finish");
        return;
    };
    assert!(claim(&*a, "chat", "s1", long).expect("claim"));
    assert!(!claim(&*b, "chat", "s1", long).expect("claim"), "held by the other session");
    assert!(claim(&*a, "chat", "s1", long).expect("claim"), "the holder renews");
    assert!(claim(&*b, "gen", "s1", long).expect("claim"), "kinds are separate");
    finish(&*b, "chat", "s1").expect("finish");
    assert!(!claim(&*b, "chat", "s1", long).expect("claim"), "only the holder finishes its claim");
    finish(&*a, "chat", "s1").expect("finish");
    assert!(claim(&*b, "chat", "s1", long).expect("claim"), "finished: free at once");
    assert!(!claim(&*a, "chat", "s1", long).expect("claim"));

    // A lease that ran out lapses.
    assert!(claim(&*a, "chat", "s2", Duration::from_millis(1)).expect("claim"));
    std::thread::sleep(Duration::from_millis(50));
    assert!(claim(&*b, "chat", "s2", long).expect("claim"), "a lapsed lease is taken over");
    assert!(!claim(&*a, "chat", "s2", long).expect("claim"));

    // A session that ended holds nothing.
    let c = f.another().expect("a third session");
    assert!(claim(&*c, "chat", "s3", long).expect("claim"));
    assert!(!claim(&*a, "chat", "s3", long).expect("claim"));
    c.shared().expect("shared").end_session().expect("end");
    assert!(claim(&*a, "chat", "s3", long).expect("claim"), "the holder's session is gone");

    // Sessions racing for one key: exactly one wins (on one or more of its threads: it renews).
    let won = [std::sync::atomic::AtomicUsize::new(0), std::sync::atomic::AtomicUsize::new(0)];
    std::thread::scope(|s| {
        for i in 0..8 {
            let (e, won) = (if i % 2 == 0 { a.clone() } else { b.clone() }, &won[i % 2]);
            s.spawn(move || {
                if claim(&*e, "chat", "race", long).expect("claim") {
                    won.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    let (wa, wb) = (won[0].load(Ordering::SeqCst), won[1].load(Ordering::SeqCst));
    assert!((wa > 0) != (wb > 0), "one session holds the key (threads won: {wa} and {wb})");
}

/// Defines one `#[test]` per conformance test for the fixture that `$make`
/// (an expression of a type implementing [`Fixture`]) builds; `$guard` is
/// evaluated first and, when false, the test returns at once (a service
/// that is not configured).
#[macro_export]
macro_rules! meta_engine_conformance {
    ($make:expr) => {
        $crate::meta_engine_conformance!(true, $make);
    };
    ($guard:expr, $make:expr) => {
        $crate::meta_engine_conformance!(@tests $guard, $make;
            rows_roundtrip_in_byte_order, batches_apply_in_order, snapshot_lists_every_table,
            commits_survive_reopen, turns_publish_changes, current_mounts_commit_at_once, turns_exclude_each_other,
            waiting_wakes_on_change, housekeeping_expires_holds_and_trims, ids_are_unique,
            claims_grant_one_session_at_a_time);
    };
    (@tests $guard:expr, $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                if !$guard {
                    return;
                }
                let f = $make;
                $crate::conformance::$name(&f);
            }
        )*
    };
}
