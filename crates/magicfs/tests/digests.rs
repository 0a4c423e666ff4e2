//! Computed xattrs through the mount: `user.magic.crc32c`, `user.magic.fnv`
//! and `user.magic.blake3` equal plain reference implementations, follow the
//! content when it changes, and cannot be set.

mod common;

use common::{cpath, errno, noise, scratch, Mount};
use magicfs_compute::ops::reference;
use std::os::unix::fs::FileExt;

fn xattr(p: &std::path::Path, name: &std::ffi::CStr) -> Result<String, i32> {
    let mut buf = vec![0u8; 128];
    // SAFETY: valid C strings and buffer.
    let n = unsafe { libc::getxattr(cpath(p).as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(errno());
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8(buf).unwrap())
}

fn check(p: &std::path::Path, data: &[u8]) {
    assert_eq!(xattr(p, c"user.magic.crc32c").unwrap(), format!("{:08x}", reference::crc32c(data)));
    assert_eq!(xattr(p, c"user.magic.fnv").unwrap(), format!("{:016x}", reference::fnv(data)));
    assert_eq!(xattr(p, c"user.magic.blake3").unwrap(), blake3::hash(data).to_hex().to_string());
}

#[test]
fn digests_match_references_and_follow_the_content() {
    let tmp = scratch("digests");
    let m = Mount::start(&tmp.path().join("mnt"), Some(&tmp.path().join("data")), &[]);
    for (name, len) in [("empty", 0usize), ("small", 100), ("big", 3 << 20)] {
        let p = m.path(name);
        let mut data = noise(len, len as u64 + 1);
        std::fs::write(&p, &data).unwrap();
        check(&p, &data);
        check(&p, &data); // cached
        if len > 0 {
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.write_all_at(b"Z", (len / 2) as u64).unwrap();
            drop(f);
            data[len / 2] = b'Z';
            check(&p, &data);
        }
    }
    let p = m.path("small");
    let v = b"00000000";
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::setxattr(cpath(&p).as_ptr(), c"user.magic.crc32c".as_ptr(), v.as_ptr().cast(), 8, 0) };
    assert_eq!((r, errno()), (-1, libc::EPERM), "computed attributes are read-only");
    std::fs::create_dir(m.path("dir")).unwrap();
    assert_eq!(xattr(&m.path("dir"), c"user.magic.crc32c"), Err(libc::ENODATA));
}
