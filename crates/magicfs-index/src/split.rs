//! [`SplitStore`]: the index store of a cluster mount. Files of the volume
//! (`m/` keys) are kept in the store every mount of the volume shares; files
//! of this machine's watched host directories (`h/` keys) in a store of this
//! machine, because a host path means nothing on another machine (and two
//! machines may watch different trees under the same path).

use crate::records::DocRecord;
use crate::store::{Hash, IndexStore};
use crate::vectors::Scored;
use crate::IndexError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Routes each key to the shared or the local store; answers queries from both.
pub struct SplitStore {
    shared: Arc<dyn IndexStore>,
    local: Arc<dyn IndexStore>,
}

/// True for a key of a watched host file (kept on this machine).
fn is_local(key: &str) -> bool {
    key.starts_with("h/")
}

impl SplitStore {
    /// Mount files in `shared`, watched host files in `local`.
    pub fn new(shared: Arc<dyn IndexStore>, local: Arc<dyn IndexStore>) -> SplitStore {
        SplitStore { shared, local }
    }

    fn of(&self, key: &str) -> &dyn IndexStore {
        if is_local(key) {
            &*self.local
        } else {
            &*self.shared
        }
    }

    /// `keys` split into (shared, local).
    fn partition(keys: &[String]) -> (Vec<String>, Vec<String>) {
        keys.iter().cloned().partition(|k| !is_local(k))
    }
}

/// A passage asked for, with its place in the question.
type Wanted<'a> = (usize, &'a (String, usize));

/// The best `k` of two answers, best first.
fn merge(mut a: Vec<Scored>, b: Vec<Scored>, k: usize) -> Vec<Scored> {
    a.extend(b);
    a.sort_by(|x, y| y.score.total_cmp(&x.score));
    a.truncate(k);
    a
}

impl IndexStore for SplitStore {
    fn describe(&self) -> String {
        format!("{} (watched directories: {})", self.shared.describe(), self.local.describe())
    }

    fn load(&self, model: &str, chunker: &str, each: &mut dyn FnMut(&str, &DocRecord, bool)) -> Result<(), IndexError> {
        // Each store holds only its own keys; one that strayed is left out.
        self.shared.load(model, chunker, &mut |k, r, s| {
            if !is_local(k) {
                each(k, r, s)
            }
        })?;
        self.local.load(model, chunker, &mut |k, r, s| {
            if is_local(k) {
                each(k, r, s)
            }
        })
    }

    fn put(&self, key: &str, rec: &DocRecord, vectors: &[f32]) -> Result<(), IndexError> {
        self.of(key).put(key, rec, vectors)
    }

    fn remove(&self, keys: &[String]) -> Result<(), IndexError> {
        let (shared, local) = SplitStore::partition(keys);
        if !shared.is_empty() {
            self.shared.remove(&shared)?;
        }
        if !local.is_empty() {
            self.local.remove(&local)?;
        }
        Ok(())
    }

    fn nearest(&self, query: &[f32], k: usize, min: f32) -> Result<Vec<Scored>, IndexError> {
        let shared = self.shared.nearest(query, k, min)?;
        if self.local.counts().1 == 0 {
            return Ok(shared);
        }
        Ok(merge(shared, self.local.nearest(query, k, min)?, k))
    }

    fn best_of(&self, keys: &[String], query: &[f32]) -> Result<Vec<Scored>, IndexError> {
        let (shared, local) = SplitStore::partition(keys);
        let mut out = if shared.is_empty() { Vec::new() } else { self.shared.best_of(&shared, query)? };
        if !local.is_empty() {
            out.extend(self.local.best_of(&local, query)?);
        }
        Ok(out)
    }

    fn texts(&self, key: &str) -> Result<Option<Vec<String>>, IndexError> {
        self.of(key).texts(key)
    }

