//! The `magicfs` program finds llama.cpp's shared libraries next to itself
//! or where the build put them (a run path; `cargo run`/`cargo test` set the
//! library path themselves).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MAGICFS_LLM_LIB_DIR");
    if let Ok(lib) = std::env::var("DEP_MAGICFS_LLM_LIB_DIR") {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN:{lib}");
    }
}
