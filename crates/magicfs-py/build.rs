//! The native module finds llama.cpp's shared libraries where the build put
//! them (DT_RPATH, which also covers the libraries' own dependencies), as the
//! `magicfs` program does.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MAGICFS_LLM_LIB_DIR");
    if let Ok(lib) = std::env::var("DEP_MAGICFS_LLM_LIB_DIR") {
        println!("cargo:rustc-link-arg-cdylib=-Wl,--disable-new-dtags,-rpath,{lib}");
    }
}
