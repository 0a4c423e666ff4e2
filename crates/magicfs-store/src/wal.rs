//! The write-ahead log. Every committed batch is appended (one `write` call)
//! before the operation is answered, so a killed daemon loses nothing that
//! was answered: the bytes are in the kernel already. `sync` makes them
//! durable against power loss. The log is split into segments; a segment is
//! deleted once a durable checkpoint of the redb image covers it.
//!
//! Record: `len u32 | crc32 u32 | seq u64 | batch`, where `len` and the CRC
//! cover `seq | batch`. Replay stops at the first torn or corrupt record of a
//! segment and goes on with the next segment only if that one starts right
//! after the last record read (a segment whose records a checkpoint already
//! covers may keep a torn tail after a power loss, when its removal was not
//! yet durable).

use crate::batch::Batch;
use crate::disk::{read_all, Disk, DiskFile};
use parking_lot::Mutex;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Segment {
    first_seq: u64,
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    /// Bytes of whole records; the next record is written here.
    size: u64,
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
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    inner: Mutex<Inner>,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:016x}.wal"))
}

/// Existing segments in `dir`, oldest first.
fn list_segments(disk: &dyn Disk, dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    for name in disk.list(dir)? {
        let p = dir.join(name);
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

/// One record of a segment's bytes at `at`: its sequence number, batch and
/// end, or `None` where the record is torn or corrupt.
pub fn decode_record(data: &[u8], at: usize) -> Option<(u64, Batch, usize)> {
    let header = data.get(at..at.checked_add(16)?)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let body_end = at.checked_add(8)?.checked_add(len)?;
    if len < 8 || body_end > data.len() || crc32fast::hash(&data[at + 8..body_end]) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(data[at + 8..at + 16].try_into().ok()?);
    let batch = Batch::decode(&data[at + 16..body_end])?;
    Some((seq, batch, body_end))
}

impl Wal {
    /// Replays every record with a sequence number above `after` to `apply`,
    /// in order, until `apply` returns false. Returns the last sequence
    /// number applied (or `after`).
    pub fn replay(
        disk: &dyn Disk,
        dir: &Path,
        after: u64,
        mut apply: impl FnMut(u64, Batch) -> bool,
    ) -> io::Result<u64> {
        let mut last = after;
        for (first_seq, path) in list_segments(disk, dir)? {
            if first_seq > last + 1 {
                log::warn!(
                    "wal {}: starts at record {first_seq}, after a gap from record {last}; replay stops here",
                    path.display()
                );
                break;
            }
            let data = read_all(&*disk.open(&path, false)?)?;
            let mut at = 0usize;
            while at < data.len() {
                let Some((seq, batch, end)) = decode_record(&data, at) else {
                    log::warn!("wal {}: torn or corrupt record at byte {at}; the segment ends here", path.display());
                    break;
                };
                if seq > last {
                    if seq != last + 1 {
                        log::warn!("wal {}: record {seq} follows {last}; replay stops here", path.display());
                        return Ok(last);
                    }
                    if !apply(seq, batch) {
                        return Ok(last);
                    }
                    last = seq;
                }
                at = end;
            }
        }
        Ok(last)
    }

    /// Opens the log in `dir` for appending after sequence number `seq`.
    /// Existing segments are removed: call after a replay has been made durable.
    pub fn open(disk: Arc<dyn Disk>, dir: &Path, seq: u64) -> io::Result<Wal> {
        disk.create_dir_all(dir)?;
        for (_, p) in list_segments(&*disk, dir)? {
            disk.remove_file(&p)?;
        }
        let seg = Self::new_segment(&*disk, dir, seq + 1)?;
        Ok(Wal {
            disk,
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner { seq, segments: vec![seg], buf: Vec::new(), current_bytes: 0 }),
        })
    }

    fn new_segment(disk: &dyn Disk, dir: &Path, first_seq: u64) -> io::Result<Segment> {
        let path = segment_path(dir, first_seq);
        let file = disk.open(&path, true)?;
        file.set_len(0)?;
        disk.sync_dir(dir)?;
        Ok(Segment { first_seq, path, file, size: 0, synced: true })
    }

    /// Appends `batch`, then hands it to `after` with its sequence number
    /// while still holding the log lock, so `after` runs in sequence order.
    /// A failed append (a full disk) leaves no part of the record behind.
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
        if let Err(e) = seg.file.write_all_at(&inner.buf, seg.size) {
            // The next record goes where this one started; cut what was written.
            let _ = seg.file.set_len(seg.size);
            return Err(e);
        }
        seg.size += inner.buf.len() as u64;
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
        let seg = Self::new_segment(&*self.disk, &self.dir, g.seq + 1)?;
        g.segments.push(seg);
        g.current_bytes = 0;
        Ok(g.seq)
    }

    /// Total bytes of all live segments.
    pub fn total_bytes(&self) -> u64 {
        let g = self.inner.lock();
        g.segments.iter().map(|s| s.size).sum()
    }

    /// Deletes every segment all of whose records are at or below `seq`.
    pub fn remove_through(&self, seq: u64) -> io::Result<()> {
        let mut g = self.inner.lock();
        while g.segments.len() > 1 && g.segments[1].first_seq <= seq + 1 {
            let s = g.segments.remove(0);
            drop(s.file);
            self.disk.remove_file(&s.path)?;
        }
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&self) -> io::Result<()> {
        let files: Vec<(u64, Arc<dyn DiskFile>)> = {
            let mut g = self.inner.lock();
            let mut v = Vec::new();
            for s in g.segments.iter_mut().filter(|s| !s.synced) {
                v.push((s.first_seq, s.file.clone()));
                s.synced = true;
            }
            v
        };
        for (i, (_, f)) in files.iter().enumerate() {
            if let Err(e) = f.sync_data() {
                // Not durable: the next sync tries these segments again.
                let mut g = self.inner.lock();
                for (first, _) in &files[i..] {
                    if let Some(s) = g.segments.iter_mut().find(|s| s.first_seq == *first) {
                        s.synced = false;
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::OsDisk;
    use crate::keys::Table;
    use std::fs::{self, OpenOptions};

    fn batch(k: u8) -> Batch {
        let mut b = Batch::new();
        b.put(Table::Meta, vec![k], vec![k; 3]);
        b
    }

    #[test]
    fn append_rotate_replay() {
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::open(OsDisk::shared(), d.path(), 10).unwrap();
        for i in 0..5u8 {
            wal.append(batch(i), |_, _| {}).unwrap();
            if i == 2 {
                assert_eq!(wal.rotate().unwrap(), 13);
            }
        }
        let mut seen = Vec::new();
        let last = Wal::replay(&OsDisk, d.path(), 11, |s, b| {
            seen.push((s, b.ops[0].key[0]));
            true
        })
        .unwrap();
        assert_eq!(last, 15);
        assert_eq!(seen, vec![(12, 1), (13, 2), (14, 3), (15, 4)]);
        assert_eq!(wal.rotate().unwrap(), 15);
        assert_eq!(wal.rotate().unwrap(), 15, "an empty segment is not rotated again");
        wal.remove_through(15).unwrap();
        wal.append(batch(9), |_, _| {}).unwrap();
        let mut after = Vec::new();
        Wal::replay(&OsDisk, d.path(), 15, |s, _| {
            after.push(s);
            true
        })
        .unwrap();
        assert_eq!(after, vec![16], "appends after a checkpoint stay readable");
        wal.remove_through(13).unwrap();
    }

    fn cut_segment(dir: &Path, index: usize, by: u64) {
        let (_, p) = list_segments(&OsDisk, dir).unwrap().remove(index);
        let len = fs::metadata(&p).unwrap().len();
        OpenOptions::new().write(true).open(&p).unwrap().set_len(len - by).unwrap();
    }

    fn count(dir: &Path, after: u64) -> (u64, u64) {
        let mut n = 0;
        let last = Wal::replay(&OsDisk, dir, after, |_, _| {
            n += 1;
            true
        })
        .unwrap();
        (last, n)
    }

    #[test]
    fn torn_tail_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::open(OsDisk::shared(), d.path(), 0).unwrap();
        wal.append(batch(1), |_, _| {}).unwrap();
        wal.append(batch(1), |_, _| {}).unwrap();
        drop(wal);
        cut_segment(d.path(), 0, 3);
        assert_eq!(count(d.path(), 0), (1, 1));
    }

    #[test]
    fn a_covered_torn_segment_does_not_hide_the_next() {
        // Records 1-3 in the first segment, 4-5 in the second; a checkpoint
        // covered 1-3, but the first segment's removal was lost with its tail.
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::open(OsDisk::shared(), d.path(), 0).unwrap();
        for i in 1..=3 {
            wal.append(batch(i), |_, _| {}).unwrap();
        }
        assert_eq!(wal.rotate().unwrap(), 3);
        for i in 4..=5 {
            wal.append(batch(i), |_, _| {}).unwrap();
        }
        drop(wal);
        cut_segment(d.path(), 0, 5);
        assert_eq!(count(d.path(), 3), (5, 2), "records after the checkpoint are replayed");
        // Without the checkpoint the torn record 3 leaves a gap: replay stops at 2.
        assert_eq!(count(d.path(), 0), (2, 2));
    }

    #[test]
    fn replay_stops_where_apply_says() {
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::open(OsDisk::shared(), d.path(), 0).unwrap();
        for i in 1..=4 {
            wal.append(batch(i), |_, _| {}).unwrap();
        }
        drop(wal);
        let last = Wal::replay(&OsDisk, d.path(), 0, |s, _| s < 3).unwrap();
        assert_eq!(last, 2);
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        let mut data = Vec::new();
        let mut x = magicfs_types::noise::XorShift64::new(7);
        for _ in 0..2000 {
            data.clear();
            for _ in 0..x.below(64) {
                data.push(x.next_u64() as u8);
            }
            let _ = decode_record(&data, 0);
            let _ = decode_record(&data, x.below(70) as usize);
        }
    }
}
