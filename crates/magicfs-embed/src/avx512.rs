//! An AVX-512 matrix product for the dense layers, used when the CPU has
//! AVX-512F (the `gemm` crate's stable build stops at AVX2): the weights
//! are packed once at load into panels of 32 columns (`[n/32][k][32]`), and
//! a 12×32 register tile (24 accumulators) runs over the whole `k` of a
//! panel while the panel stays in L2. Rows are split into chunks that run
//! side by side on rayon when asked.

use crate::bert::SendPtr;
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

/// True if this CPU runs the AVX-512 path (checked once; setting
/// `MAGICFS_EMBED_NO_AVX512` turns it off, for tests of the portable path).
pub fn available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::env::var_os("MAGICFS_EMBED_NO_AVX512").is_none() && std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
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

/// `c[m×n] += a[m×k] · w`, `a` and `c` row-major and dense.
pub fn matmul(a: &[f32], m: usize, w: &Packed, c: &mut [f32], parallel: bool) {
    assert!(a.len() >= m * w.k && c.len() >= m * w.n, "matmul: buffers too small");
    assert!(available(), "matmul: AVX-512F is not available");
    let cp = SendPtr(c.as_mut_ptr());
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
        panel::<true>(rows, k, a, k, b, NR, c.add(p * NR), n);
    }
}

/// `R` rows × 32 columns: `c += a · b` over all of `k` (`c = a · b` when
/// `ADD` is false), `b` rows `ldb` floats apart.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize, const ADD: bool>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    let mut lo = [_mm512_setzero_ps(); R];
    let mut hi = [_mm512_setzero_ps(); R];
    for kk in 0..k {
        let b0 = _mm512_loadu_ps(b.add(kk * ldb));
        let b1 = _mm512_loadu_ps(b.add(kk * ldb + 16));
        for r in 0..R {
            let av = _mm512_set1_ps(*a.add(r * lda + kk));
            lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
        }
    }
    for r in 0..R {
        let row = c.add(r * ldc);
        if ADD {
            _mm512_storeu_ps(row, _mm512_add_ps(_mm512_loadu_ps(row), lo[r]));
            _mm512_storeu_ps(row.add(16), _mm512_add_ps(_mm512_loadu_ps(row.add(16)), hi[r]));
        } else {
            _mm512_storeu_ps(row, lo[r]);
            _mm512_storeu_ps(row.add(16), hi[r]);
        }
    }
}

/// `c[rows×32] (+)= a[rows×k] · b[k×32]` in register tiles of 12, 4 and 1 rows.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn panel<const ADD: bool>(
    rows: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    let mut i = 0;
    while i + MR <= rows {
        tile::<MR, ADD>(k, a.add(i * lda), lda, b, ldb, c.add(i * ldc), ldc);
        i += MR;
    }
    while i + 4 <= rows {
        tile::<4, ADD>(k, a.add(i * lda), lda, b, ldb, c.add(i * ldc), ldc);
        i += 4;
    }
    while i < rows {
        tile::<1, ADD>(k, a.add(i * lda), lda, b, ldb, c.add(i * ldc), ldc);
        i += 1;
    }
}

/// One (sequence, head) of self-attention: `out = softmax(scale·Q·Kᵀ)·V`
/// with a head width of 32. `q`, `k`, `v` point at `l` rows `stride`
/// floats apart, `out` at `l` rows `ldo` floats apart; `kt` and `scores`
/// are scratch space.
///
/// # Safety
/// The CPU has AVX-512F; the pointers cover the regions described.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn attention_head(
    q: *const f32,
    k: *const f32,
    v: *const f32,
    stride: usize,
    l: usize,
    scale: f32,
    kt: &mut Vec<f32>,
    scores: &mut Vec<f32>,
    out: *mut f32,
    ldo: usize,
) {
    const D: usize = 32;
    let lp = l.div_ceil(NR) * NR;
    // Kᵀ, zero-padded to whole panels (kt[d·lp + j] = k[j][d]), then Q and V
    // packed densely: the rows of `qkv` are 4.5 KiB apart, which would map
    // every head's rows onto a few L1 sets.
    kt.clear();
    kt.resize(D * lp + 2 * l * D, 0.0);
    let (ktp, rest) = kt.split_at_mut(D * lp);
    let (qc, vc) = rest.split_at_mut(l * D);
    for j in 0..l {
        let kj = std::slice::from_raw_parts(k.add(j * stride), D);
        for (d, &x) in kj.iter().enumerate() {
            *ktp.get_unchecked_mut(d * lp + j) = x;
        }
        qc[j * D..(j + 1) * D].copy_from_slice(std::slice::from_raw_parts(q.add(j * stride), D));
        vc[j * D..(j + 1) * D].copy_from_slice(std::slice::from_raw_parts(v.add(j * stride), D));
    }
    scores.resize(l * lp, 0.0);
    let sp = scores.as_mut_ptr();
    for p in 0..lp / NR {
        panel::<false>(l, D, qc.as_ptr(), D, ktp.as_ptr().add(p * NR), lp, sp.add(p * NR), lp);
    }
    for i in 0..l {
        softmax_scaled(std::slice::from_raw_parts_mut(sp.add(i * lp), l), scale);
    }
    panel::<false>(l, l, sp, lp, vc.as_ptr(), D, out, ldo);
}

