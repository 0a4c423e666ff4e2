//! The conformance suite of [`IndexStore`]: every implementation runs
//! these cases, through [`store_conformance!`](crate::store_conformance),
//! which makes one test per case for a [`Harness`] of that implementation.

use crate::records::DocRecord;
use crate::store::{hex, Hash, IndexStore};
use magicfs_embed::DIM;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Opens stores of one implementation for the suite.
pub trait Harness {
    /// A fresh, empty store.
    fn fresh(&self) -> Arc<dyn IndexStore>;
    /// Another handle on the data of `store`, as after a restart (`None`
    /// when the implementation keeps nothing: memory).
    fn reopen(&self, store: &Arc<dyn IndexStore>) -> Option<Arc<dyn IndexStore>>;
    /// True when several mounts share the data (claims then decide who indexes).
    fn shared(&self) -> bool;
}

/// Model and chunker of the suite's records.
pub const MODEL: &str = "conformance-model";
/// See [`MODEL`].
pub const CHUNKER: &str = "conformance-chunker";

/// A normalised vector pointing mostly along axis `i`, a little along `j`.
pub fn axis(i: usize, j: usize, tilt: f32) -> Vec<f32> {
    let mut v = vec![0f32; DIM];
    v[i % DIM] = 1.0;
    v[j % DIM] += tilt;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn hash_of(text: &str) -> Hash {
    *blake3::hash(text.as_bytes()).as_bytes()
}

/// A record of `texts` made with `model`.
pub fn record(texts: &[&str], model: &str) -> DocRecord {
    DocRecord {
        model: model.into(),
        chunker: CHUNKER.into(),
        size: texts.iter().map(|t| t.len() as u64).sum(),
        mtime_ns: 7,
        skipped: None,
        hashes: texts.iter().map(|t| hex(&hash_of(t))).collect(),
        texts: texts.iter().map(|t| t.to_string()).collect(),
        name: "doc.txt".into(),
    }
}

fn put(s: &dyn IndexStore, key: &str, passages: &[(&str, Vec<f32>)]) {
    let texts: Vec<&str> = passages.iter().map(|p| p.0).collect();
    let vectors: Vec<f32> = passages.iter().flat_map(|p| p.1.clone()).collect();
    s.put(key, &record(&texts, MODEL), &vectors).unwrap();
}

fn keys(v: &[crate::vectors::Scored]) -> Vec<&str> {
    v.iter().map(|s| s.key.as_str()).collect()
}

/// Documents rank by their best passage; `k` and `min` limit the answer.
pub fn nearest_ranks_documents_by_their_best_passage(h: &dyn Harness) {
    let s = h.fresh();
    put(&*s, "m/1", &[("one a", axis(0, 1, 0.0)), ("one b", axis(1, 0, 0.0))]);
    put(&*s, "m/2", &[("two", axis(2, 1, 0.5))]);
    put(&*s, "h/x/3", &[("three", axis(3, 0, 0.0))]);
    let q = axis(1, 2, 0.3);
    let r = s.nearest(&q, 10, -1.0).unwrap();
    assert_eq!(keys(&r)[..2], ["m/1", "m/2"]);
    assert_eq!(r[0].passage, 1, "the best passage of m/1 is its second");
    assert!((r[0].score - q[1]).abs() < 1e-3, "cosine of the best passage: {}", r[0].score);
    assert!(r.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(s.nearest(&q, 1, -1.0).unwrap().len(), 1);
    let above: Vec<_> = s.nearest(&q, 10, 0.8).unwrap();
    assert_eq!(keys(&above), ["m/1"]);
    assert_eq!(s.counts(), (3, 4));
}

/// Writing a key again replaces all of its passages.
pub fn put_replaces_a_document(h: &dyn Harness) {
    let s = h.fresh();
    put(&*s, "m/1", &[("old a", axis(0, 0, 0.0)), ("old b", axis(1, 1, 0.0))]);
    put(&*s, "m/1", &[("new", axis(2, 2, 0.0))]);
    assert!(s.nearest(&axis(0, 0, 0.0), 10, 0.5).unwrap().is_empty(), "old passages are gone");
    let r = s.nearest(&axis(2, 2, 0.0), 10, 0.5).unwrap();
    assert_eq!((keys(&r), r[0].passage), (vec!["m/1"], 0));
    assert_eq!(s.texts("m/1").unwrap(), Some(vec!["new".to_string()]));
    assert_eq!(s.counts(), (1, 1));
}

/// Removed documents are gone from every answer; unknown keys are ignored.
pub fn remove_forgets_documents(h: &dyn Harness) {
    let s = h.fresh();
    put(&*s, "m/1", &[("a", axis(0, 0, 0.0))]);
    put(&*s, "m/2", &[("b", axis(0, 1, 0.1))]);
    s.remove(&["m/1".into(), "m/404".into()]).unwrap();
    assert_eq!(keys(&s.nearest(&axis(0, 0, 0.0), 10, -1.0).unwrap()), ["m/2"]);
    assert_eq!(s.texts("m/1").unwrap(), None);
    assert!(s.vectors("m/1").unwrap().is_empty());
    assert!(s.best_of(&["m/1".into()], &axis(0, 0, 0.0)).unwrap().is_empty());
    assert_eq!(s.counts(), (1, 1));
}

/// A record without passages (a skipped file) is stored but never found.
pub fn records_without_passages_are_kept_but_not_found(h: &dyn Harness) {
    let s = h.fresh();
    let mut rec = record(&[], MODEL);
    rec.skipped = Some(crate::extract::Skip::Binary);
    s.put("m/9", &rec, &[]).unwrap();
    put(&*s, "m/1", &[("a", axis(0, 0, 0.0))]);
    assert_eq!(keys(&s.nearest(&axis(0, 0, 0.0), 10, -1.0).unwrap()), ["m/1"]);
    assert_eq!(s.texts("m/9").unwrap(), Some(vec![]));
    if let Some(again) = h.reopen(&s) {
        let mut seen = Vec::new();
        again.load(MODEL, CHUNKER, &mut |k, r, _| seen.push((k.to_string(), r.skipped))).unwrap();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, [("m/1".to_string(), None), ("m/9".to_string(), Some(crate::extract::Skip::Binary))]);
    }
}

/// Vectors are handed back by passage hash, texts in passage order.
pub fn texts_and_vectors_come_back(h: &dyn Harness) {
    let s = h.fresh();
    put(&*s, "m/1", &[("first", axis(4, 5, 0.2)), ("second", axis(6, 7, 0.3))]);
    assert_eq!(s.texts("m/1").unwrap(), Some(vec!["first".to_string(), "second".to_string()]));
    let wanted = [("m/1".to_string(), 1), ("m/404".to_string(), 0), ("m/1".to_string(), 0), ("m/1".to_string(), 9)];
    assert_eq!(s.passage_texts(&wanted).unwrap(), [Some("second".to_string()), None, Some("first".to_string()), None]);
    let v = s.vectors("m/1").unwrap();
    assert_eq!(v.len(), 2);
    let back = &v[&hash_of("second")];
    let want = axis(6, 7, 0.3);
    assert!(back.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
}

/// `best_of` scores the named documents only, each by its best passage.
pub fn best_of_scores_named_documents(h: &dyn Harness) {
    let s = h.fresh();
    put(&*s, "m/1", &[("a", axis(0, 0, 0.0)), ("b", axis(9, 9, 0.0))]);
    put(&*s, "m/2", &[("c", axis(3, 3, 0.0))]);
    let r = s.best_of(&["m/1".into(), "m/404".into()], &axis(9, 9, 0.0)).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].key.as_str(), r[0].passage), ("m/1", 1));
    assert!((r[0].score - 1.0).abs() < 1e-3);
}

