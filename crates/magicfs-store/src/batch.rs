//! A batch of key/value mutations: the unit of atomicity of the store. The
//! filesystem core builds one batch per operation; the write-ahead log
//! records it whole and the redb image applies it whole.

use crate::keys::Table;

/// One mutation: a put (`value` is `Some`) or a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Target table.
    pub table: Table,
    /// Encoded key.
    pub key: Vec<u8>,
    /// New value, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

/// Chunk bytes a shared engine makes readable to every mount in the same
/// transaction as the batch that names them: the small tail of a cluster
/// volume's open segment (see `ChunkStore::persist_deferred`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staged {
    /// The segment.
    pub segment: u32,
    /// The writer appending to it.
    pub owner: u64,
    /// Where the bytes start in the segment.
    pub offset: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// An ordered list of mutations applied atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The mutations, applied in order.
    pub ops: Vec<Op>,
    /// Chunk bytes to stage in the same transaction (not part of the
    /// change log). Only the PostgreSQL engine writes them, and only a
    /// chunk store opened to defer its staging to that engine hands them out.
    pub staged: Option<Staged>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Records a put.
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op { table, key, value: Some(value.into()) });
    }

    /// Records a delete.
    pub fn del(&mut self, table: Table, key: Vec<u8>) {
        self.ops.push(Op { table, key, value: None });
    }

    /// True when there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends the encoded batch to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.ops.len() as u32).to_le_bytes());
        for op in &self.ops {
            out.push(op.table as u8);
            out.extend_from_slice(&(op.key.len() as u32).to_le_bytes());
            out.extend_from_slice(&op.key);
            match &op.value {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
    }

    /// Decodes [`Batch::encode_into`]'s output; `None` if malformed.
    pub fn decode(mut b: &[u8]) -> Option<Batch> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if b.len() < n {
                return None;
            }
            let (h, t) = b.split_at(n);
            *b = t;
            Some(h)
        }
        fn u32_of(b: &mut &[u8]) -> Option<usize> {
            Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize)
        }
        let n = u32_of(&mut b)?;
        let mut ops = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let table = Table::from_code(take(&mut b, 1)?[0])?;
            let kl = u32_of(&mut b)?;
            let key = take(&mut b, kl)?.to_vec();
            let value = match take(&mut b, 1)?[0] {
                0 => None,
                1 => {
                    let vl = u32_of(&mut b)?;
                    Some(take(&mut b, vl)?.to_vec())
                }
                _ => return None,
            };
            ops.push(Op { table, key, value });
        }
        b.is_empty().then_some(Batch { ops, staged: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let mut b = Batch::new();
        b.put(Table::Inodes, vec![1, 2], vec![3; 70]);
        b.del(Table::Dirents, vec![9]);
        let mut enc = Vec::new();
        b.encode_into(&mut enc);
        assert_eq!(Batch::decode(&enc), Some(b));
        assert_eq!(Batch::decode(&enc[..enc.len() - 1]), None);
    }
}
