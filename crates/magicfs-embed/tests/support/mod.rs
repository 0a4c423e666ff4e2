//! The comparison with sentence-transformers shared by the `reference*`
//! tests: `fixtures/reference.json` holds vectors computed once by
//! `scripts/st_reference.py vectors` with the Python encoder of the same
//! model files; every sentence must reach cosine similarity ≥ 0.999.

use magicfs_embed::{default_model_dir, Embedder, DIM};

fn model() -> Embedder {
    let dir = default_model_dir();
    Embedder::load(&dir).unwrap_or_else(|e| panic!("{e}: run scripts/models.sh (or set MAGICFS_MODELS)"))
}

/// Embeds the reference sentences (one and two threads, and one at a time)
/// and checks each against the stored vector; `path` names the compute path in the report.
pub fn check_against_reference(path: &str) {
    let text = include_str!("../fixtures/reference.json");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let sentences: Vec<&str> = v["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let want: Vec<Vec<f32>> = v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    assert!(sentences.len() >= 10);
    let emb = model();
    let mut worst = 1.0f32;
    for threads in [1, 2] {
        let got = emb.embed(&sentences, threads);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(w.len(), DIM);
            let cos: f32 = g.iter().zip(w).map(|(a, b)| a * b).sum();
            assert!(cos >= 0.999, "sentence {i} {:?}: cosine {cos}", sentences[i]);
            worst = worst.min(cos);
        }
    }
    eprintln!("{path}: lowest cosine similarity to sentence-transformers: {worst:.6}");
    // One at a time equals batched.
    let one = emb.embed_one(sentences[0]);
    let cos: f32 = one.iter().zip(&want[0]).map(|(a, b)| a * b).sum();
    assert!(cos >= 0.999);
}
