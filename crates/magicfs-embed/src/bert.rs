//! The BERT encoder of all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads,
//! FFN 1536, exact GELU, LayerNorm eps 1e-12), then masked mean pooling and
//! L2 normalisation, as the sentence-transformers pipeline does.
//!
//! A batch is the concatenation of its sequences: the linear layers run once
//! over every token of the batch (no padding at all), attention runs per
//! sequence and head. Matrix products use `gemm` (runtime-dispatched
//! AVX2/FMA/AVX-512 kernels).

use crate::amx::Epilogue;
use crate::EmbedError;
use gemm::{gemm, Parallelism};
use rayon::prelude::*;
use safetensors::SafeTensors;

/// Width of an embedding.
pub const DIM: usize = 384;
const HEADS: usize = 12;
const HEAD: usize = DIM / HEADS;
const FF: usize = 1536;
const LAYERS: usize = 6;
const EPS: f32 = 1e-12;
const MAX_POS: usize = 512;

/// A dense layer, weights stored input-major (`[in, out]`), or packed for
/// the AVX-512 product when the CPU has it.
struct Linear {
    w: Vec<f32>,
    packed: Option<crate::avx512::Packed>,
    amx: Option<crate::amx::Packed>,
    b: Vec<f32>,
    inp: usize,
    out: usize,
}

struct Norm {
    g: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    qkv: Linear,
    o: Linear,
    ln1: Norm,
    ff1: Linear,
    ff2: Linear,
    ln2: Norm,
}

/// The loaded weights.
pub struct Bert {
    word: Vec<f32>,
    pos: Vec<f32>,
    typ: Vec<f32>,
    ln: Norm,
    layers: Vec<Layer>,
    vocab: usize,
}

