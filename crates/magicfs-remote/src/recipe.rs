//! Recipes: a file as the ordered list of its content-defined chunks (BLAKE3
//! ids and lengths), cut by the store's chunker (FastCDC 16/64/256 KiB with
//! seams every 8 MiB), so changing one byte changes about one chunk. And the
//! frames chunks travel in: `index u32 LE ‖ raw length u32 LE ‖ zstd length
//! u32 LE ‖ zstd bytes`.

use crate::error::{RemoteError, RemoteResult};
use magicfs_store::chunker::{chunk_id, split_file_range, MAX_CHUNK};
use magicfs_types::ChunkId;
use rayon::prelude::*;
use serde_json::{json, Value};

/// Most chunks a recipe may list (a 64 GiB file at the average chunk size).
pub const MAX_RECIPE_CHUNKS: usize = 1 << 20;
/// zstd level chunks are compressed with on the wire.
pub const WIRE_LEVEL: i32 = 1;

/// One chunk of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    /// BLAKE3 of its bytes.
    pub id: ChunkId,
    /// Where it starts in the file.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u32,
}

/// A file's recipe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipe {
    /// Size of the file.
    pub size: u64,
    /// BLAKE3 of the whole file.
    pub blake3: [u8; 32],
    /// The chunks, in order; they tile the file.
    pub chunks: Vec<ChunkRef>,
}

impl Recipe {
    /// The recipe of `data` (chunked and hashed on all cores).
    pub fn of(data: &[u8]) -> Recipe {
        let cuts = split_file_range(data, 0);
        let chunks = cuts
            .par_iter()
            .map(|&(o, l)| ChunkRef { id: chunk_id(&data[o..o + l]), offset: o as u64, len: l as u32 })
            .collect();
        let mut hasher = blake3::Hasher::new();
        hasher.update_rayon(data);
        Recipe { size: data.len() as u64, blake3: *hasher.finalize().as_bytes(), chunks }
    }

    /// The JSON form: `{"size":N,"blake3":"hex","chunks":[["hex",len],…]}`.
    pub fn to_json(&self) -> Value {
        let chunks: Vec<Value> = self.chunks.iter().map(|c| json!([c.id.to_hex(), c.len])).collect();
        json!({ "size": self.size, "blake3": hex(&self.blake3), "chunks": chunks })
    }

    /// Reads and checks the JSON form: lengths from 1 byte to the largest
    /// chunk, adding up to the size.
    pub fn from_json(v: &Value) -> RemoteResult<Recipe> {
        let bad = |why: &str| RemoteError::Transfer(format!("malformed recipe: {why}"));
        let size = v.get("size").and_then(Value::as_u64).ok_or_else(|| bad("no size"))?;
        let blake3 = v.get("blake3").and_then(Value::as_str).and_then(unhex).ok_or_else(|| bad("no blake3"))?;
        let list = v.get("chunks").and_then(Value::as_array).ok_or_else(|| bad("no chunks"))?;
        if list.len() > MAX_RECIPE_CHUNKS {
            return Err(bad("too many chunks"));
        }
        let mut chunks = Vec::with_capacity(list.len());
        let mut offset = 0u64;
        for item in list {
            let id = item.get(0).and_then(Value::as_str).and_then(unhex).ok_or_else(|| bad("a chunk id is not hex"))?;
            let len = item.get(1).and_then(Value::as_u64).ok_or_else(|| bad("a chunk has no length"))?;
            if len == 0 || len > u64::from(MAX_CHUNK) {
                return Err(bad("a chunk length is out of range"));
            }
            chunks.push(ChunkRef { id: ChunkId(id), offset, len: len as u32 });
            offset += len;
        }
        if offset != size {
            return Err(bad("the chunk lengths do not add up to the size"));
        }
        Ok(Recipe { size, blake3, chunks })
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// 32 bytes from 64 hex digits.
pub fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Appends one frame carrying chunk `index` (`raw` compressed with zstd).
pub fn encode_frame(out: &mut Vec<u8>, index: u32, raw: &[u8]) -> RemoteResult<()> {
    let z = zstd::bulk::compress(raw, WIRE_LEVEL).map_err(|e| RemoteError::Io(format!("compressing a chunk: {e}")))?;
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&(z.len() as u32).to_le_bytes());
    out.extend_from_slice(&z);
    Ok(())
}

/// Splits a body into frames and decompresses each: `(index, raw bytes)`.
/// A frame that is cut short, claims more than the largest chunk, or does
/// not decompress to its stated length is an error.
pub fn decode_frames(mut body: &[u8]) -> RemoteResult<Vec<(u32, Vec<u8>)>> {
    let bad = |why: &str| RemoteError::Transfer(format!("malformed chunk frame: {why}"));
    let mut out = Vec::new();
    while !body.is_empty() {
        let word = |b: &[u8], at: usize| -> RemoteResult<u32> {
            let bytes: [u8; 4] = b.get(at..at + 4).and_then(|s| s.try_into().ok()).ok_or_else(|| bad("cut short"))?;
            Ok(u32::from_le_bytes(bytes))
        };
        let (index, raw_len, z_len) = (word(body, 0)?, word(body, 4)?, word(body, 8)? as usize);
        if raw_len > MAX_CHUNK {
            return Err(bad("a chunk longer than the largest chunk"));
        }
        let z = body.get(12..12 + z_len).ok_or_else(|| bad("cut short"))?;
        let raw = zstd::bulk::decompress(z, raw_len as usize).map_err(|e| bad(&format!("zstd: {e}")))?;
        if raw.len() != raw_len as usize {
            return Err(bad("a chunk decompressed to the wrong length"));
        }
        out.push((index, raw));
        body = &body[12 + z_len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use magicfs_types::noise::noise;

    #[test]
    fn one_changed_byte_changes_few_chunks() {
        let mut data = noise(12 << 20, 3);
        let a = Recipe::of(&data);
        assert_eq!(a.chunks.iter().map(|c| u64::from(c.len)).sum::<u64>(), a.size);
        data[5 << 20] ^= 1;
        let b = Recipe::of(&data);
        let old: std::collections::HashSet<_> = a.chunks.iter().map(|c| c.id).collect();
        let changed = b.chunks.iter().filter(|c| !old.contains(&c.id)).count();
        assert!((1..=2).contains(&changed), "{changed}");
        assert_ne!(a.blake3, b.blake3);
        assert_eq!(Recipe::from_json(&b.to_json()).unwrap(), b);
    }

    #[test]
    fn malformed_recipes_and_frames_are_refused() {
        let r = Recipe::of(b"hello");
        let mut v = r.to_json();
        v["size"] = json!(6);
        assert!(Recipe::from_json(&v).unwrap_err().to_string().contains("add up"));
        assert!(Recipe::from_json(&json!({"size":0})).is_err());
        let mut body = Vec::new();
        encode_frame(&mut body, 7, b"abc").unwrap();
        encode_frame(&mut body, 9, b"").unwrap();
        assert_eq!(decode_frames(&body).unwrap(), vec![(7, b"abc".to_vec()), (9, vec![])]);
        assert!(decode_frames(&body[..body.len() - 1]).is_err());
        let mut lying = body.clone();
        lying[4] = 5; // claims 5 raw bytes
        assert!(decode_frames(&lying).is_err());
        assert_eq!(unhex(&hex(&[7u8; 32])), Some([7u8; 32]));
        assert_eq!(unhex("zz"), None);
    }
}
