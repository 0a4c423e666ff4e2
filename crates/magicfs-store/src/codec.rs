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

/// Compresses `raw` with `codec`. Returns the codec actually used (`None`
/// when compression did not pay) and the stored bytes.
pub fn compress(codec: Codec, raw: &[u8]) -> (Codec, Vec<u8>) {
    let packed = match codec {
        Codec::None => None,
        Codec::Zstd => zstd::bulk::compress(raw, 1).ok(),
        Codec::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw.len() / 2),
                flate2::Compression::default(),
            );
            enc.write_all(raw).and_then(|_| enc.finish()).ok()
        }
    };
    match packed {
        Some(p) if p.len() * 100 <= raw.len() * (100 - MIN_SAVING_PERCENT) => (codec, p),
        _ => (Codec::None, raw.to_vec()),
    }
}

/// Decodes stored bytes back to the raw chunk of `raw_len` bytes.
pub fn decompress(codec: Codec, stored: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    let out = match codec {
        Codec::None => stored.to_vec(),
        Codec::Zstd => zstd::bulk::decompress(stored, raw_len)?,
        Codec::Gzip => {
            let mut out = Vec::with_capacity(raw_len);
            flate2::read::GzDecoder::new(stored).read_to_end(&mut out)?;
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
            assert_eq!(decompress(used, &stored, text.len()).unwrap(), text);
        }
    }

    #[test]
    fn incompressible_is_stored_raw() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (used, stored) = compress(Codec::Zstd, &noise);
        assert_eq!(used, Codec::None);
        assert_eq!(stored, noise);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let (c, s) = compress(Codec::Zstd, &[7u8; 4096]);
        assert!(decompress(c, &s, 100).is_err());
    }
}
