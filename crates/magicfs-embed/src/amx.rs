//! A bf16 matrix product on Intel AMX for the dense layers, used when the
//! CPU has AMX-TILE and AMX-BF16 and the kernel grants the tile state
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`).
//!
//! Weights are rounded to bf16 once at load and packed for the tile unit:
//! per panel of 32 output columns and per 32 inputs, two 16×(16 pairs)
//! tiles in the VNNI pair layout. Activations are rounded to bf16 per call
//! (round to nearest even); products accumulate in f32 inside the tiles. A
//! 32×32 output block lives in four tile registers for the whole `k` loop
//! (2 A tiles × 2 B tiles per step); then an AVX-512 epilogue adds the bias
//! and either stores, applies GELU, or adds to the output (the residual), so
//! the layer's output is written once.
//!
//! The instructions are written with `asm!` (the AMX intrinsics are not
//! stable); no other code of the process touches the tile registers.

use crate::bert::SendPtr;
use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use std::arch::asm;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
use crate::avx512::gelu512;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output columns per panel (two tiles of 16).
const NR: usize = 32;
/// Inputs per tile step (32 bf16 = one 64-byte tile row).
const KB: usize = 32;
/// Rows per output block (two tiles of 16).
const MB: usize = 32;
/// Rows per chunk handed to one thread.
const CHUNK: usize = 128;

/// Weights `[k, n]` as bf16 packed for [`matmul`].
pub struct Packed {
    data: Vec<u16>,
    k: usize,
    n: usize,
}

/// True if this CPU runs the AMX path (checked once: CPUID, then the
/// kernel's permission to use the tile data state; setting
/// `MAGICFS_EMBED_NO_AMX` turns it off, for tests of the fp32 paths).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> bool {
    if std::env::var_os("MAGICFS_EMBED_NO_AMX").is_some() {
        return false;
    }
    if std::arch::x86_64::__cpuid(0).eax < 7 {
        return false;
    }
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let (bf16, tile) = (leaf7.edx & (1 << 22) != 0, leaf7.edx & (1 << 24) != 0);
    if !(bf16 && tile && crate::avx512::available() && std::arch::is_x86_feature_detected!("avx512bf16")) {
        return false;
    }
    extern "C" {
        fn syscall(num: i64, ...) -> i64;
    }
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    // SAFETY: arch_prctl with an integer argument; it only changes this
    // process's permission to use the AMX tile state.
    unsafe { syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> bool {
    false
}

/// `x` rounded to bf16 (nearest, ties to even; inputs are finite).
#[inline(always)]
fn bf16(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// 16 floats at `p` rounded to bf16 (nearest, ties to even).
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn cvt16(p: *const f32) -> __m256i {
    std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(p)))
}

/// `dst[i] = bf16(src[i])`.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn cvt_slice(src: &[f32], dst: &mut [u16]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 16 <= n {
        _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, cvt16(src.as_ptr().add(i)));
        i += 16;
    }
    for j in i..n {
        dst[j] = bf16(src[j]);
    }
}

impl Packed {
    /// Packs row-major `w` (`k` rows, `n` columns; both multiples of 32).
    pub fn new(w: &[f32], k: usize, n: usize) -> Option<Packed> {
        if !n.is_multiple_of(NR) || !k.is_multiple_of(KB) || w.len() != k * n {
            return None;
        }
        let mut data = vec![0u16; k * n];
        // Panel p, step s, tile t (columns p·32 + t·16 ..), row r (inputs s·32 + 2r, +1).
        for p in 0..n / NR {
            for s in 0..k / KB {
                for t in 0..2 {
                    let base = ((p * (k / KB) + s) * 2 + t) * 512;
                    for r in 0..16 {
                        for j in 0..16 {
                            for e in 0..2 {
                                let kk = s * KB + 2 * r + e;
                                let col = p * NR + t * 16 + j;
                                data[base + r * 32 + j * 2 + e] = bf16(w[kk * n + col]);
                            }
                        }
                    }
                }
            }
        }
        Some(Packed { data, k, n })
    }
}

/// What is done with each finished block of `a · w`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Epilogue {
    /// `c = a·w + bias`.
    Store,
    /// `c = gelu(a·w + bias)`.
    Gelu,
    /// `c += a·w + bias`.
    Add,
}

/// `c[m×n] (op)= a[m×k] · w + bias`, `a` and `c` row-major and dense; `a`
/// is rounded to bf16.
pub fn matmul(a: &[f32], m: usize, w: &Packed, bias: &[f32], c: &mut [f32], parallel: bool, ep: Epilogue) {
    assert!(a.len() >= m * w.k && c.len() >= m * w.n && bias.len() >= w.n, "matmul: buffers too small");
    assert!(available(), "matmul: AMX is not available");
    let cp = SendPtr(c.as_mut_ptr());
    let chunk = |start: usize| {
        let rows = CHUNK.min(m - start);
        // SAFETY: AMX is present and permitted (checked above); the chunk's rows
        // of `a` and `c` are in bounds (checked above) and no other chunk writes them.
        unsafe { chunk_amx(&a[start * w.k..(start + rows) * w.k], rows, w, bias, cp.get().add(start * w.n), ep) }
    };
    let starts: Vec<usize> = (0..m).step_by(CHUNK).collect();
    if parallel && starts.len() > 1 {
        starts.par_iter().for_each(|&s| chunk(s));
    } else {
        starts.iter().for_each(|&s| chunk(s));
    }
}

/// The tile configuration: palette 1, tiles 0–7 all 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> TileConfig {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64; // bytes per row (little-endian u16)
            c[48 + t] = 16; // rows
        }
        TileConfig(c)
    }
}

thread_local! {
    /// Per-thread bf16 copy of a chunk of activations.
    static ABUF: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One chunk of rows: round `a` to bf16 (rows padded with zeros to a
/// multiple of 32), then every 32×32 block over all of `k`, finished by `ep`.
///
/// # Safety
/// AMX is available and permitted; `c` holds `rows` rows of `w.n` floats.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn chunk_amx(a: &[f32], rows: usize, w: &Packed, bias: &[f32], c: *mut f32, ep: Epilogue) {
    let (k, n) = (w.k, w.n);
    let padded = rows.div_ceil(MB) * MB;
    ABUF.with_borrow_mut(|buf| {
        buf.clear();
        buf.resize(padded * k, 0);
        cvt_slice(&a[..rows * k], &mut buf[..rows * k]);
        let cfg = TileConfig::new();
        asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        let mut acc = Acc([0f32; MB * NR]);
        let blocks = padded / MB;
        let panels = n / NR;
        // Row blocks outer: a block's activations (32 × k bf16) stay in L1
        // while the weight panels stream past.
        for t in 0..blocks * panels {
            let (i, p) = (t / panels * MB, t % panels);
            let b = w.data.as_ptr().add(p * k * NR) as *const u8;
            let (b0, b1) =
                (_mm512_loadu_ps(bias.as_ptr().add(p * NR)), _mm512_loadu_ps(bias.as_ptr().add(p * NR + 16)));
            block(buf.as_ptr().add(i * k) as *const u8, k * 2, b, k / KB, acc.0.as_mut_ptr() as *mut u8, NR * 4);
            for r in 0..(rows - i).min(MB) {
                let out = c.add((i + r) * n + p * NR);
                let row = acc.0.as_ptr().add(r * NR);
                let mut v0 = _mm512_add_ps(_mm512_loadu_ps(row), b0);
                let mut v1 = _mm512_add_ps(_mm512_loadu_ps(row.add(16)), b1);
                match ep {
                    Epilogue::Store => {}
                    Epilogue::Gelu => {
                        v0 = gelu512(v0);
                        v1 = gelu512(v1);
                    }
                    Epilogue::Add => {
                        v0 = _mm512_add_ps(v0, _mm512_loadu_ps(out));
                        v1 = _mm512_add_ps(v1, _mm512_loadu_ps(out.add(16)));
                    }
                }
                _mm512_storeu_ps(out, v0);
                _mm512_storeu_ps(out.add(16), v1);
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    });
}

/// A finished 32×32 block.
#[repr(C, align(64))]
struct Acc([f32; MB * NR]);

/// `c[32×32] = a[32×(steps·32)] · b`, with `a` rows `lda` bytes apart, `c`
/// rows `ldc` bytes apart and `b` the panel's packed tiles.
///
/// # Safety
/// The tile configuration of [`TileConfig::new`] is loaded; the pointers
/// cover the regions described.
#[inline(always)]
unsafe fn block(a: *const u8, lda: usize, b: *const u8, steps: usize, c: *mut u8, ldc: usize) {
    asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
    let a1 = a.add(16 * lda);
    for s in 0..steps {
        let bs = b.add(s * 2048);
        asm!(
            "tileloadd tmm4, [{a0} + {lda}*1]",
            "tileloadd tmm6, [{b0} + {ldb}*1]",
            "tileloadd tmm7, [{b1} + {ldb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm5, [{a1} + {lda}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a.add(s * 64), a1 = in(reg) a1.add(s * 64), lda = in(reg) lda,
            b0 = in(reg) bs, b1 = in(reg) bs.add(1024), ldb = in(reg) 64usize,
            options(nostack, readonly)
        );
    }
    asm!(
        "tilestored [{c0} + {ldc}*1], tmm0",
        "tilestored [{c1} + {ldc}*1], tmm1",
        "tilestored [{c2} + {ldc}*1], tmm2",
        "tilestored [{c3} + {ldc}*1], tmm3",
        c0 = in(reg) c, c1 = in(reg) c.add(64), c2 = in(reg) c.add(16 * ldc), c3 = in(reg) c.add(16 * ldc + 64),
        ldc = in(reg) ldc,
        options(nostack)
    );
}

/// Scratch space of [`attention_head`].
#[derive(Default)]
pub struct AttnScratch {
    q: Vec<u16>,
    k: Vec<u16>,
    v: Vec<u16>,
    p: Vec<u16>,
    s: Vec<f32>,
}

/// One (sequence, head) of self-attention on AMX: `out = softmax(scale·Q·Kᵀ)·V`
/// with a head width of 32, Q, K, V and the probabilities rounded to bf16
/// (f32 scores, softmax and sums). `q`, `k`, `v` point at `l` rows `stride`
/// floats apart, `out` at `l` rows `ldo` floats apart.
///
/// # Safety
/// [`available`] is true; the pointers cover the regions described.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn attention_head(
    q: *const f32,
    k: *const f32,
    v: *const f32,
    stride: usize,
    l: usize,
    scale: f32,
    sc: &mut AttnScratch,
    out: *mut f32,
    ldo: usize,
) {
    const D: usize = 32;
    let lp = l.div_ceil(MB) * MB;
    // Q: lp rows of 32 bf16 (zero rows past l).
    sc.q.clear();
    sc.q.resize(lp * D, 0);
    for i in 0..l {
        let dst = sc.q.as_mut_ptr().add(i * D) as *mut __m256i;
        _mm256_storeu_si256(dst, cvt16(q.add(i * stride)));
        _mm256_storeu_si256(dst.add(1), cvt16(q.add(i * stride + 16)));
    }
    // Kᵀ as B tiles: key panel p, tile t (keys p·32 + 16t + j), row r = dims
    // 2r, 2r+1 — one key's 16 dim pairs go to column j of the 16 rows.
    sc.k.clear();
    sc.k.resize(lp * D, 0);
    let rows16 = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(16),
    );
    for key in 0..l {
        let lo = _mm512_cvtepu16_epi32(cvt16(k.add(key * stride)));
        let hi = _mm512_cvtepu16_epi32(cvt16(k.add(key * stride + 16)));
        // Pairs (d = 2r, 2r+1) as one u32 each.
        let pairs = _mm512_or_si512(
            _mm512_permutex2var_epi32(
                lo,
                _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                hi,
            ),
            _mm512_slli_epi32(
                _mm512_permutex2var_epi32(
                    lo,
                    _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
                    hi,
                ),
                16,
            ),
        );
        let (p, t, j) = (key / 32, (key / 16) % 2, key % 16);
        let base = sc.k.as_mut_ptr().add((p * 2 + t) * 512) as *mut i32;
        _mm512_i32scatter_epi32::<4>(base.add(j), rows16, pairs);
    }
    // V as B tiles: key step s, tile t (dims 16t + j), row r = keys s·32 + 2r, +1:
    // two keys' bf16 values interleaved.
    sc.v.clear();
    sc.v.resize(lp * D, 0);
    for key in (0..l).step_by(2) {
        let (s, r) = (key / 32, (key % 32) / 2);
        for t in 0..2 {
            let a = _mm512_cvtepu16_epi32(cvt16(v.add(key * stride + 16 * t)));
            let b = if key + 1 < l {
                _mm512_cvtepu16_epi32(cvt16(v.add((key + 1) * stride + 16 * t)))
            } else {
                _mm512_setzero_si512()
            };
            let row = _mm512_or_si512(a, _mm512_slli_epi32(b, 16));
            _mm512_storeu_si512(sc.v.as_mut_ptr().add((s * 2 + t) * 512 + r * 32) as *mut __m512i, row);
        }
    }
    sc.s.resize(lp * lp, 0.0);
    sc.p.clear();
    sc.p.resize(lp * lp, 0);
    let cfg = TileConfig::new();
    asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
    let sp = sc.s.as_mut_ptr();
    for i in (0..lp).step_by(MB) {
        for p in 0..lp / NR {
            let a = sc.q.as_ptr().add(i * D) as *const u8;
            let b = sc.k.as_ptr().add(p * 1024) as *const u8;
            block(a, D * 2, b, 1, sp.add(i * lp + p * NR) as *mut u8, lp * 4);
        }
    }
    for i in 0..l {
        let row = std::slice::from_raw_parts_mut(sp.add(i * lp), l);
        crate::avx512::softmax_scaled(row, scale);
        cvt_slice(row, &mut sc.p[i * lp..i * lp + l]);
    }
    let mut acc = Acc([0f32; MB * NR]);
    for i in (0..l).step_by(MB) {
        let a = sc.p.as_ptr().add(i * lp) as *const u8;
        block(a, lp * 2, sc.v.as_ptr() as *const u8, lp / KB, acc.0.as_mut_ptr() as *mut u8, NR * 4);
        for r in 0..(l - i).min(MB) {
            let o = std::slice::from_raw_parts_mut(out.add((i + r) * ldo), D);
            o.copy_from_slice(&acc.0[r * NR..(r + 1) * NR]);
        }
    }
    asm!("tilerelease", options(nostack, nomem));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_product() {
        if !available() {
            return;
        }
        let (m, k, n) = (101, 96, 64);
        let (a, w) = crate::test_operands(m, k, n);
        let packed = Packed::new(&w, k, n).unwrap();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 / 10.0).collect();
        for (parallel, ep) in [(false, Epilogue::Store), (true, Epilogue::Add), (false, Epilogue::Gelu)] {
            let mut c = vec![1.0f32; m * n];
            matmul(&a, m, &packed, &bias, &mut c, parallel, ep);
            for i in 0..m {
                for j in 0..n {
                    // The exact product of the bf16-rounded inputs.
                    let r = |x: f32| f32::from_bits((bf16(x) as u32) << 16) as f64;
                    let dot = bias[j] as f64 + (0..k).map(|t| r(a[i * k + t]) * r(w[t * n + j])).sum::<f64>();
                    let want = match ep {
                        Epilogue::Store => dot,
                        Epilogue::Add => 1.0 + dot,
                        Epilogue::Gelu => crate::bert::gelu(dot as f32) as f64,
                    };
                    let got = c[i * n + j] as f64;
                    assert!((got - want).abs() < 1e-3, "{ep:?} {i},{j}: {got} vs {want}");
                }
            }
        }
    }

    /// CPU time of this thread, in seconds.
    fn thread_cpu() -> f64 {
        #[repr(C)]
        struct Ts(i64, i64);
        extern "C" {
            fn clock_gettime(clk: i32, tp: *mut Ts) -> i32;
        }
        let mut t = Ts(0, 0);
        // SAFETY: CLOCK_THREAD_CPUTIME_ID with a valid out pointer.
        unsafe { clock_gettime(3, &mut t) };
        t.0 as f64 + t.1 as f64 * 1e-9
    }

    /// Throughput of the product on the model's shapes:
    /// `cargo test --release -p magicfs-embed amx_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn amx_speed() {
        if !available() {
            return;
        }
        for (m, k, n) in [(3872, 384, 1152), (3872, 384, 1536), (3872, 1536, 384), (242, 384, 1536)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let w: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let packed = Packed::new(&w, k, n).unwrap();
            let mut c = vec![0f32; m * n];
            let bias = vec![0f32; n];
            matmul(&a, m, &packed, &bias, &mut c, false, Epilogue::Store);
            let t = thread_cpu();
            for _ in 0..5 {
                matmul(&a, m, &packed, &bias, &mut c, false, Epilogue::Store);
            }
            let s = (thread_cpu() - t) / 5.0;
            eprintln!("{m}x{k}x{n}: {:.2} ms, {:.0} GFLOP/s", s * 1e3, 2.0 * (m * k * n) as f64 / s / 1e9);
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
            let mut sc = AttnScratch::default();
            // SAFETY: AMX is available; l rows of 32 floats at each offset.
            unsafe {
                attention_head(q.as_ptr(), k.as_ptr(), v.as_ptr(), stride, l, 0.3, &mut sc, out.as_mut_ptr(), 40)
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
                    // bf16 inputs (scores up to about ±10): about one part in a hundred at worst.
                    assert!((got - want).abs() < 0.015 * (1.0 + want.abs()), "l {l} row {i} col {d}: {got} vs {want}");
                }
            }
        }
    }
}
