//! The embedder against sentence-transformers on the fastest path this CPU
//! has (AMX bf16 products where available): every reference sentence must
//! reach cosine similarity ≥ 0.999 (see `support/mod.rs`).

mod support;

#[test]
fn matches_sentence_transformers() {
    support::check_against_reference("default path");
}