    fn passage_texts(&self, wanted: &[(String, usize)]) -> Result<Vec<Option<String>>, IndexError> {
        // One look-up per store; answers go back in the order asked.
        let (shared, local): (Vec<Wanted<'_>>, Vec<_>) =
            wanted.iter().enumerate().partition(|(_, (k, _))| !is_local(k));
        let mut out = vec![None; wanted.len()];
        for (part, store) in [(shared, &self.shared), (local, &self.local)] {
            if part.is_empty() {
                continue;
            }
            let ask: Vec<(String, usize)> = part.iter().map(|(_, w)| (*w).clone()).collect();
            for ((i, _), text) in part.iter().zip(store.passage_texts(&ask)?) {
                out[*i] = text;
            }
        }
        Ok(out)
    }

    fn vectors(&self, key: &str) -> Result<HashMap<Hash, Vec<f32>>, IndexError> {
        self.of(key).vectors(key)
    }

    fn counts(&self) -> (usize, usize) {
        let (a, b) = (self.shared.counts(), self.local.counts());
        (a.0 + b.0, a.1 + b.1)
    }

    fn sync(&self) -> Result<(), IndexError> {
        self.shared.sync()?;
        self.local.sync()
    }

    fn claim(&self, key: &str, version: &str, lease: Duration) -> Result<bool, IndexError> {
        self.of(key).claim(key, version, lease)
    }

    fn changes(&self) -> Result<Vec<(String, Option<DocRecord>)>, IndexError> {
        let mut out: Vec<_> = self.shared.changes()?.into_iter().filter(|(k, _)| !is_local(k)).collect();
        out.extend(self.local.changes()?.into_iter().filter(|(k, _)| is_local(k)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{axis, record, CHUNKER, MODEL};
    use crate::store::EmbeddedStore;

    fn put(s: &dyn IndexStore, key: &str, text: &str, v: Vec<f32>) {
        s.put(key, &record(&[text], MODEL), &v).unwrap();
    }

    #[test]
    fn host_files_stay_on_this_machine() {
        let (shared, local): (Arc<dyn IndexStore>, Arc<dyn IndexStore>) =
            (Arc::new(EmbeddedStore::memory()), Arc::new(EmbeddedStore::memory()));
        let s = SplitStore::new(shared.clone(), local.clone());
        put(&s, "m/1", "volume file", axis(0, 1, 0.2));
        put(&s, "h/home/a.txt", "host file", axis(0, 2, 0.1));
        put(&s, "m/2", "other volume file", axis(5, 5, 0.0));
        assert_eq!(shared.counts(), (2, 2));
        assert_eq!(local.counts(), (1, 1));
        assert_eq!(local.texts("h/home/a.txt").unwrap(), Some(vec!["host file".to_string()]));
        assert_eq!(shared.texts("h/home/a.txt").unwrap(), None);
        // One ranking over both, best first.
        let r = s.nearest(&axis(0, 0, 0.0), 10, -1.0).unwrap();
        let keys: Vec<&str> = r.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, ["h/home/a.txt", "m/1", "m/2"]);
        assert_eq!(s.nearest(&axis(0, 0, 0.0), 1, -1.0).unwrap().len(), 1);
        let wanted = [("m/2".to_string(), 0), ("h/home/a.txt".to_string(), 0), ("m/1".to_string(), 3)];
        assert_eq!(
            s.passage_texts(&wanted).unwrap(),
            [Some("other volume file".to_string()), Some("host file".to_string()), None]
        );
        let best = s.best_of(&["h/home/a.txt".into(), "m/2".into()], &axis(5, 5, 0.0)).unwrap();
        assert_eq!(best.len(), 2);
        s.remove(&["h/home/a.txt".into(), "m/1".into()]).unwrap();
        assert_eq!((shared.counts(), local.counts(), s.counts()), ((1, 1), (0, 0), (1, 1)));
        let mut seen = Vec::new();
        s.load(MODEL, CHUNKER, &mut |k, _, searchable| seen.push((k.to_string(), searchable))).unwrap();
        assert_eq!(seen, [("m/2".to_string(), true)]);
    }
}
