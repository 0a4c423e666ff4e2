//! Where the index keeps what it knows and finds the passages nearest a
//! query: the [`IndexStore`] trait, and the embedded store of one mount
//! (`search.redb` or memory for the records, an in-memory matrix for the
//! nearest-passage scan). The PostgreSQL store of a cluster volume
//! implements the same trait; the conformance suite in `tests/store.rs`
//! runs every implementation through the same cases.

use crate::records::{DocRecord, Records};
use crate::vectors::{Scored, Vectors};
use crate::IndexError;
use magicfs_embed::DIM;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::Path;

/// A passage hash (BLAKE3 of the chunker version and the text).
pub type Hash = [u8; 32];

/// Storage and nearest-passage search of the index.
///
/// Keys name documents (`m/<inode>` for files of the mount, `h/<path>` for
/// watched host files). A document's record carries its passages' hashes
/// and texts; its vectors (one [`DIM`]-wide row per passage, normalised)
/// go with it. Records made with another model or chunker may be stored;
/// they are not searchable until written again.
pub trait IndexStore: Send + Sync {
    /// What the store is, for status and logs (`memory`, `redb …`, `postgres …`).
    fn describe(&self) -> String;

    /// Reads every stored record and calls `each(key, record, searchable)`:
    /// records of `model` and `chunker` whose vectors are whole are
    /// searchable from now on; the caller re-indexes the others.
    fn load(&self, model: &str, chunker: &str, each: &mut dyn FnMut(&str, &DocRecord, bool)) -> Result<(), IndexError>;

    /// Writes (replaces) the record and vectors of `key`, and makes them searchable.
    fn put(&self, key: &str, rec: &DocRecord, vectors: &[f32]) -> Result<(), IndexError>;

    /// Removes `keys` (absent ones are ignored).
    fn remove(&self, keys: &[String]) -> Result<(), IndexError>;

    /// The `k` documents whose best passage is nearest `query`, at least `min` (cosine), best first.
    fn nearest(&self, query: &[f32], k: usize, min: f32) -> Result<Vec<Scored>, IndexError>;

    /// The best passage of each of `keys` for `query` (keys without passages are left out).
    fn best_of(&self, keys: &[String], query: &[f32]) -> Result<Vec<Scored>, IndexError>;

    /// The passage texts of `key`.
    fn texts(&self, key: &str) -> Result<Option<Vec<String>>, IndexError>;

    /// The texts of the passages `wanted` (key, index), in that order
    /// (`None` for one that is gone).
    fn passage_texts(&self, wanted: &[(String, usize)]) -> Result<Vec<Option<String>>, IndexError> {
        wanted.iter().map(|(k, i)| Ok(self.texts(k)?.and_then(|t| t.get(*i).cloned()))).collect()
    }

    /// The vectors of `key`'s passages by hash (to reuse those whose text did not change).
    fn vectors(&self, key: &str) -> Result<HashMap<Hash, Vec<f32>>, IndexError>;

    /// Searchable documents with passages, and passages.
    fn counts(&self) -> (usize, usize);

    /// Makes every earlier write durable.
    fn sync(&self) -> Result<(), IndexError>;

    /// Takes the right to index version `version` of `key` for `lease`, so
    /// that of several mounts sharing the store only one does the work.
    /// False when another holder has it, or when the stored record is that
    /// version already. A store of one mount always says true.
    fn claim(&self, _key: &str, _version: &str, _lease: std::time::Duration) -> Result<bool, IndexError> {
        Ok(true)
    }

    /// What other handles on the same data wrote or removed since the last
    /// call (or since [`IndexStore::load`]), oldest first: `(key, Some(record))`
    /// for a write, `(key, None)` for a removal. A store of one mount has none.
    fn changes(&self) -> Result<Vec<(String, Option<DocRecord>)>, IndexError> {
        Ok(Vec::new())
    }
}

/// Parses a record's hex hashes.
pub(crate) fn hashes_of(rec: &DocRecord) -> Option<Vec<Hash>> {
    rec.hashes.iter().map(|h| unhex(h)).collect()
}

/// A passage hash from the 64 hex digits records hold.
pub fn unhex(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Hex of a hash.
pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store of one mount: records in `search.redb` (or memory) and every
/// searchable vector in an in-memory matrix scanned on all cores.
pub struct EmbeddedStore {
    records: Records,
    vectors: RwLock<Vectors>,
    what: String,
}

impl EmbeddedStore {
    /// Records in `path` (created if missing).
    pub fn open(path: &Path) -> Result<EmbeddedStore, IndexError> {
        Ok(EmbeddedStore {
            records: Records::open(path)?,
            vectors: RwLock::default(),
            what: format!("redb {}", path.display()),
        })
    }

    /// Records in memory only.
    pub fn memory() -> EmbeddedStore {
        EmbeddedStore { records: Records::memory(), vectors: RwLock::default(), what: "memory".into() }
    }
}

impl IndexStore for EmbeddedStore {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn load(&self, model: &str, chunker: &str, each: &mut dyn FnMut(&str, &DocRecord, bool)) -> Result<(), IndexError> {
        let all = self.records.all()?;
        let mut v = self.vectors.write();
        for (key, rec, vectors) in all {
            let current = rec.model == model && rec.chunker == chunker;
            match hashes_of(&rec) {
                Some(h) if current && h.len() * DIM == vectors.len() => {
                    v.set(&key, h, &vectors);
                    each(&key, &rec, true);
                }
                _ => each(&key, &rec, false),
            }
        }
        Ok(())
    }

    fn put(&self, key: &str, rec: &DocRecord, vectors: &[f32]) -> Result<(), IndexError> {
        let hashes = hashes_of(rec).ok_or_else(|| IndexError::Store(format!("{key}: malformed passage hash")))?;
        if hashes.len() * DIM != vectors.len() {
            return Err(IndexError::Store(format!(
                "{key}: {} passages but {} vector values",
                hashes.len(),
                vectors.len()
            )));
        }
        self.records.put(key, rec, vectors)?;
        self.vectors.write().set(key, hashes, vectors);
        Ok(())
    }

    fn remove(&self, keys: &[String]) -> Result<(), IndexError> {
        {
            let mut v = self.vectors.write();
            for k in keys {
                v.remove(k);
            }
        }
        self.records.remove(keys)
    }

    fn nearest(&self, query: &[f32], k: usize, min: f32) -> Result<Vec<Scored>, IndexError> {
        Ok(self.vectors.read().search(query, k, min))
    }

    fn best_of(&self, keys: &[String], query: &[f32]) -> Result<Vec<Scored>, IndexError> {
        let v = self.vectors.read();
        Ok(keys.iter().filter_map(|k| v.best_of(k, query)).collect())
    }

    fn texts(&self, key: &str) -> Result<Option<Vec<String>>, IndexError> {
        Ok(self.records.texts(key))
    }

    fn vectors(&self, key: &str) -> Result<HashMap<Hash, Vec<f32>>, IndexError> {
        let v = self.vectors.read();
        let mut out = HashMap::new();
        if let Some(d) = v.get(key) {
            for (h, r) in d.hashes.iter().zip(&d.rows) {
                out.insert(*h, v.row(*r).to_vec());
            }
        }
        Ok(out)
    }

    fn counts(&self) -> (usize, usize) {
        let v = self.vectors.read();
        (v.docs(), v.passages())
    }

    fn sync(&self) -> Result<(), IndexError> {
        self.records.sync()
    }
}
