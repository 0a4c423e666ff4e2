//! The in-memory vector index: every passage vector in one row-major `f32`
//! matrix, scanned exactly on all cores. A file scores by its best passage.

use magicfs_embed::DIM;
use rayon::prelude::*;
use std::collections::HashMap;

const FREE: u32 = u32::MAX;
/// Rows scored per rayon task.
const SCAN_BLOCK: usize = 4096;

/// Vectors of every indexed passage, grouped by document.
#[derive(Default)]
pub struct Vectors {
    data: Vec<f32>,
    owner: Vec<u32>,
    free: Vec<u32>,
    docs: Vec<Option<DocRows>>,
    free_docs: Vec<u32>,
    by_key: HashMap<String, u32>,
    passages: usize,
}

/// Rows of one document.
pub struct DocRows {
    /// Its key.
    pub key: String,
    /// Row of each passage, in passage order.
    pub rows: Vec<u32>,
    /// Passage hashes, in passage order.
    pub hashes: Vec<[u8; 32]>,
}

/// One scored document.
#[derive(Clone, Debug)]
pub struct Scored {
    /// Document key.
    pub key: String,
    /// Cosine similarity of its best passage.
    pub score: f32,
    /// Index of that passage.
    pub passage: usize,
}

impl Vectors {
    /// Number of passages.
    pub fn passages(&self) -> usize {
        self.passages
    }

    /// Number of documents with at least one passage.
    pub fn docs(&self) -> usize {
        self.by_key.len()
    }

    /// The rows of `key`.
    pub fn get(&self, key: &str) -> Option<&DocRows> {
        self.by_key.get(key).and_then(|&s| self.docs[s as usize].as_ref())
    }

    /// Vector of a row.
    pub fn row(&self, r: u32) -> &[f32] {
        &self.data[r as usize * DIM..(r as usize + 1) * DIM]
    }

    /// True if `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// Keys of every document.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.by_key.keys()
    }

    /// Replaces the passages of `key` (no passages removes it).
    pub fn set(&mut self, key: &str, hashes: Vec<[u8; 32]>, vectors: &[f32]) {
        self.remove(key);
        if hashes.is_empty() {
            return;
        }
        let slot = self.free_docs.pop().unwrap_or_else(|| {
            self.docs.push(None);
            (self.docs.len() - 1) as u32
        });
        let mut rows = Vec::with_capacity(hashes.len());
        for v in vectors.chunks_exact(DIM) {
            let r = match self.free.pop() {
                Some(r) => {
                    self.data[r as usize * DIM..(r as usize + 1) * DIM].copy_from_slice(v);
                    self.owner[r as usize] = slot;
                    r
                }
                None => {
                    self.data.extend_from_slice(v);
                    self.owner.push(slot);
                    (self.owner.len() - 1) as u32
                }
            };
            rows.push(r);
        }
        self.passages += rows.len();
        self.docs[slot as usize] = Some(DocRows { key: key.to_string(), rows, hashes });
        self.by_key.insert(key.to_string(), slot);
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(slot) = self.by_key.remove(key) else { return false };
        if let Some(d) = self.docs[slot as usize].take() {
            for r in d.rows {
                self.owner[r as usize] = FREE;
                self.data[r as usize * DIM..(r as usize + 1) * DIM].fill(0.0);
                self.free.push(r);
                self.passages -= 1;
            }
        }
        self.free_docs.push(slot);
        true
    }

    /// The `k` best documents for `query` (a normalised vector) scoring at least `min`.
    pub fn search(&self, query: &[f32], k: usize, min: f32) -> Vec<Scored> {
        let rows = self.owner.len();
        let mut scores = vec![0f32; rows];
        scores.par_chunks_mut(SCAN_BLOCK).enumerate().for_each(|(b, out)| {
            let base = b * SCAN_BLOCK;
            let data = &self.data[base * DIM..(base + out.len()) * DIM];
            dots(query, data, out);
        });
        // Best passage per document.
        let mut best: Vec<(f32, u32)> = vec![(f32::NEG_INFINITY, 0); self.docs.len()];
        for (r, (&o, &s)) in self.owner.iter().zip(&scores).enumerate() {
            if o != FREE && s > best[o as usize].0 {
                best[o as usize] = (s, r as u32);
            }
        }
        let mut hits: Vec<(f32, u32, u32)> = best
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s >= min)
            .map(|(slot, (s, r))| (*s, slot as u32, *r))
            .collect();
        let by_score = |a: &(f32, u32, u32), b: &(f32, u32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if hits.len() > k && k > 0 {
            hits.select_nth_unstable_by(k - 1, by_score);
            hits.truncate(k);
        }
        hits.sort_by(by_score);
        hits.truncate(k);
        hits.into_iter()
            .filter_map(|(score, slot, row)| {
                let d = self.docs[slot as usize].as_ref()?;
                let passage = d.rows.iter().position(|&r| r == row)?;
                Some(Scored { key: d.key.clone(), score, passage })
            })
            .collect()
    }
}

/// `out[i] = query · data[i]`.
fn dots(query: &[f32], data: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { dots_avx2(query, data, out) };
        }
    }
    dots_plain(query, data, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2(query: &[f32], data: &[f32], out: &mut [f32]) {
    dots_plain(query, data, out)
}

#[inline(always)]
fn dots_plain(query: &[f32], data: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(data.chunks_exact(DIM)) {
        let mut acc = [0f32; 16];
        for (q, r) in query.chunks_exact(16).zip(row.chunks_exact(16)) {
            for i in 0..16 {
                acc[i] += q[i] * r[i];
            }
        }
        *o = acc.iter().sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; DIM];
        v[i] = 1.0;
        v
    }

    #[test]
    fn best_passage_wins_and_removal_frees_rows() {
        let mut v = Vectors::default();
        let a: Vec<f32> = [unit(0), unit(1)].concat();
        v.set("a", vec![[1; 32], [2; 32]], &a);
        v.set("b", vec![[3; 32]], &unit(2));
        let mut q = unit(1);
        q[2] = 0.5;
        let hits = v.search(&q, 10, 0.1);
        assert_eq!((hits[0].key.as_str(), hits[0].passage), ("a", 1));
        assert_eq!(hits[1].key, "b");
        assert!(v.remove("a"));
        assert_eq!(v.passages(), 1);
        v.set("c", vec![[4; 32]], &unit(1));
        assert_eq!(v.search(&q, 1, 0.0)[0].key, "c");
        assert_eq!(v.owner.len(), 3, "freed rows are reused");
    }
}