/// After a restart, records of the current model and chunker are
/// searchable at once; the others are reported for re-indexing and not found.
pub fn load_after_restart_keeps_current_records(h: &dyn Harness) {
    let s = h.fresh();
    put(&*s, "m/1", &[("kept", axis(0, 0, 0.0))]);
    s.put("m/2", &record(&["old model"], "another-model"), &axis(0, 1, 0.2)).unwrap();
    s.sync().unwrap();
    let Some(again) = h.reopen(&s) else { return };
    let mut seen = Vec::new();
    again
        .load(MODEL, CHUNKER, &mut |k, r, searchable| seen.push((k.to_string(), r.texts.clone(), searchable)))
        .unwrap();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("m/1".to_string(), vec!["kept".to_string()], true),
            ("m/2".to_string(), vec!["old model".to_string()], false)
        ]
    );
    assert_eq!(keys(&again.nearest(&axis(0, 0, 0.0), 10, -1.0).unwrap()), ["m/1"]);
    // Written again with the current model, it is found.
    put(&*again, "m/2", &[("new model", axis(0, 1, 0.2))]);
    assert_eq!(keys(&again.nearest(&axis(0, 0, 0.0), 10, -1.0).unwrap()), ["m/1", "m/2"]);
}

/// Many documents: the answer is the exact top k.
pub fn many_documents_give_the_exact_top_k(h: &dyn Harness) {
    let s = h.fresh();
    let mut rng = magicfs_types::noise::XorShift64::new(99);
    let mut all = Vec::new();
    for d in 0..300 {
        let mut v: Vec<f32> = (0..DIM).map(|_| rng.unit() - 0.5).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        let text = format!("passage {d}");
        put(&*s, &format!("m/{d}"), &[(text.as_str(), v.clone())]);
        all.push(v);
    }
    let q = all[17].clone();
    let mut exact: Vec<(f32, usize)> =
        all.iter().enumerate().map(|(i, v)| (v.iter().zip(&q).map(|(a, b)| a * b).sum(), i)).collect();
    exact.sort_by(|a, b| b.0.total_cmp(&a.0));
    let want: Vec<String> = exact[..10].iter().map(|(_, i)| format!("m/{i}")).collect();
    let got: Vec<String> = s.nearest(&q, 10, -1.0).unwrap().into_iter().map(|s| s.key).collect();
    assert_eq!(got, want);
}

