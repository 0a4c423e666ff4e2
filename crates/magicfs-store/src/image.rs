//! The redb image of the metadata: every table of [`Table`], plus the
//! sequence number of the last write-ahead-log record it contains. It is
//! updated by the writer thread and made durable at checkpoints.

use crate::batch::Batch;
use crate::disk::{Disk, DiskFile};
use crate::error::{StoreError, StoreResult};
use crate::keys::Table;
use parking_lot::RwLock;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Meta key holding the last log sequence number contained in the image.
pub const WAL_SEQ_KEY: &[u8] = b"wal_seq";

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

/// A redb failure: an I/O error keeps its kind (a full disk stays `ENOSPC`);
/// anything else means the file is damaged.
fn db_err(context: &str, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        // redb reports a file that is not (or no longer) a database as
        // invalid data: that is damage, not an I/O failure.
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Corrupt(format!("{context}: {io}"))
        }
        redb::Error::Io(io) => StoreError::io(context, io),
        other => StoreError::Corrupt(format!("{context}: {other}")),
    }
}

/// Where a new image is made before it is renamed into place.
pub fn new_image_path(path: &Path) -> PathBuf {
    path.with_extension("redb.new")
}

/// The redb file seen through the store's [`Disk`].
struct Backend(Arc<dyn DiskFile>);

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backend")
    }
}

impl StorageBackend for Backend {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read_exact_at(out, offset)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write_all_at(data, offset)
    }
}

/// The redb database file of a store.
pub struct Image {
    disk: Arc<dyn Disk>,
    path: PathBuf,
    /// `None` after a failed reopen.
    db: RwLock<Option<Database>>,
}

impl Image {
    /// Opens or creates the database at `path` on `disk`, creating missing
    /// tables. Every page of the committed trees is checked against its
    /// checksum first, so a damaged file is an error, never a wrong answer.
    pub fn open(disk: Arc<dyn Disk>, path: &Path) -> StoreResult<Image> {
        let db = Self::open_db(&*disk, path)?;
        Ok(Image { disk, path: path.to_path_buf(), db: RwLock::new(Some(db)) })
    }

    fn open_db(disk: &dyn Disk, path: &Path) -> StoreResult<Database> {
        let context = format!("cannot open {}", path.display());
        let io = |e| StoreError::io(context.clone(), e);
        if !disk.is_file(path) {
            // A new image is made whole under another name, then renamed:
            // a power loss midway leaves no half-made image behind.
            let new = new_image_path(path);
            if disk.is_file(&new) {
                disk.remove_file(&new).map_err(io)?;
            }
            drop(Self::init_db(disk, &new)?);
            disk.rename(&new, path).map_err(io)?;
            if let Some(dir) = path.parent() {
                disk.sync_dir(dir).map_err(io)?;
            }
        }
        Self::init_db(disk, path)
    }

    fn init_db(disk: &dyn Disk, path: &Path) -> StoreResult<Database> {
        let context = format!("cannot open {}", path.display());
        let file = disk.open(path, true).map_err(|e| StoreError::io(context.clone(), e))?;
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .set_check_integrity_on_open(true)
            .create_with_backend(Backend(file))
            .map_err(|e| db_err(&context, e))?;
        let mut tx = db.begin_write().map_err(|e| db_err("begin", e))?;
        tx.set_quick_repair(true);
        for t in Table::ALL {
            tx.open_table(def(t)).map_err(|e| db_err("open table", e))?;
        }
        tx.commit().map_err(|e| db_err("commit", e))?;
        Ok(db)
    }

    /// After a failed write redb refuses further work until the file is
    /// opened again: reopen it (the last durable commit is what it finds).
    fn reopen(&self) {
        let mut g = self.db.write();
        drop(g.take());
        match Self::open_db(&*self.disk, &self.path) {
            Ok(db) => *g = Some(db),
            Err(e) => log::error!("reopening the image after a failed write: {e}"),
        }
    }

    fn with_db<T>(&self, f: impl FnOnce(&Database) -> StoreResult<T>) -> StoreResult<T> {
        let g = self.db.read();
        let db = g.as_ref().ok_or_else(|| StoreError::Corrupt("the image could not be reopened".into()))?;
        f(db)
    }

    /// The sequence number of the last log record the image contains.
    pub fn wal_seq(&self) -> StoreResult<u64> {
        Ok(self.get(Table::Meta, WAL_SEQ_KEY)?.and_then(|v| v.try_into().ok().map(u64::from_le_bytes)).unwrap_or(0))
    }

    /// Reads one value.
    pub fn get(&self, t: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.with_db(|db| {
            let tx = db.begin_read().map_err(|e| db_err("read", e))?;
            let table = tx.open_table(def(t)).map_err(|e| db_err("open table", e))?;
            Ok(table.get(key).map_err(|e| db_err("get", e))?.map(|v| v.value().to_vec()))
        })
    }

    /// Calls `f` on every entry of `t`, in key order.
    pub fn scan(&self, t: Table, mut f: impl FnMut(&[u8], &[u8])) -> StoreResult<()> {
        self.with_db(|db| {
            let tx = db.begin_read().map_err(|e| db_err("read", e))?;
            let table = tx.open_table(def(t)).map_err(|e| db_err("open table", e))?;
            for item in table.iter().map_err(|e| db_err("scan", e))? {
                let (k, v) = item.map_err(|e| db_err("scan", e))?;
                f(k.value(), v.value());
            }
            Ok(())
        })
    }

    /// Applies batches and records `seq` as contained, in one durable commit.
    pub fn apply_durable<'a>(&self, batches: impl IntoIterator<Item = &'a Batch>, seq: u64) -> StoreResult<()> {
        let r = self.with_db(|db| Self::apply_to(db, batches, seq));
        if r.is_err() {
            self.reopen();
        }
        r
    }

    fn apply_to<'a>(db: &Database, batches: impl IntoIterator<Item = &'a Batch>, seq: u64) -> StoreResult<()> {
        let mut tx = db.begin_write().map_err(|e| db_err("begin", e))?;
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
