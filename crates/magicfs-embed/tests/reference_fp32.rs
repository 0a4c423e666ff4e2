//! The fp32 AVX-512 path (AMX turned off) against sentence-transformers.
//! Its own test binary, because the compute path is chosen once per process.

mod support;

#[test]
fn fp32_path_matches_sentence_transformers() {
    std::env::set_var("MAGICFS_EMBED_NO_AMX", "1");
    support::check_against_reference("fp32 AVX-512 path");
}
