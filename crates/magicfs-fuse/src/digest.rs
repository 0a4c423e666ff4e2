//! Computed extended attributes: `user.magic.crc32c`, `user.magic.fnv` and
//! `user.magic.blake3` read a digest of the file's contents, computed in the
//! daemon (near the data: nothing is copied out) and cached per content.
//! They are read-only and not listed by `listxattr`, so copying tools do not
//! carry them to other files.

use magicfs_compute::ops::{crc32c_append, fnv_append, FNV_OFFSET};
use magicfs_core::Fs;
use magicfs_types::{FsError, FsResult, Ino, Timespec};
use parking_lot::Mutex;
use std::collections::HashMap;

/// A digest the daemon computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Digest {
    /// CRC-32C, 8 hex digits.
    Crc32c,
    /// FNV-1a 64, 16 hex digits.
    Fnv,
    /// BLAKE3-256, 64 hex digits.
    Blake3,
}

impl Digest {
    /// The digest named by an xattr name, if any.
    pub fn from_xattr(name: &[u8]) -> Option<Digest> {
        match name {
            b"user.magic.crc32c" => Some(Digest::Crc32c),
            b"user.magic.fnv" => Some(Digest::Fnv),
            b"user.magic.blake3" => Some(Digest::Blake3),
            _ => None,
        }
    }
}

/// Bytes read at a time while hashing.
const PIECE: u64 = 1 << 20;

/// A computed digest and the state of the file it describes.
struct Cached {
    size: u64,
    mtime: Timespec,
    value: Vec<u8>,
}

/// Digests by inode and kind, valid while the file's size and mtime are unchanged.
#[derive(Default)]
pub struct DigestCache {
    map: Mutex<HashMap<(Ino, Digest), Cached>>,
}

impl DigestCache {
    /// The hex digest of `ino`'s contents, from the cache or computed now.
    pub fn get(&self, fs: &Fs, ino: Ino, kind: Digest) -> FsResult<Vec<u8>> {
        let before = fs.getattr(ino)?;
        if let Some(c) = self.map.lock().get(&(ino, kind)) {
            if c.size == before.size && c.mtime == before.mtime {
                return Ok(c.value.clone());
            }
        }
        let value = compute(fs, ino, kind, before.size)?;
        let after = fs.getattr(ino)?;
        if after.size == before.size && after.mtime == before.mtime {
            self.map.lock().insert((ino, kind), Cached { size: after.size, mtime: after.mtime, value: value.clone() });
        }
        Ok(value)
    }
}

fn compute(fs: &Fs, ino: Ino, kind: Digest, size: u64) -> FsResult<Vec<u8>> {
    let (mut crc, mut fnv, mut b3) = (0u32, FNV_OFFSET, blake3::Hasher::new());
    let mut at = 0;
    while at < size {
        let n = fs.read_with(ino, at, PIECE, |d| {
            match kind {
                Digest::Crc32c => crc = crc32c_append(crc, d),
                Digest::Fnv => fnv = fnv_append(fnv, d),
                Digest::Blake3 => {
                    b3.update(d);
                }
            }
            d.len() as u64
        })?;
        if n == 0 {
            break;
        }
        at += n;
    }
    if at != size {
        return Err(FsError::Again);
    }
    Ok(match kind {
        Digest::Crc32c => format!("{crc:08x}"),
        Digest::Fnv => format!("{fnv:016x}"),
        Digest::Blake3 => b3.finalize().to_hex().to_string(),
    }
    .into_bytes())
}
