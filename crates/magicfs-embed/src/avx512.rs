//! An AVX-512 matrix product for the dense layers, used when the CPU has
//! AVX-512F (the `gemm` crate's stable build stops at AVX2): the weights
//! are packed once at load into panels of 32 columns (`[n/32][k][32]`), and
//! a 12×32 register tile (24 accumulators) runs over the whole `k` of a
//! panel while the panel stays in L2. Rows are split into chunks that run
//! side by side on rayon when asked.

use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Columns per panel (two 16-lane registers).
const NR: usize = 32;
/// Rows per register tile.
const MR: usize = 12;
/// Rows per chunk: a chunk of activations stays in L2 while every panel passes over it.
const CHUNK: usize = 96;

/// Weights `[k, n]` packed for [`matmul`].
pub struct Packed {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

/// True if this CPU runs the AVX-512 path.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Packed {
    /// Packs row-major `w` (`k` rows, `n` columns; `n` a multiple of 32).
    pub fn new(w: &[f32], k: usize, n: usize) -> Option<Packed> {
        if !n.is_multiple_of(NR) || w.len() != k * n {
            return None;
        }
        let mut data = vec![0f32; k * n];
        for p in 0..n / NR {
            for kk in 0..k {
                let src = &w[kk * n + p * NR..kk * n + p * NR + NR];
                data[(p * k + kk) * NR..(p * k + kk + 1) * NR].copy_from_slice(src);
            }
        }
        Some(Packed { data, k, n })
    }
}

#[derive(Clone, Copy)]
struct Ptr(*mut f32);
// SAFETY: chunks write disjoint rows of the output.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

impl Ptr {
    /// The pointer (a method, so closures capture the `Send` wrapper whole).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `c[m×n] += a[m×k] · w`, `a` and `c` row-major and dense.
pub fn matmul(a: &[f32], m: usize, w: &Packed, c: &mut [f32], parallel: bool) {
    assert!(a.len() >= m * w.k && c.len() >= m * w.n, "matmul: buffers too small");
    assert!(available(), "matmul: AVX-512F is not available");
    let cp = Ptr(c.as_mut_ptr());
    let chunk = |start: usize| {
        let rows = CHUNK.min(m - start);
        // SAFETY: AVX-512F is present (checked above); the chunk's rows of
        // `a` and `c` are in bounds (checked above) and no other chunk writes them.
        unsafe { chunk_avx512(a.as_ptr().add(start * w.k), rows, w, cp.get().add(start * w.n)) }
    };
    let starts: Vec<usize> = (0..m).step_by(CHUNK).collect();
    if parallel && starts.len() > 1 {
        starts.par_iter().for_each(|&s| chunk(s));
    } else {
        starts.iter().for_each(|&s| chunk(s));
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn chunk_avx512(a: *const f32, rows: usize, w: &Packed, c: *mut f32) {
    let (k, n) = (w.k, w.n);
    for p in 0..n / NR {
        let b = w.data.as_ptr().add(p * k * NR);
        let mut i = 0;
        while i + MR <= rows {
            tile::<MR>(k, a.add(i * k), k, b, c.add(i * n + p * NR), n);
            i += MR;
        }
        while i + 4 <= rows {
            tile::<4>(k, a.add(i * k), k, b, c.add(i * n + p * NR), n);
            i += 4;
        }
        while i < rows {
            tile::<1>(k, a.add(i * k), k, b, c.add(i * n + p * NR), n);
            i += 1;
        }
    }
}

/// `R` rows × 32 columns: `c += a · b` over all of `k`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(k: usize, a: *const f32, lda: usize, b: *const f32, c: *mut f32, ldc: usize) {
    let mut lo = [_mm512_setzero_ps(); R];
    let mut hi = [_mm512_setzero_ps(); R];
    for kk in 0..k {
        let b0 = _mm512_loadu_ps(b.add(kk * NR));
        let b1 = _mm512_loadu_ps(b.add(kk * NR + 16));
        for r in 0..R {
            let av = _mm512_set1_ps(*a.add(r * lda + kk));
            lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
        }
    }
    for r in 0..R {
        let row = c.add(r * ldc);
        _mm512_storeu_ps(row, _mm512_add_ps(_mm512_loadu_ps(row), lo[r]));
        _mm512_storeu_ps(row.add(16), _mm512_add_ps(_mm512_loadu_ps(row.add(16)), hi[r]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_product() {
        if !available() {
            return;
        }
        let (m, k, n) = (101, 70, 64);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
        let packed = Packed::new(&w, k, n).unwrap();
        for parallel in [false, true] {
            let mut c = vec![1.0f32; m * n];
            matmul(&a, m, &packed, &mut c, parallel);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = 1.0 + (0..k).map(|t| a[i * k + t] * w[t * n + j]).sum::<f32>();
                    assert!((c[i * n + j] - want).abs() < 1e-3, "{i},{j}: {} vs {want}", c[i * n + j]);
                }
            }
        }
    }
}