/// Bad input is an error, not a panic or a half-written document.
pub fn mismatched_vectors_are_refused(h: &dyn Harness) {
    let s = h.fresh();
    let rec = record(&["a", "b"], MODEL);
    assert!(s.put("m/1", &rec, &axis(0, 0, 0.0)).is_err(), "two passages, one vector");
    let mut bad = record(&["a"], MODEL);
    bad.hashes[0] = "zz".into();
    assert!(s.put("m/1", &bad, &axis(0, 0, 0.0)).is_err(), "malformed hash");
    assert!(s.nearest(&axis(0, 0, 0.0), 10, -1.0).unwrap().is_empty());
    assert_eq!(s.texts("m/1").unwrap(), None);
}

/// Of two mounts sharing the data, one indexes a file version; a version
/// already stored is not indexed again; a lapsed claim can be taken over.
pub fn claims_let_one_mount_index_a_version(h: &dyn Harness) {
    let a = h.fresh();
    if !h.shared() {
        assert!(a.claim("m/1", "v1", Duration::from_secs(60)).unwrap(), "a store of one mount always says yes");
        return;
    }
    let Some(b) = h.reopen(&a) else { panic!("a shared store must open a second handle") };
    assert!(a.claim("m/1", "v1", Duration::from_secs(60)).unwrap());
    assert!(!b.claim("m/1", "v1", Duration::from_secs(60)).unwrap(), "the other mount is indexing it");
    let mut rec = record(&["t"], MODEL);
    rec.size = 1;
    rec.mtime_ns = 1;
    a.put("m/1", &rec, &axis(0, 0, 0.0)).unwrap();
    // Once stored, that version is done for everyone; a new version is claimable.
    assert!(!b.claim("m/1", "v1", Duration::from_secs(60)).unwrap());
    assert!(b.claim("m/1", "v2", Duration::from_secs(60)).unwrap());
    // A claim that lapsed (its mount died) can be taken.
    assert!(a.claim("m/2", "v1", Duration::from_millis(1)).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    assert!(b.claim("m/2", "v1", Duration::from_secs(60)).unwrap());
    // Both handles see the same documents.
    let seen: HashSet<String> = b.nearest(&axis(0, 0, 0.0), 10, -1.0).unwrap().into_iter().map(|s| s.key).collect();
    assert!(seen.contains("m/1"));
}

/// A mount whose claim another mount took over (for a later view of the
/// file) writes nothing: the record of the last claim is the one kept,
/// whichever put lands first.
pub fn a_claim_taken_over_fences_the_older_put(h: &dyn Harness) {
    let a = h.fresh();
    if !h.shared() {
        return;
    }
    let Some(b) = h.reopen(&a) else { panic!("a shared store must open a second handle") };
    let (mut old, mut new) = (record(&["old"], MODEL), record(&["new"], MODEL));
    (old.size, old.mtime_ns, new.size, new.mtime_ns) = (0, 5, 3, 5);
    for b_first in [false, true] {
        let key = if b_first { "m/2" } else { "m/1" };
        assert!(a.claim(key, "0:5", Duration::from_secs(60)).unwrap());
        assert!(b.claim(key, "3:5", Duration::from_secs(60)).unwrap(), "a later view takes the claim over");
        if b_first {
            b.put(key, &new, &axis(1, 0, 0.0)).unwrap();
        }
        a.put(key, &old, &axis(0, 0, 0.0)).unwrap();
        if !b_first {
            b.put(key, &new, &axis(1, 0, 0.0)).unwrap();
        }
        for s in [&a, &b] {
            assert_eq!(s.texts(key).unwrap(), Some(vec!["new".to_string()]), "{key}: the fenced put was kept");
        }
    }
    assert_eq!(b.counts().1, 2, "one passage per document");
}

/// Writes and removals through one handle reach the others as changes.
pub fn changes_reach_the_other_mounts(h: &dyn Harness) {
    let a = h.fresh();
    if !h.shared() {
        put(&*a, "m/1", &[("a", axis(0, 0, 0.0))]);
        assert!(a.changes().unwrap().is_empty());
        return;
    }
    let Some(b) = h.reopen(&a) else { panic!("a shared store must open a second handle") };
    b.load(MODEL, CHUNKER, &mut |_, _, _| {}).unwrap();
    assert!(b.changes().unwrap().is_empty());
    put(&*a, "m/1", &[("one", axis(0, 0, 0.0))]);
    put(&*a, "m/2", &[("two", axis(1, 1, 0.0))]);
    a.remove(&["m/1".into()]).unwrap();
    let seen: Vec<(String, Option<Vec<String>>)> =
        b.changes().unwrap().into_iter().map(|(k, r)| (k, r.map(|r| r.texts))).collect();
    // Oldest first; m/1 may appear once (its last state) or twice.
    assert_eq!(seen.last(), Some(&("m/1".to_string(), None)));
    assert!(seen.contains(&("m/2".to_string(), Some(vec!["two".to_string()]))));
    assert!(b.changes().unwrap().is_empty(), "each change is reported once");
    assert_eq!(keys(&b.nearest(&axis(1, 1, 0.0), 10, -1.0).unwrap()), ["m/2"]);
}

/// Makes one `#[test]` per conformance case for the harness `$make`
/// (an expression building a [`Harness`]).
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@cases $make;
            nearest_ranks_documents_by_their_best_passage,
            put_replaces_a_document,
            remove_forgets_documents,
            records_without_passages_are_kept_but_not_found,
            texts_and_vectors_come_back,
            best_of_scores_named_documents,
            load_after_restart_keeps_current_records,
            many_documents_give_the_exact_top_k,
            mismatched_vectors_are_refused,
            claims_let_one_mount_index_a_version,
            a_claim_taken_over_fences_the_older_put,
            changes_reach_the_other_mounts,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let h = $make;
                $crate::conformance::$case(&h);
            }
        )*
    };
}