/// `r = softmax(scale·r)` (scale > 0).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn softmax_scaled(r: &mut [f32], scale: f32) {
    let n = r.len();
    let p = r.as_mut_ptr();
    let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i + 16 <= n {
        mx = _mm512_max_ps(mx, _mm512_loadu_ps(p.add(i)));
        i += 16;
    }
    let mut m = _mm512_reduce_max_ps(mx);
    for &x in &r[i..] {
        m = m.max(x);
    }
    let (vs, vm) = (_mm512_set1_ps(scale), _mm512_set1_ps(m * scale));
    let mut sum = _mm512_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        let e = exp512(_mm512_fmsub_ps(_mm512_loadu_ps(p.add(i)), vs, vm));
        _mm512_storeu_ps(p.add(i), e);
        sum = _mm512_add_ps(sum, e);
        i += 16;
    }
    if i < n {
        let mask: __mmask16 = (1u32 << (n - i)).wrapping_sub(1) as __mmask16;
        let x = _mm512_maskz_loadu_ps(mask, p.add(i));
        let e = exp512(_mm512_fmsub_ps(x, vs, vm));
        let e = _mm512_maskz_mov_ps(mask, e);
        _mm512_mask_storeu_ps(p.add(i), mask, e);
        sum = _mm512_add_ps(sum, e);
    }
    let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
    let mut i = 0;
    while i + 16 <= n {
        _mm512_storeu_ps(p.add(i), _mm512_mul_ps(_mm512_loadu_ps(p.add(i)), inv));
        i += 16;
    }
    for x in &mut r[i..] {
        *x *= 1.0 / _mm512_reduce_add_ps(sum);
    }
}

/// GELU with the error function lane-wise (the same approximation as the
/// scalar `bert::gelu`: Abramowitz–Stegun 7.1.26, |error| < 1.5e-7).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn gelu512(x: __m512) -> __m512 {
    let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let sign = _mm512_set1_epi32(i32::MIN);
    let a = _mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(z)));
    let one = _mm512_set1_ps(1.0);
    let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.327_591_1), a, one));
    let mut poly = _mm512_set1_ps(1.061_405_4);
    for c in [-1.453_152_1, 1.421_413_7, -0.284_496_74, 0.254_829_6] {
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(c));
    }
    poly = _mm512_mul_ps(poly, t);
    let e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
    let erf_abs = _mm512_fnmadd_ps(poly, e, one);
    let erf = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(erf_abs),
        _mm512_and_si512(_mm512_castps_si512(z), sign),
    ));
    _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), x), _mm512_add_ps(one, erf))
}

/// `e^x` lane-wise, to about 1e-6 relative error for x ≤ 0 (the same
/// polynomial as the scalar `fast_exp`).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp512(x: __m512) -> __m512 {
    let x = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
    let t = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E));
    let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
    let f = _mm512_mul_ps(_mm512_sub_ps(t, r), _mm512_set1_ps(std::f32::consts::LN_2));
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, r)
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
        let (a, w) = crate::test_operands(m, k, n);
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

    #[test]
    fn attention_head_matches_the_definition() {
        if !available() {
            return;
        }
        for l in [1usize, 5, 33, 70] {
            let stride = 100;
            let qkv: Vec<f32> = (0..l * stride).map(|i| ((i * 29 % 89) as f32 - 44.0) / 30.0).collect();
            let (q, k, v) = (&qkv[..], &qkv[32..], &qkv[64..]);
            let mut out = vec![0f32; l * 40];
            let (mut kt, mut sc) = (Vec::new(), Vec::new());
            // SAFETY: the CPU has AVX-512F; l rows of 32 floats at each offset.
            unsafe {
                attention_head(
                    q.as_ptr(),
                    k.as_ptr(),
                    v.as_ptr(),
                    stride,
                    l,
                    0.3,
                    &mut kt,
                    &mut sc,
                    out.as_mut_ptr(),
                    40,
                )
            };
            for i in 0..l {
                let s: Vec<f64> = (0..l)
                    .map(|j| 0.3 * (0..32).map(|d| (q[i * stride + d] * k[j * stride + d]) as f64).sum::<f64>())
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..32 {
                    let want: f64 = (0..l).map(|j| e[j] / z * v[j * stride + d] as f64).sum();
                    let got = out[i * 40 + d] as f64;
                    assert!((got - want).abs() < 1e-4, "l {l} row {i} col {d}: {got} vs {want}");
                }
            }
        }
    }
}
