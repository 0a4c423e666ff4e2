//! Sentence embeddings for MagicFS: all-MiniLM-L6-v2 run in-process in pure
//! Rust. [`Embedder::load`] reads a model directory (`model.safetensors`,
//! `tokenizer.json` or `vocab.txt`, `config.json`); [`Embedder::embed`]
//! turns texts into L2-normalised 384-d vectors that match the
//! sentence-transformers encoder of the same model (cosine ≥ 0.999, checked
//! by `tests/reference.rs` against vectors it computed).

mod amx;
mod avx512;
mod bert;
mod tokenizer;

pub use bert::{Bert, DIM};
pub use tokenizer::{Token, Tokenizer};

use rayon::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};

/// Longest model input in tokens, `[CLS]` and `[SEP]` included (the
/// sentence-transformers `max_seq_length` of this model).
pub const MAX_TOKENS: usize = 256;
/// Tokens per batch handed to one forward pass.
const BATCH_TOKENS: usize = 4096;

/// Why a model could not be loaded.
#[derive(Debug)]
pub enum EmbedError {
    /// A file could not be read.
    Io(PathBuf, std::io::Error),
    /// The files are not the model this crate runs.
    Model(String),
}

impl EmbedError {
    fn io(p: &Path, e: std::io::Error) -> EmbedError {
        EmbedError::Io(p.to_path_buf(), e)
    }
}

impl fmt::Display for EmbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbedError::Io(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            EmbedError::Model(m) => write!(f, "unusable model: {m}"),
        }
    }
}

impl std::error::Error for EmbedError {}

/// The default models directory: `$MAGICFS_MODELS`, else `$XDG_CACHE_HOME/magicfs/models`.
pub use magicfs_types::dirs::models_dir;

/// The MiniLM directory inside the default models directory.
pub fn default_model_dir() -> PathBuf {
    models_dir().join("minilm")
}

/// A loaded sentence-embedding model.
pub struct Embedder {
    tok: Tokenizer,
    bert: Bert,
    id: String,
}

impl Embedder {
    /// Loads the model in `dir`.
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        let wpath = dir.join("model.safetensors");
        let bytes = std::fs::read(&wpath).map_err(|e| EmbedError::io(&wpath, e))?;
        check_config(dir)?;
        let tok = load_tokenizer(dir)?;
        let bert = Bert::load(&bytes)?;
        if tok.vocab_size() != bert.vocab() {
            return Err(EmbedError::Model(format!(
                "tokenizer has {} entries, the model {}",
                tok.vocab_size(),
                bert.vocab()
            )));
        }
        let hash = blake3::hash(&bytes).to_hex();
        Ok(Embedder { tok, bert, id: format!("all-MiniLM-L6-v2@{}", &hash[..16]) })
    }

    /// Names the model and its exact weights; vectors made by another id are stale.
    pub fn model_id(&self) -> &str {
        &self.id
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tok
    }

    /// Embeds texts (each truncated to [`MAX_TOKENS`]); `threads > 1` uses rayon.
    pub fn embed(&self, texts: &[&str], threads: usize) -> Vec<[f32; DIM]> {
        let ids: Vec<Vec<u32>> = texts.iter().map(|t| self.tok.encode(t, MAX_TOKENS)).collect();
        self.embed_ids(&ids, threads)
    }

    /// Embeds one text on the calling thread.
    pub fn embed_one(&self, text: &str) -> [f32; DIM] {
        let ids = self.tok.encode(text, MAX_TOKENS);
        self.bert.forward(&[ids], 1).pop().unwrap_or([0.0; DIM])
    }

    /// Embeds token-id sequences (with `[CLS]`/`[SEP]`, at most 512 long),
    /// in batches of about 4096 tokens; with `threads > 1` batches run side by side.
    pub fn embed_ids(&self, ids: &[Vec<u32>], threads: usize) -> Vec<[f32; DIM]> {
        let mut batches: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        let mut toks = 0;
        for (i, s) in ids.iter().enumerate() {
            if toks > 0 && toks + s.len() > BATCH_TOKENS {
                batches.push(start..i);
                start = i;
                toks = 0;
            }
            toks += s.len();
        }
        if start < ids.len() {
            batches.push(start..ids.len());
        }
        if threads > 1 && batches.len() > 1 {
            // Split so that every thread has work and all finish together (a
            // multiple of `threads` parts); each part runs single-threaded.
            let parts = batches.len().max(threads).div_ceil(threads) * threads;
            let per = ids.len().div_ceil(parts);
            let parts: Vec<&[Vec<u32>]> = ids.chunks(per.max(1)).collect();
            parts.par_iter().flat_map_iter(|p| self.bert.forward(p, 1)).collect()
        } else {
            batches.into_iter().flat_map(|r| self.bert.forward(&ids[r], threads)).collect()
        }
    }
}

/// Checks that `config.json` (if present) describes the architecture run here.
fn check_config(dir: &Path) -> Result<(), EmbedError> {
    let p = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(()) };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| EmbedError::Model(format!("config.json: {e}")))?;
    let want =
        [("hidden_size", 384), ("num_hidden_layers", 6), ("num_attention_heads", 12), ("intermediate_size", 1536)];
    for (k, n) in want {
        if v.get(k).and_then(|x| x.as_u64()) != Some(n) {
            return Err(EmbedError::Model(format!("config.json: {k} is not {n}")));
        }
    }
    if v.get("hidden_act").and_then(|x| x.as_str()) != Some("gelu") {
        return Err(EmbedError::Model("config.json: hidden_act is not gelu".into()));
    }
    Ok(())
}

/// The vocabulary from `tokenizer.json` (checked to be an uncased BERT
/// WordPiece) or, failing that, `vocab.txt`.
fn load_tokenizer(dir: &Path) -> Result<Tokenizer, EmbedError> {
    let p = dir.join("tokenizer.json");
    if let Ok(text) = std::fs::read_to_string(&p) {
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| EmbedError::Model(format!("tokenizer.json: {e}")))?;
        let model = &v["model"];
        if model["type"] != "WordPiece" || model["continuing_subword_prefix"] != "##" {
            return Err(EmbedError::Model("tokenizer.json: not a ## WordPiece model".into()));
        }
        if v["normalizer"]["type"] != "BertNormalizer" || v["normalizer"]["lowercase"] != true {
            return Err(EmbedError::Model("tokenizer.json: not an uncased BertNormalizer".into()));
        }
        let vocab = model["vocab"].as_object().ok_or_else(|| EmbedError::Model("tokenizer.json: no vocab".into()))?;
        let mut by_id: Vec<(u64, &str)> = vocab.iter().filter_map(|(k, v)| Some((v.as_u64()?, k.as_str()))).collect();
        by_id.sort_unstable();
        if by_id.iter().enumerate().any(|(i, (id, _))| *id != i as u64) {
            return Err(EmbedError::Model("tokenizer.json: vocabulary ids are not dense".into()));
        }
        return Tokenizer::from_vocab(by_id.into_iter().map(|(_, t)| t));
    }
    Tokenizer::from_vocab_file(&dir.join("vocab.txt"))
}

/// Deterministic operands for the kernels' tests: `a` is `m×k`, `w` is `k×n`,
/// both in [-1, 1].
#[cfg(test)]
pub(crate) fn test_operands(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    let a = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    let w = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
    (a, w)
}
