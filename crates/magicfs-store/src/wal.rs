//! The write-ahead log. Every committed batch is appended (one `write` call)
//! before the operation is answered, so a killed daemon loses nothing that
//! was answered: the bytes are in the kernel already. `sync` makes them
//! durable against power loss. The log is split into segments; a segment is
//! deleted once a durable checkpoint of the redb image covers it.
//!
//! Record: `len u32 | crc32 u32 | seq u64 | batch`, where `len` and the CRC
//! cover `seq | batch`. Replay stops at the first torn or corrupt record.

use crate::batch::Batch;
use parking_lot::Mutex;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

struct Segment {
    first_seq: u64,
    path: PathBuf,
    file: File,
    synced: bool,
}

struct Inner {
    seq: u64,
    segments: Vec<Segment>,
    buf: Vec<u8>,
    current_bytes: u64,
}

/// An append-only, segmented log of batches.
pub struct Wal {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:016x}.wal"))
}

/// Existing segments in `dir`, oldest first.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else { continue };
        if p.extension().and_then(|s| s.to_str()) != Some("wal") {
            continue;
        }
        if let Ok(seq) = u64::from_str_radix(stem, 16) {
            v.push((seq, p));
        }
    }
    v.sort();
    Ok(v)
}

impl Wal {
    /// Replays every record with a sequence number above `after` to `apply`,
    /// in order. Returns the last sequence number seen (or `after`).
    pub fn replay(dir: &Path, after: u64, mut apply: impl FnMut(u64, Batch)) -> io::Result<u64> {
        let mut last = after;
        'segments: for (_, path) in list_segments(dir)? {
            let mut data = Vec::new();
            File::open(&path)?.read_to_end(&mut data)?;
            let mut at = 0usize;
            while at + 16 <= data.len() {
                let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap_or_default()) as usize;
                let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap_or_default());
                let body_end = at + 8 + len;
                if len < 8 || body_end > data.len() || crc32fast::hash(&data[at + 8..body_end]) != crc {
                    log::warn!("wal {}: torn or corrupt record at byte {at}; replay stops here", path.display());
                    break 'segments;
                }
                let seq = u64::from_le_bytes(data[at + 8..at + 16].try_into().unwrap_or_default());
                let Some(batch) = Batch::decode(&data[at + 16..body_end]) else {
                    log::warn!("wal {}: undecodable batch at byte {at}; replay stops here", path.display());
                    break 'segments;
                };
                if seq > last {
                    apply(seq, batch);
                    last = seq;
                }
                at = body_end;
            }
        }
        Ok(last)
    }

    /// Opens the log in `dir` for appending after sequence number `seq`.
    /// Existing segments are removed: call after a replay has been made durable.
    pub fn open(dir: &Path, seq: u64) -> io::Result<Wal> {
        fs::create_dir_all(dir)?;
        for (_, p) in list_segments(dir)? {
            fs::remove_file(p)?;
        }
        let seg = Self::new_segment(dir, seq + 1)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner { seq, segments: vec![seg], buf: Vec::new(), current_bytes: 0 }),
        })
    }

    fn new_segment(dir: &Path, first_seq: u64) -> io::Result<Segment> {
        let path = segment_path(dir, first_seq);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        File::open(dir)?.sync_all()?;
        Ok(Segment { first_seq, path, file, synced: true })
    }

    /// Appends `batch`, then hands it to `after` with its sequence number
    /// while still holding the log lock, so `after` runs in sequence order.
    pub fn append(&self, batch: Batch, after: impl FnOnce(u64, Batch)) -> io::Result<u64> {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let seq = inner.seq + 1;
        inner.buf.clear();
        inner.buf.extend_from_slice(&[0u8; 8]);
        inner.buf.extend_from_slice(&seq.to_le_bytes());
        batch.encode_into(&mut inner.buf);
        let len = (inner.buf.len() - 8) as u32;
        let crc = crc32fast::hash(&inner.buf[8..]);
        inner.buf[0..4].copy_from_slice(&len.to_le_bytes());
        inner.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let seg = inner.segments.last_mut().ok_or_else(|| io::Error::other("no wal segment"))?;
        seg.file.write_all(&inner.buf)?;
        seg.synced = false;
        inner.current_bytes += inner.buf.len() as u64;
        inner.seq = seq;
        after(seq, batch);
        Ok(seq)
    }

    /// Starts a new segment; returns the last sequence number of the old ones.
    pub fn rotate(&self) -> io::Result<u64> {
        let mut g = self.inner.lock();
        if g.current_bytes == 0 {
            // Nothing since the last rotation: the current segment stays.
            return Ok(g.seq);
        }
        let seg = Self::new_segment(&self.dir, g.seq + 1)?;
        g.segments.push(seg);
        g.current_bytes = 0;
        Ok(g.seq)
    }

    /// Total bytes of all live segments.
    pub fn total_bytes(&self) -> u64 {
        let g = self.inner.lock();
        g.segments.iter().filter_map(|s| s.file.metadata().ok()).map(|m| m.len()).sum()
    }

    /// Deletes every segment all of whose records are at or below `seq`.
    pub fn remove_through(&self, seq: u64) -> io::Result<()> {
        let mut g = self.inner.lock();
        while g.segments.len() > 1 && g.segments[1].first_seq <= seq + 1 {
            let s = g.segments.remove(0);
            drop(s.file);
            fs::remove_file(&s.path)?;
        }
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&self) -> io::Result<()> {
        let files: Vec<File> = {
            let mut g = self.inner.lock();
            let mut v = Vec::new();
            for s in g.segments.iter_mut().filter(|s| !s.synced) {
                v.push(s.file.try_clone()?);
                s.synced = true;
            }
            v
        };
        for f in files {
            f.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Table;

    #[test]
    fn append_rotate_replay() {
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::open(d.path(), 10).unwrap();
        for i in 0..5u8 {
            let mut b = Batch::new();
            b.put(Table::Meta, vec![i], vec![i; 3]);
            wal.append(b.clone(), |_, _| {}).unwrap();
            if i == 2 {
                assert_eq!(wal.rotate().unwrap(), 13);
            }
        }
        let mut seen = Vec::new();
        let last = Wal::replay(d.path(), 11, |s, b| seen.push((s, b.ops[0].key[0]))).unwrap();
        assert_eq!(last, 15);
        assert_eq!(seen, vec![(12, 1), (13, 2), (14, 3), (15, 4)]);
        assert_eq!(wal.rotate().unwrap(), 15);
        assert_eq!(wal.rotate().unwrap(), 15, "an empty segment is not rotated again");
        wal.remove_through(15).unwrap();
        let mut b = Batch::new();
        b.put(Table::Meta, vec![9], vec![9]);
        wal.append(b, |_, _| {}).unwrap();
        let mut after = Vec::new();
        Wal::replay(d.path(), 15, |s, _| after.push(s)).unwrap();
        assert_eq!(after, vec![16], "appends after a checkpoint stay readable");
        wal.remove_through(13).unwrap();
    }

    #[test]
    fn torn_tail_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::open(d.path(), 0).unwrap();
        let mut b = Batch::new();
        b.put(Table::Meta, vec![1], vec![2]);
        wal.append(b.clone(), |_, _| {}).unwrap();
        wal.append(b.clone(), |_, _| {}).unwrap();
        drop(wal);
        let (_, p) = list_segments(d.path()).unwrap().pop().unwrap();
        let len = fs::metadata(&p).unwrap().len();
        OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 3).unwrap();
        let mut n = 0;
        assert_eq!(Wal::replay(d.path(), 0, |_, _| n += 1).unwrap(), 1);
        assert_eq!(n, 1);
    }
}
