//! `include/magicfs.h` is what cbindgen makes of the library now. Rewrite it
//! after changing the API with `MAGICFS_BLESS=1 cargo test -p magicfs-capi --test header`.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads the crate")
        .write(&mut generated);
    let path = crate_dir.join("include/magicfs.h");
    if std::env::var_os("MAGICFS_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date; run MAGICFS_BLESS=1 cargo test -p magicfs-capi --test header\n--- generated:\n{}",
        path.display(),
        String::from_utf8_lossy(&generated)
    );
}
