//! The `magicfs` program finds llama.cpp's shared libraries next to itself,
//! in `../lib/magicfs` beside its directory (where `scripts/install.sh` puts
//! them), or where the build put them. The path is recorded as DT_RPATH, not
//! DT_RUNPATH: a run path covers only the program's own dependencies, and
//! `libggml.so` itself needs `libggml-base.so`, which a linker with
//! `--as-needed` leaves out of the program's list.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MAGICFS_LLM_LIB_DIR");
    if let Ok(lib) = std::env::var("DEP_MAGICFS_LLM_LIB_DIR") {
        println!("cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,$ORIGIN:$ORIGIN/../lib/magicfs:{lib}");
    }
}
