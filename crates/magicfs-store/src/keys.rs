//! The key/value schema. Every table maps bytes to bytes; keys are encoded
//! big-endian so that byte order equals the natural order (an inode's
//! directory entries, extents and xattrs are contiguous and sorted).

use crate::codec::Codec;
use magicfs_types::{ChunkId, Ino};

/// The tables of a MagicFS store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `name -> bytes`: format version, next inode number, settings.
    Meta = 0,
    /// `ino -> Attr` (plus the target for symlinks).
    Inodes = 1,
    /// `(parent ino, name) -> ino`.
    Dirents = 2,
    /// `(ino, file offset) -> Extent`.
    Extents = 3,
    /// `(ino, name) -> value`.
    Xattrs = 4,
    /// `chunk id -> ChunkMeta`.
    Chunks = 5,
    /// `ino -> ()`: inodes with no links left, freed when last closed.
    Orphans = 6,
}

impl Table {
    /// Every table, in code order.
    pub const ALL: [Table; 7] =
        [Table::Meta, Table::Inodes, Table::Dirents, Table::Extents, Table::Xattrs, Table::Chunks, Table::Orphans];

    /// The redb table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Inodes => "inodes",
            Table::Dirents => "dirents",
            Table::Extents => "extents",
            Table::Xattrs => "xattrs",
            Table::Chunks => "chunks",
            Table::Orphans => "orphans",
        }
    }

    /// The table with this code.
    pub fn from_code(c: u8) -> Option<Table> {
        Table::ALL.get(c as usize).copied()
    }
}

/// Key of an inode.
pub fn ino_key(ino: Ino) -> Vec<u8> {
    ino.to_be_bytes().to_vec()
}

/// Key of a directory entry, an xattr, or anything named within an inode.
pub fn named_key(ino: Ino, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&ino.to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// Key of an extent.
pub fn extent_key(ino: Ino, offset: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&ino.to_be_bytes());
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// Splits a key made by [`named_key`] or [`extent_key`] into the inode and the rest.
pub fn split_key(k: &[u8]) -> Option<(Ino, &[u8])> {
    if k.len() < 8 {
        return None;
    }
    Some((u64::from_be_bytes(k[..8].try_into().ok()?), &k[8..]))
}

/// Decodes a big-endian u64 (an inode number or an offset).
pub fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// A piece of a file: `len` bytes taken from `chunk` starting at `skip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// The chunk holding the bytes.
    pub chunk: ChunkId,
    /// Offset of the first byte inside the chunk.
    pub skip: u32,
    /// Number of bytes.
    pub len: u32,
}

impl Extent {
    /// Encoded form.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40);
        v.extend_from_slice(&self.chunk.0);
        v.extend_from_slice(&self.skip.to_le_bytes());
        v.extend_from_slice(&self.len.to_le_bytes());
        v
    }

    /// Decodes [`Extent::encode`]'s output.
    pub fn decode(b: &[u8]) -> Option<Extent> {
        if b.len() != 40 {
            return None;
        }
        Some(Extent {
            chunk: ChunkId(b[..32].try_into().ok()?),
            skip: u32::from_le_bytes(b[32..36].try_into().ok()?),
            len: u32::from_le_bytes(b[36..40].try_into().ok()?),
        })
    }
}

/// Where a chunk's bytes live and how many extents refer to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Pack file number.
    pub pack: u32,
    /// Byte offset in the pack.
    pub offset: u64,
    /// Bytes as stored (after compression).
    pub stored_len: u32,
    /// Bytes of the raw chunk.
    pub raw_len: u32,
    /// Encoding of the stored bytes.
    pub codec: Codec,
    /// Number of extents referring to this chunk.
    pub refs: u64,
}

impl ChunkMeta {
    /// Encoded form.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(29);
        v.extend_from_slice(&self.pack.to_le_bytes());
        v.extend_from_slice(&self.offset.to_le_bytes());
        v.extend_from_slice(&self.stored_len.to_le_bytes());
        v.extend_from_slice(&self.raw_len.to_le_bytes());
        v.push(self.codec as u8);
        v.extend_from_slice(&self.refs.to_le_bytes());
        v
    }

    /// Decodes [`ChunkMeta::encode`]'s output.
    pub fn decode(b: &[u8]) -> Option<ChunkMeta> {
        if b.len() != 29 {
            return None;
        }
        Some(ChunkMeta {
            pack: u32::from_le_bytes(b[0..4].try_into().ok()?),
            offset: u64::from_le_bytes(b[4..12].try_into().ok()?),
            stored_len: u32::from_le_bytes(b[12..16].try_into().ok()?),
            raw_len: u32::from_le_bytes(b[16..20].try_into().ok()?),
            codec: Codec::from_code(b[20])?,
            refs: u64::from_le_bytes(b[21..29].try_into().ok()?),
        })
    }
}

impl ChunkMeta {
    /// Where the stored bytes are.
    pub fn location(&self) -> Location {
        Location { pack: self.pack, offset: self.offset, len: self.stored_len }
    }
}

/// A chunk's location, as handed to a chunk store for reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Pack file number.
    pub pack: u32,
    /// Byte offset in the pack.
    pub offset: u64,
    /// Stored length.
    pub len: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_naturally() {
        assert!(extent_key(1, 255) < extent_key(1, 256));
        assert!(extent_key(1, u64::MAX) < extent_key(2, 0));
        assert!(named_key(7, b"a") < named_key(7, b"b"));
        assert_eq!(split_key(&named_key(9, b"x")), Some((9, &b"x"[..])));
    }

    #[test]
    fn values_roundtrip() {
        let e = Extent { chunk: ChunkId([3; 32]), skip: 5, len: 99 };
        assert_eq!(Extent::decode(&e.encode()), Some(e));
        let m = ChunkMeta { pack: 2, offset: 1 << 33, stored_len: 10, raw_len: 20, codec: Codec::Gzip, refs: 4 };
        assert_eq!(ChunkMeta::decode(&m.encode()), Some(m));
    }
}