fn tensor(st: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>, EmbedError> {
    let t = st.tensor(name).map_err(|e| EmbedError::Model(format!("tensor {name}: {e}")))?;
    if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape {
        return Err(EmbedError::Model(format!(
            "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
            t.dtype(),
            t.shape()
        )));
    }
    Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Loads `[out, in]` weights of several layers side by side as one `[in, sum(out)]` matrix.
fn linear(st: &SafeTensors, names: &[&str], inp: usize, out_each: usize) -> Result<Linear, EmbedError> {
    let out = out_each * names.len();
    let mut w = vec![0f32; inp * out];
    let mut b = Vec::with_capacity(out);
    for (k, name) in names.iter().enumerate() {
        let wt = tensor(st, &format!("{name}.weight"), &[out_each, inp])?;
        for j in 0..out_each {
            for i in 0..inp {
                w[i * out + k * out_each + j] = wt[j * inp + i];
            }
        }
        b.extend(tensor(st, &format!("{name}.bias"), &[out_each])?);
    }
    let amx = if crate::amx::available() { crate::amx::Packed::new(&w, inp, out) } else { None };
    let packed =
        if amx.is_none() && crate::avx512::available() { crate::avx512::Packed::new(&w, inp, out) } else { None };
    let w = if packed.is_some() || amx.is_some() { Vec::new() } else { w };
    Ok(Linear { w, b, packed, amx, inp, out })
}

fn norm(st: &SafeTensors, name: &str) -> Result<Norm, EmbedError> {
    Ok(Norm { g: tensor(st, &format!("{name}.weight"), &[DIM])?, b: tensor(st, &format!("{name}.bias"), &[DIM])? })
}

/// A pointer into one output buffer, handed to rayon tasks that each write
/// a disjoint region of it.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: used only to hand disjoint regions of one buffer to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the `Send` wrapper whole).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

impl Linear {
    /// `y[rows, out] (op)= x[rows, inp] · w + b` as `ep` says; `tmp` (at
    /// least `rows × out`) is scratch space for paths that cannot add in place.
    fn forward_ep(&self, x: &[f32], rows: usize, y: &mut [f32], tmp: &mut [f32], par: Parallelism, ep: Epilogue) {
        if let Some(p) = &self.amx {
            return crate::amx::matmul(x, rows, p, &self.b, y, !matches!(par, Parallelism::None), ep);
        }
        match ep {
            Epilogue::Store => self.forward(x, rows, y, par),
            Epilogue::Gelu => {
                self.forward(x, rows, y, par);
                gelu_all(&mut y[..rows * self.out]);
            }
            Epilogue::Add => {
                let t = &mut tmp[..rows * self.out];
                self.forward(x, rows, t, par);
                for (y, a) in y.iter_mut().zip(t.iter()) {
                    *y += a;
                }
            }
        }
    }

    /// `y[rows, out] = x[rows, inp] · w + b` on the AVX-512 or `gemm` path.
    fn forward(&self, x: &[f32], rows: usize, y: &mut [f32], par: Parallelism) {
        debug_assert!(x.len() >= rows * self.inp && y.len() >= rows * self.out);
        for r in y[..rows * self.out].chunks_exact_mut(self.out) {
            r.copy_from_slice(&self.b);
        }
        if let Some(p) = &self.packed {
            return crate::avx512::matmul(x, rows, p, y, !matches!(par, Parallelism::None));
        }
        // SAFETY: the slices hold at least rows×inp and rows×out elements and
        // the weight matrix inp×out, with the strides given.
        unsafe {
            gemm(
                rows,
                self.out,
                self.inp,
                y.as_mut_ptr(),
                1,
                self.out as isize,
                true,
                x.as_ptr(),
                1,
                self.inp as isize,
                self.w.as_ptr(),
                1,
                self.out as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        }
    }
}

/// Sum with 16 independent partial sums (vectorises; the order differs from
/// a sequential sum by rounding only).
#[inline(always)]
fn sum16(v: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Maximum with 16 independent lanes.
#[inline(always)]
fn max16(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = v.chunks_exact(16);
    let rest = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for c in chunks {
        for i in 0..16 {
            acc[i] = acc[i].max(c[i]);
        }
    }
    acc.iter().fold(rest, |a, &b| a.max(b))
}

/// Softmax of one row in place.
#[inline(always)]
fn softmax(r: &mut [f32]) {
    let m = max16(r);
    r.iter_mut().for_each(|x| *x = fast_exp(*x - m));
    let inv = 1.0 / sum16(r);
    r.iter_mut().for_each(|x| *x *= inv);
}

/// Softmax of every row of `l` scores, with AVX-512 code when the CPU has it.
fn softmax_rows(scores: &mut [f32], l: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::avx512::available() {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { softmax_rows_avx512(scores, l) };
        }
    }
    scores.chunks_exact_mut(l).for_each(softmax);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_rows_avx512(scores: &mut [f32], l: usize) {
    scores.chunks_exact_mut(l).for_each(softmax);
}

impl Norm {
    #[inline(always)]
    fn apply(&self, rows: &mut [f32]) {
        let mut dev = [0f32; DIM];
        for r in rows.chunks_exact_mut(DIM) {
            let mean = sum16(r) / DIM as f32;
            for (d, v) in dev.iter_mut().zip(r.iter()) {
                *d = (v - mean) * (v - mean);
            }
            let var = sum16(&dev) / DIM as f32;
            let inv = 1.0 / (var + EPS).sqrt();
            for ((v, g), b) in r.iter_mut().zip(&self.g).zip(&self.b) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

/// `e^x` to about 1e-6 relative error (for |x| < 30); branch-free so loops vectorize.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E;
    let r = (t + 12_582_912.0) - 12_582_912.0;
    let f = (t - r) * std::f32::consts::LN_2;
    let p = 1.0 + f * (1.0 + f * (0.5 + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    // 2^r from the bits of r + 127 + 2^23 (all float operations, so loops vectorize).
    let scale = f32::from_bits(((r + 127.0 + 8_388_608.0).to_bits() & 0xff) << 23);
    p * scale
}

/// GELU with the error function (Abramowitz–Stegun 7.1.26, |error| < 1.5e-7).
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let erf_abs = 1.0 - poly * fast_exp(-a * a);
    0.5 * x * (1.0 + erf_abs.copysign(z))
}

/// GELU over a slice, with AVX-512 code when the CPU has it.
fn gelu_all(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::avx512::available() {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { gelu_avx512(v) };
        }
    }
    v.iter_mut().for_each(|x| *x = gelu(*x));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_avx512(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = gelu(*x));
}

/// Buffers of one batch, reused across layers.
struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    h: Vec<f32>,
}

impl Bert {
    /// Reads the weights from a `model.safetensors` image.
    pub fn load(bytes: &[u8]) -> Result<Bert, EmbedError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| EmbedError::Model(format!("safetensors: {e}")))?;
        let wshape = st
            .tensor("embeddings.word_embeddings.weight")
            .map_err(|e| EmbedError::Model(format!("word embeddings: {e}")))?
            .shape()
            .to_vec();
        let vocab = wshape.first().copied().unwrap_or(0);
        let mut layers = Vec::with_capacity(LAYERS);
        for l in 0..LAYERS {
            let p = format!("encoder.layer.{l}");
            layers.push(Layer {
                qkv: linear(
                    &st,
                    &[
                        &format!("{p}.attention.self.query"),
                        &format!("{p}.attention.self.key"),
                        &format!("{p}.attention.self.value"),
                    ],
                    DIM,
                    DIM,
                )?,
                o: linear(&st, &[&format!("{p}.attention.output.dense")], DIM, DIM)?,
                ln1: norm(&st, &format!("{p}.attention.output.LayerNorm"))?,
                ff1: linear(&st, &[&format!("{p}.intermediate.dense")], DIM, FF)?,
                ff2: linear(&st, &[&format!("{p}.output.dense")], FF, DIM)?,
                ln2: norm(&st, &format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Bert {
            word: tensor(&st, "embeddings.word_embeddings.weight", &[vocab, DIM])?,
            pos: tensor(&st, "embeddings.position_embeddings.weight", &[MAX_POS, DIM])?,
            typ: tensor(&st, "embeddings.token_type_embeddings.weight", &[2, DIM])?,
            ln: norm(&st, "embeddings.LayerNorm")?,
            layers,
            vocab,
        })
    }

    /// Vocabulary size of the embedding table.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Normalised sentence embeddings of `seqs` (token ids with `[CLS]`/`[SEP]`,
    /// each at most 512 long). `threads > 1` spreads the work over rayon.
    pub fn forward(&self, seqs: &[Vec<u32>], threads: usize) -> Vec<[f32; DIM]> {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::avx512::available() {
                // SAFETY: the CPU has AVX-512F.
                return unsafe { self.forward_avx512(seqs, threads) };
            }
        }
        self.forward_any(seqs, threads)
    }

    /// [`Bert::forward`] with every loop compiled for AVX-512.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn forward_avx512(&self, seqs: &[Vec<u32>], threads: usize) -> Vec<[f32; DIM]> {
        self.forward_any(seqs, threads)
    }

    #[inline(always)]
    fn forward_any(&self, seqs: &[Vec<u32>], threads: usize) -> Vec<[f32; DIM]> {
        let total: usize = seqs.iter().map(Vec::len).sum();
        if total == 0 {
            return vec![[0.0; DIM]; seqs.len()];
        }
        let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
        let mut s = Scratch {
            x: vec![0.0; total * DIM],
            qkv: vec![0.0; total * 3 * DIM],
            ctx: vec![0.0; total * DIM],
            h: vec![0.0; total * FF],
        };
        // Embeddings.
        let mut row = 0;
        for seq in seqs {
            for (p, &id) in seq.iter().enumerate() {
                let id = (id as usize).min(self.vocab.saturating_sub(1));
                let p = p.min(MAX_POS - 1);
                let x = &mut s.x[row * DIM..(row + 1) * DIM];
                let (w, ps, t) = (&self.word[id * DIM..][..DIM], &self.pos[p * DIM..][..DIM], &self.typ[..DIM]);
                for i in 0..DIM {
                    x[i] = w[i] + ps[i] + t[i];
                }
                row += 1;
            }
        }
        self.ln.apply(&mut s.x);
        let offsets: Vec<(usize, usize)> = seqs
            .iter()
            .scan(0, |o, q| {
                let r = (*o, q.len());
                *o += q.len();
                Some(r)
            })
            .filter(|(_, l)| *l > 0)
            .collect();
        for layer in &self.layers {
            layer.qkv.forward_ep(&s.x, total, &mut s.qkv, &mut [], par, Epilogue::Store);
            attention(&s.qkv, &mut s.ctx, &offsets, threads);
            // x = LN(x + ctx·Wo + bo); `qkv`'s space is free for a temporary.
            layer.o.forward_ep(&s.ctx, total, &mut s.x, &mut s.qkv, par, Epilogue::Add);
            layer.ln1.apply(&mut s.x);
            layer.ff1.forward_ep(&s.x, total, &mut s.h, &mut [], par, Epilogue::Gelu);
            layer.ff2.forward_ep(&s.h, total, &mut s.x, &mut s.ctx, par, Epilogue::Add);
            layer.ln2.apply(&mut s.x);
        }
        let mut out = Vec::with_capacity(seqs.len());
        let mut o = 0;
        for seq in seqs {
            let mut v = [0f32; DIM];
            for r in o..o + seq.len() {
                for (a, b) in v.iter_mut().zip(&s.x[r * DIM..(r + 1) * DIM]) {
                    *a += b;
                }
            }
            o += seq.len();
            let n = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|a| *a /= n);
            out.push(v);
        }
        out
    }
}

/// Sequences up to this long skip `gemm` in attention (its per-call cost dominates).
const SMALL_SEQ: usize = 48;

/// One head of attention with plain loops, for short sequences.
///
/// # Safety
/// `q`, `k`, `v` point at `l` rows of `HEAD` floats `stride` apart; `out` at
/// `l` rows of `HEAD` floats `DIM` apart.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn small_attention(
    q: *const f32,
    k: *const f32,
    v: *const f32,
    stride: usize,
    l: usize,
    scale: f32,
    scores: &mut [f32],
    out: *mut f32,
) {
    for i in 0..l {
        let qi = std::slice::from_raw_parts(q.add(i * stride), HEAD);
        let row = &mut scores[i * l..(i + 1) * l];
        for (j, s) in row.iter_mut().enumerate() {
            let kj = std::slice::from_raw_parts(k.add(j * stride), HEAD);
            *s = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale;
        }
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut sum = 0.0;
        for x in row.iter_mut() {
            *x = fast_exp(*x - m);
            sum += *x;
        }
        let inv = 1.0 / sum;
        let o = std::slice::from_raw_parts_mut(out.add(i * DIM), HEAD);
        o.fill(0.0);
        for (j, p) in row.iter().enumerate() {
            let vj = std::slice::from_raw_parts(v.add(j * stride), HEAD);
            for (a, b) in o.iter_mut().zip(vj) {
                *a += p * inv * b;
            }
        }
    }
}

/// Self-attention of every (sequence, head): `ctx = softmax(QKᵀ/√d)·V`.
#[inline(always)]
fn attention(qkv: &[f32], ctx: &mut [f32], offsets: &[(usize, usize)], threads: usize) {
    let src = SendPtr(qkv.as_ptr() as *mut f32);
    let dst = SendPtr(ctx.as_mut_ptr());
    let wide = crate::avx512::available();
    let tiles = crate::amx::available();
    let one =
        |(scores, kt, sc): &mut (Vec<f32>, Vec<f32>, crate::amx::AttnScratch), (o, l): (usize, usize), h: usize| {
            let stride = 3 * DIM;
            let scale = 1.0 / (HEAD as f32).sqrt();
            // SAFETY: rows o..o+l of qkv (stride 3·DIM) and of ctx (stride DIM)
            // exist; each (sequence, head) writes its own columns of its own rows.
            unsafe {
                let q = src.get().add(o * stride + h * HEAD);
                let k = q.add(DIM);
                let v = q.add(2 * DIM);
                let out = dst.get().add(o * DIM + h * HEAD);
                if tiles {
                    // SAFETY (as above): AMX is available.
                    return crate::amx::attention_head(q, k, v, stride, l, scale, sc, out, DIM);
                }
                if wide {
                    // SAFETY (as above): the CPU has AVX-512F.
                    return crate::avx512::attention_head(q, k, v, stride, l, scale, kt, scores, out, DIM);
                }
                scores.resize(l * l, 0.0);
                if l <= SMALL_SEQ {
                    return small_attention(q, k, v, stride, l, scale, scores, dst.get().add(o * DIM + h * HEAD));
                }
                gemm(
                    l,
                    l,
                    HEAD,
                    scores.as_mut_ptr(),
                    1,
                    l as isize,
                    false,
                    q,
                    1,
                    stride as isize,
                    k,
                    stride as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
                softmax_rows(scores, l);
                gemm(
                    l,
                    HEAD,
                    l,
                    dst.get().add(o * DIM + h * HEAD),
                    1,
                    DIM as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    l as isize,
                    v,
                    1,
                    stride as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
        };
    let jobs: Vec<((usize, usize), usize)> = offsets.iter().flat_map(|&s| (0..HEADS).map(move |h| (s, h))).collect();
    if threads > 1 {
        jobs.par_iter().for_each_init(|| (Vec::new(), Vec::new(), Default::default()), |sc, &(s, h)| one(sc, s, h));
    } else {
        let mut sc = (Vec::new(), Vec::new(), Default::default());
        for &(s, h) in &jobs {
            one(&mut sc, s, h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        for i in -800..800 {
            let x = i as f32 / 10.0;
            let (a, b) = (fast_exp(x), x.exp());
            // Relative error grows with |x| only through the rounding of x·log2(e).
            assert!(((a - b) / b).abs() < 1e-5, "{x}: {a} vs {b}");
        }
    }

    #[test]
    fn gelu_matches_erf_form() {
        for (x, want) in [(0.0f32, 0.0f32), (1.0, 0.841_344_7), (-1.0, -0.158_655_25), (3.0, 2.995_950_3)] {
            assert!((gelu(x) - want).abs() < 1e-6, "{x}: {}", gelu(x));
        }
    }
}
