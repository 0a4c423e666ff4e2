//! Extended attributes of host paths (files on a mount), the way client
//! commands talk to the mounted daemon.

use std::path::Path;

/// Sets `name` to `value` on `path` (symlinks followed).
pub fn set(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    Ok(rustix::fs::setxattr(path, name, value, rustix::fs::XattrFlags::empty())?)
}

/// The value of `name` on `path` as text; `None` when it is not set or
/// cannot be read.
pub fn get(path: &Path, name: &str) -> Option<String> {
    let mut buf = vec![0u8; magicfs_types::XATTR_SIZE_MAX];
    let n = rustix::fs::getxattr(path, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(String::from_utf8_lossy(&buf).into_owned())
}
