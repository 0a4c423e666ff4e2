//! The portable path (`gemm` products, no AVX-512 or AMX code) against
//! sentence-transformers — what CPUs without AVX-512 run. Its own test
//! binary, because the compute path is chosen once per process.

mod support;

#[test]
fn portable_path_matches_sentence_transformers() {
    std::env::set_var("MAGICFS_EMBED_NO_AVX512", "1");
    support::check_against_reference("portable path");
}
