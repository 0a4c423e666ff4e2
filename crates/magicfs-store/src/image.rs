//! The redb image of the metadata: every table of [`Table`], plus the
//! sequence number of the last write-ahead-log record it contains. It is
//! updated by the writer thread and made durable at checkpoints.

use crate::batch::Batch;
use crate::error::{StoreError, StoreResult};
use crate::keys::Table;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

/// Meta key holding the last log sequence number contained in the image.
pub const WAL_SEQ_KEY: &[u8] = b"wal_seq";

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

fn db_err(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{context}: {e}"))
}

/// The redb database file of a store.
pub struct Image {
    db: Database,
}

impl Image {
    /// Opens or creates the database at `path`, creating missing tables.
    pub fn open(path: &Path) -> StoreResult<Image> {
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .create(path)
            .map_err(|e| db_err(&format!("cannot open {}", path.display()), e))?;
        let mut tx = db.begin_write().map_err(|e| db_err("begin", e))?;
        tx.set_quick_repair(true);
        for t in Table::ALL {
            tx.open_table(def(t)).map_err(|e| db_err("open table", e))?;
        }
        tx.commit().map_err(|e| db_err("commit", e))?;
        Ok(Image { db })
    }

    /// The sequence number of the last log record the image contains.
    pub fn wal_seq(&self) -> StoreResult<u64> {
        Ok(self.get(Table::Meta, WAL_SEQ_KEY)?.and_then(|v| v.try_into().ok().map(u64::from_le_bytes)).unwrap_or(0))
    }

    /// Reads one value.
    pub fn get(&self, t: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let tx = self.db.begin_read().map_err(|e| db_err("read", e))?;
        let table = tx.open_table(def(t)).map_err(|e| db_err("open table", e))?;
        Ok(table.get(key).map_err(|e| db_err("get", e))?.map(|v| v.value().to_vec()))
    }

    /// Calls `f` on every entry of `t`, in key order.
    pub fn scan(&self, t: Table, mut f: impl FnMut(&[u8], &[u8])) -> StoreResult<()> {
        let tx = self.db.begin_read().map_err(|e| db_err("read", e))?;
        let table = tx.open_table(def(t)).map_err(|e| db_err("open table", e))?;
        for item in table.iter().map_err(|e| db_err("scan", e))? {
            let (k, v) = item.map_err(|e| db_err("scan", e))?;
            f(k.value(), v.value());
        }
        Ok(())
    }

    /// Applies batches and records `seq` as contained, in one durable commit.
    pub fn apply_durable<'a>(&self, batches: impl IntoIterator<Item = &'a Batch>, seq: u64) -> StoreResult<()> {
        let mut tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        tx.set_durability(Durability::Immediate).map_err(|e| db_err("durability", e))?;
        tx.set_quick_repair(true);
        {
            let mut tables: Vec<_> = Table::ALL
                .iter()
                .map(|t| tx.open_table(def(*t)))
                .collect::<Result<_, _>>()
                .map_err(|e| db_err("open table", e))?;
            for b in batches {
                for op in &b.ops {
                    let table = &mut tables[op.table as usize];
                    match &op.value {
                        Some(v) => table.insert(op.key.as_slice(), v.as_slice()).map(|_| ()),
                        None => table.remove(op.key.as_slice()).map(|_| ()),
                    }
                    .map_err(|e| db_err("apply", e))?;
                }
            }
            tables[Table::Meta as usize].insert(WAL_SEQ_KEY, &seq.to_le_bytes()[..]).map_err(|e| db_err("apply", e))?;
        }
        tx.commit().map_err(|e| db_err("commit", e))
    }
}
