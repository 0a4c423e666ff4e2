//! The persistent side of the index: one record per indexed file (model id,
//! chunker version, the file's size and mtime when read, its passages'
//! hashes and texts) and its vectors. `search.redb` in the data directory,
//! or a map in memory for `--memory` mounts.

use crate::IndexError;
use parking_lot::Mutex;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("docs");
const VECTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("vectors");

/// What is known about one indexed file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DocRecord {
    /// Model id the vectors were made with.
    pub model: String,
    /// Chunker version the passages were cut with.
    pub chunker: String,
    /// File size when read.
    pub size: u64,
    /// File mtime (ns since the epoch) when read.
    pub mtime_ns: i64,
    /// Why the file has no passages, if it was skipped.
    pub skipped: Option<crate::extract::Skip>,
    /// Passage hashes (hex), one per vector.
    pub hashes: Vec<String>,
    /// Passage texts.
    pub texts: Vec<String>,
    /// The file's base name when read (matched by the lexical index).
    #[serde(default)]
    pub name: String,
}

/// Where records live.
pub enum Records {
    /// A redb file.
    Disk(Database),
    /// Memory only.
    Memory(Mutex<HashMap<String, (DocRecord, Vec<f32>)>>),
}

fn err(what: &str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Store(format!("{what}: {e}"))
}

impl Records {
    /// Opens (or creates) `path`.
    pub fn open(path: &Path) -> Result<Records, IndexError> {
        let db = Database::create(path).map_err(|e| err(&format!("cannot open {}", path.display()), e))?;
        let tx = db.begin_write().map_err(|e| err("begin", e))?;
        tx.open_table(DOCS).map_err(|e| err("open table", e))?;
        tx.open_table(VECTORS).map_err(|e| err("open table", e))?;
        tx.commit().map_err(|e| err("commit", e))?;
        Ok(Records::Disk(db))
    }

    /// An empty in-memory set.
    pub fn memory() -> Records {
        Records::Memory(Mutex::new(HashMap::new()))
    }

    /// Every record with its vectors.
    pub fn all(&self) -> Result<Vec<(String, DocRecord, Vec<f32>)>, IndexError> {
        match self {
            Records::Memory(m) => Ok(m.lock().iter().map(|(k, (r, v))| (k.clone(), r.clone(), v.clone())).collect()),
            Records::Disk(db) => {
                let tx = db.begin_read().map_err(|e| err("read", e))?;
                let docs = tx.open_table(DOCS).map_err(|e| err("open table", e))?;
                let vecs = tx.open_table(VECTORS).map_err(|e| err("open table", e))?;
                let mut out = Vec::new();
                for item in docs.iter().map_err(|e| err("scan", e))? {
                    let (k, v) = item.map_err(|e| err("scan", e))?;
                    let Ok(rec) = serde_json::from_slice::<DocRecord>(v.value()) else {
                        log::warn!("search index: dropping an undecodable record for {}", k.value());
                        continue;
                    };
                    let bytes = vecs.get(k.value()).map_err(|e| err("get", e))?.map(|v| v.value().to_vec());
                    let vectors = bytes.map(|b| f32s(&b)).unwrap_or_default();
                    out.push((k.value().to_string(), rec, vectors));
                }
                Ok(out)
            }
        }
    }

    /// The passage texts of `key`.
    pub fn texts(&self, key: &str) -> Option<Vec<String>> {
        match self {
            Records::Memory(m) => m.lock().get(key).map(|(r, _)| r.texts.clone()),
            Records::Disk(db) => {
                let tx = db.begin_read().ok()?;
                let docs = tx.open_table(DOCS).ok()?;
                let v = docs.get(key).ok()??;
                serde_json::from_slice::<DocRecord>(v.value()).ok().map(|r| r.texts)
            }
        }
    }

    /// Writes (replaces) the record of `key`; not synced to disk (see [`Records::sync`]).
    pub fn put(&self, key: &str, rec: &DocRecord, vectors: &[f32]) -> Result<(), IndexError> {
        match self {
            Records::Memory(m) => {
                m.lock().insert(key.to_string(), (rec.clone(), vectors.to_vec()));
                Ok(())
            }
            Records::Disk(db) => {
                let json = serde_json::to_vec(rec).map_err(|e| err("encode", e))?;
                let bytes: Vec<u8> = vectors.iter().flat_map(|f| f.to_le_bytes()).collect();
                let mut tx = db.begin_write().map_err(|e| err("begin", e))?;
                tx.set_durability(Durability::None).map_err(|e| err("durability", e))?;
                {
                    let mut docs = tx.open_table(DOCS).map_err(|e| err("open table", e))?;
                    docs.insert(key, json.as_slice()).map_err(|e| err("insert", e))?;
                    let mut vecs = tx.open_table(VECTORS).map_err(|e| err("open table", e))?;
                    vecs.insert(key, bytes.as_slice()).map_err(|e| err("insert", e))?;
                }
                tx.commit().map_err(|e| err("commit", e))
            }
        }
    }

    /// Removes the records of `keys`.
    pub fn remove(&self, keys: &[String]) -> Result<(), IndexError> {
        match self {
            Records::Memory(m) => {
                let mut m = m.lock();
                for k in keys {
                    m.remove(k);
                }
                Ok(())
            }
            Records::Disk(db) => {
                let mut tx = db.begin_write().map_err(|e| err("begin", e))?;
                tx.set_durability(Durability::None).map_err(|e| err("durability", e))?;
                {
                    let mut docs = tx.open_table(DOCS).map_err(|e| err("open table", e))?;
                    let mut vecs = tx.open_table(VECTORS).map_err(|e| err("open table", e))?;
                    for k in keys {
                        docs.remove(k.as_str()).map_err(|e| err("remove", e))?;
                        vecs.remove(k.as_str()).map_err(|e| err("remove", e))?;
                    }
                }
                tx.commit().map_err(|e| err("commit", e))
            }
        }
    }

    /// Makes every earlier write durable.
    pub fn sync(&self) -> Result<(), IndexError> {
        if let Records::Disk(db) = self {
            let tx = db.begin_write().map_err(|e| err("begin", e))?;
            tx.commit().map_err(|e| err("commit", e))?;
        }
        Ok(())
    }
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
