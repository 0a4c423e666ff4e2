//! Passes on where llama.cpp's shared libraries are (with feature `llama`):
//! `DEP_MAGICFS_LLM_LIB_DIR` for the crates that link the backend into a
//! program, which record it as a run path.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_BACKENDS_DIR");
    // llama-cpp-sys-2 installs the per-level CPU libraries in OUT_DIR/backends
    // and the libraries programs link against in OUT_DIR/lib.
    if let Ok(backends) = std::env::var("DEP_LLAMA_BACKENDS_DIR") {
        if let Some(out) = std::path::Path::new(&backends).parent() {
            println!("cargo:lib_dir={}", out.join("lib").display());
        }
    }
}
