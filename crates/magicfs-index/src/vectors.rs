//! The in-memory vector index: every passage vector in one row-major `f32`
//! matrix, plus an int8 copy (one scale per row) that is a quarter of the
//! size. A query scans the int8 copy on all cores, keeps the best
//! [`CANDIDATES`] rows (or more for a large k), scores those exactly in
//! `f32`, and ranks files by their best passage. With fewer rows than that
//! the scan is exact outright.

use magicfs_embed::DIM;
use rayon::prelude::*;
use std::collections::HashMap;

const FREE: u32 = u32::MAX;
/// Rows re-scored exactly after the int8 scan (at least 16 per result asked for).
pub const CANDIDATES: usize = 1024;
/// Rows scored per rayon task.
const SCAN_BLOCK: usize = 4096;

/// Vectors of every indexed passage, grouped by document.
#[derive(Default)]
pub struct Vectors {
    data: Vec<f32>,
    q8: Vec<i8>,
    scale: Vec<f32>,
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
            let (q, sc) = quantize(v);
            let r = match self.free.pop() {
                Some(r) => {
                    self.data[r as usize * DIM..(r as usize + 1) * DIM].copy_from_slice(v);
                    self.q8[r as usize * DIM..(r as usize + 1) * DIM].copy_from_slice(&q);
                    self.scale[r as usize] = sc;
                    self.owner[r as usize] = slot;
                    r
                }
                None => {
                    self.data.extend_from_slice(v);
                    self.q8.extend_from_slice(&q);
                    self.scale.push(sc);
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
                self.q8[r as usize * DIM..(r as usize + 1) * DIM].fill(0);
                self.scale[r as usize] = 0.0;
                self.free.push(r);
                self.passages -= 1;
            }
        }
        self.free_docs.push(slot);
        true
    }

    /// The best passage of `key` for `query` (a normalised vector).
    pub fn best_of(&self, key: &str, query: &[f32]) -> Option<Scored> {
        let d = self.get(key)?;
        let mut best: Option<(f32, usize)> = None;
        let mut one = [0f32];
        for (i, &r) in d.rows.iter().enumerate() {
            dots(query, self.row(r), &mut one);
            if best.is_none_or(|(s, _)| one[0] > s) {
                best = Some((one[0], i));
            }
        }
        best.map(|(score, passage)| Scored { key: key.to_string(), score, passage })
    }

    /// The `k` best documents for `query` (a normalised vector) scoring at least `min`.
    pub fn search(&self, query: &[f32], k: usize, min: f32) -> Vec<Scored> {
        let rows = self.owner.len();
        let want = CANDIDATES.max(k.saturating_mul(16));
        // (exact score, row) of the rows considered.
        let scored: Vec<(f32, u32)> = if rows - self.free.len() <= want {
            let mut scores = vec![0f32; rows];
            scores.par_chunks_mut(SCAN_BLOCK).enumerate().for_each(|(b, out)| {
                let base = b * SCAN_BLOCK;
                dots(query, &self.data[base * DIM..(base + out.len()) * DIM], out);
            });
            scores.into_iter().enumerate().map(|(r, s)| (s, r as u32)).collect()
        } else {
            let (qq, qs) = quantize(query);
            let mut approx = vec![0f32; rows];
            approx.par_chunks_mut(SCAN_BLOCK).enumerate().for_each(|(b, out)| {
                let base = b * SCAN_BLOCK;
                dots_i8(&qq, &self.q8[base * DIM..(base + out.len()) * DIM], out);
                for (i, o) in out.iter_mut().enumerate() {
                    *o *= qs * self.scale[base + i];
                }
            });
            let mut cand: Vec<(f32, u32)> = approx
                .into_iter()
                .enumerate()
                .filter(|(r, _)| self.owner[*r] != FREE)
                .map(|(r, s)| (s, r as u32))
                .collect();
            if cand.len() > want {
                cand.select_nth_unstable_by(want - 1, |a, b| b.0.total_cmp(&a.0));
                cand.truncate(want);
            }
            let mut one = [0f32];
            cand.into_iter()
                .map(|(_, r)| {
                    dots(query, self.row(r), &mut one);
                    (one[0], r)
                })
                .collect()
        };
        // Best passage per document.
        let mut best: Vec<(f32, u32)> = vec![(f32::NEG_INFINITY, 0); self.docs.len()];
        for (s, r) in scored {
            let o = self.owner[r as usize];
            if o != FREE && s > best[o as usize].0 {
                best[o as usize] = (s, r);
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

/// Symmetric int8 quantisation of a vector: values and the scale that maps them back.
fn quantize(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return (vec![0; v.len()], 0.0);
    }
    let s = max / 127.0;
    (v.iter().map(|x| (x / s).round().clamp(-127.0, 127.0) as i8).collect(), s)
}

/// `out[i] = query · data[i]` in integers (exact: at most 384·127² < 2³¹).
fn dots_i8(query: &[i8], data: &[i8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { dots_i8_avx512(query, data, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { dots_i8_avx2(query, data, out) };
        }
    }
    dots_i8_plain(query, data, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn dots_i8_avx512(query: &[i8], data: &[i8], out: &mut [f32]) {
    dots_i8_plain(query, data, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dots_i8_avx2(query: &[i8], data: &[i8], out: &mut [f32]) {
    dots_i8_plain(query, data, out)
}

#[inline(always)]
fn dots_i8_plain(query: &[i8], data: &[i8], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(data.chunks_exact(DIM)) {
        let mut acc = 0i32;
        for (q, r) in query.iter().zip(row) {
            acc += *q as i16 as i32 * *r as i16 as i32;
        }
        *o = acc as f32;
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

    #[test]
    fn int8_scan_then_exact_rescoring_keeps_the_ranking() {
        let mut v = Vectors::default();
        let mut seed = 1u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let n = CANDIDATES * 3;
        let mut all = Vec::new();
        for d in 0..n {
            let mut x: Vec<f32> = (0..DIM).map(|_| rnd()).collect();
            let norm = x.iter().map(|a| a * a).sum::<f32>().sqrt();
            x.iter_mut().for_each(|a| *a /= norm);
            v.set(&format!("d{d}"), vec![[0; 32]], &x);
            all.push(x);
        }
        let q = all[77].clone();
        let hits = v.search(&q, 10, -1.0);
        let mut exact: Vec<(f32, usize)> =
            all.iter().enumerate().map(|(i, x)| (x.iter().zip(&q).map(|(a, b)| a * b).sum(), i)).collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<String> = exact[..10].iter().map(|(_, i)| format!("d{i}")).collect();
        let got: Vec<String> = hits.iter().map(|h| h.key.clone()).collect();
        assert_eq!(got, want);
        assert!((hits[0].score - 1.0).abs() < 1e-5);
    }
}
