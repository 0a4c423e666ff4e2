//! Chunk compression codecs. A chunk is stored raw when compression saves
//! less than [`MIN_SAVING_PERCENT`] percent.

use std::io::{Read, Write};

/// Compression saving below which a chunk is stored raw.
pub const MIN_SAVING_PERCENT: usize = 3;

/// How a chunk's bytes are encoded in its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Stored as is.
    None = 0,
    /// zstd, level 1.
    Zstd = 1,
    /// gzip (deflate), level 6.
    Gzip = 2,
}

impl Codec {
    /// Parses a codec name: `zstd`, `gzip` or `none`.
    pub fn parse(s: &str) -> Option<Codec> {
        match s.trim().to_ascii_lowercase().as_str() {
            "zstd" => Some(Codec::Zstd),
            "gzip" | "gz" => Some(Codec::Gzip),
            "none" | "raw" => Some(Codec::None),
            _ => None,
        }
    }

    /// The codec's name as [`Codec::parse`] accepts it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
        }
    }

    /// The codec with this stored code.
    pub fn from_code(c: u8) -> Option<Codec> {
        match c {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Gzip),
            _ => None,
        }
    }
}

/// Chunks smaller than this are stored raw: compressing them saves little.
pub const MIN_COMPRESS_LEN: usize = 512;
/// Length of the sample tried first on large chunks.
const SAMPLE_LEN: usize = 4096;

thread_local! {
    static ZSTD_C: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static ZSTD_D: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

fn zstd_compress(raw: &[u8]) -> Option<Vec<u8>> {
    ZSTD_C.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(1).ok();
        }
        c.as_mut()?.compress(raw).ok()
    })
}

fn pack(codec: Codec, raw: &[u8]) -> Option<Vec<u8>> {
    match codec {
        Codec::None => None,
        Codec::Zstd => zstd_compress(raw),
        Codec::Gzip => {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 2), flate2::Compression::default());
            enc.write_all(raw).and_then(|_| enc.finish()).ok()
        }
    }
}

fn pays(packed: usize, raw: usize) -> bool {
    packed * 100 <= raw * (100 - MIN_SAVING_PERCENT)
}

/// Compresses `raw` with `codec`. Returns the codec actually used (`None`
/// when compression did not pay) and the stored bytes. Tiny chunks are not
/// tried, and a large chunk whose first 4 KiB do not compress is stored raw
/// without compressing the rest (incompressible data costs almost nothing).
pub fn compress(codec: Codec, raw: &[u8]) -> (Codec, Vec<u8>) {
    encode(codec, raw).unwrap_or_else(|| (Codec::None, raw.to_vec()))
}

/// [`compress`] without a copy for chunks stored raw: `None` means "store
/// `raw` as it is".
pub fn encode(codec: Codec, raw: &[u8]) -> Option<(Codec, Vec<u8>)> {
    if codec == Codec::None || raw.len() < MIN_COMPRESS_LEN {
        return None;
    }
    if raw.len() >= 4 * SAMPLE_LEN {
        let sample = &raw[..SAMPLE_LEN];
        if !pack(codec, sample).is_some_and(|p| pays(p.len(), sample.len())) {
            return None;
        }
    }
    pack(codec, raw).filter(|p| pays(p.len(), raw.len())).map(|p| (codec, p))
}

/// Decodes stored bytes back to the raw chunk of `raw_len` bytes (raw
/// chunks are returned as they are, without a copy).
pub fn decompress(codec: Codec, stored: Vec<u8>, raw_len: usize) -> std::io::Result<Vec<u8>> {
    if raw_len > crate::chunker::MAX_CHUNK as usize {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a chunk of {raw_len} bytes is larger than any the chunker cuts"),
        ));
    }
    let out = match codec {
        Codec::None => stored,
        Codec::Zstd => ZSTD_D.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new()?);
            }
            match d.as_mut() {
                Some(d) => d.decompress(&stored, raw_len),
                None => Err(std::io::Error::other("no zstd decompressor")),
            }
        })?,
        Codec::Gzip => {
            let mut out = Vec::with_capacity(raw_len);
            // One byte more than expected is enough to tell a damaged stream.
            flate2::read::GzDecoder::new(stored.as_slice()).take(raw_len as u64 + 1).read_to_end(&mut out)?;
            out
        }
    };
    if out.len() != raw_len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("chunk decoded to {} bytes, expected {raw_len}", out.len()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_all_codecs() {
        let text: Vec<u8> = b"the quick brown fox ".repeat(500);
        for c in [Codec::None, Codec::Zstd, Codec::Gzip] {
            let (used, stored) = compress(c, &text);
            assert_eq!(used, c);
            assert_eq!(decompress(used, stored, text.len()).unwrap(), text);
        }
    }

    #[test]
    fn tiny_chunks_are_stored_raw() {
        assert_eq!(compress(Codec::Zstd, &[0u8; 100]).0, Codec::None);
    }

    #[test]
    fn incompressible_is_stored_raw() {
        let noise = magicfs_types::noise::noise(65536, 0x1234_5678_9abc_def0);
        let (used, stored) = compress(Codec::Zstd, &noise);
        assert_eq!(used, Codec::None);
        assert_eq!(stored, noise);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let (c, s) = compress(Codec::Zstd, &[7u8; 4096]);
        assert!(decompress(c, s, 100).is_err());
    }
}
