#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| magicfs_fuzz::range_header(data));
