//! JSON string tokens written in pieces: escaping, and the streaming UTF-8
//! check that decides whether a file's content is written as text.

use std::io::{self, Write};

/// Writes `bytes` escaped for the inside of a JSON string, as `serde_json`
/// escapes them: `"` and `\` with a backslash, control characters as `\n`,
/// `\t`, `\r`, `\b`, `\f` or `\u00XX`. Every other byte is copied, so valid
/// UTF-8 stays valid UTF-8 (multi-byte sequences hold no byte below 0x80).
pub(crate) fn write_escaped(out: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\t' => b"\\t",
            b'\r' => b"\\r",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]],
            _ => continue,
        };
        out.write_all(&bytes[start..i])?;
        out.write_all(esc)?;
        start = i + 1;
    }
    out.write_all(&bytes[start..])
}

/// Writes `s` as one quoted JSON string.
pub(crate) fn write_string(out: &mut dyn Write, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    write_escaped(out, s.as_bytes())?;
    out.write_all(b"\"")
}

/// True when `bytes` are written as text: valid UTF-8 without a NUL byte.
pub(crate) fn is_text(bytes: &[u8]) -> bool {
    !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

/// Checks a byte stream fed in arbitrary pieces for "text" (valid UTF-8, no
/// NUL), carrying a character cut between two pieces over to the next.
#[derive(Default)]
pub(crate) struct TextCheck {
    pending: Vec<u8>,
}

impl TextCheck {
    /// Feeds the next piece; false as soon as the stream is not text.
    pub(crate) fn feed(&mut self, mut piece: &[u8]) -> bool {
        if piece.contains(&0) {
            return false;
        }
        if let Some(&lead) = self.pending.first() {
            let width = match lead {
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => return false,
            };
            let take = (width - self.pending.len()).min(piece.len());
            self.pending.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.pending.len() < width {
                return true;
            }
            if std::str::from_utf8(&self.pending).is_err() {
                return false;
            }
            self.pending.clear();
        }
        match std::str::from_utf8(piece) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                self.pending.extend_from_slice(&piece[e.valid_up_to()..]);
                true
            }
            Err(_) => false,
        }
    }

    /// True when everything fed was text and no character is left cut.
    pub(crate) fn finish(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(s: &str) {
        let mut out = Vec::new();
        write_string(&mut out, s).unwrap();
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, s);
        assert_eq!(out, serde_json::to_vec(s).unwrap(), "same bytes as serde_json for {s:?}");
    }

    #[test]
    fn escaping_round_trips() {
        roundtrip("");
        roundtrip("plain text");
        roundtrip("quote \" backslash \\ slash / tab \t nl \n cr \r bs \x08 ff \x0c");
        roundtrip("\x01\x1f\x7f del and controls");
        roundtrip("ünïcødé ✓ 𝄞 and \u{2028}");
        let all: String = (1u32..0x3000).filter_map(char::from_u32).collect();
        roundtrip(&all);
    }

    #[test]
    fn escaping_in_pieces_matches_whole() {
        let s = "a\"b\\c\nd✓e\u{1}".repeat(100);
        let mut whole = Vec::new();
        write_escaped(&mut whole, s.as_bytes()).unwrap();
        let mut pieces = Vec::new();
        for chunk in s.as_bytes().chunks(7) {
            write_escaped(&mut pieces, chunk).unwrap();
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn text_check_across_pieces() {
        let s = "ab✓𝄞ü".repeat(50);
        for size in 1..9 {
            let mut c = TextCheck::default();
            assert!(s.as_bytes().chunks(size).all(|p| c.feed(p)) && c.finish(), "piece size {size}");
        }
        let mut c = TextCheck::default();
        assert!(c.feed(&[b'a', 0xe2, 0x9c]));
        assert!(!c.finish(), "a cut character at the end is not text");
        let mut c = TextCheck::default();
        assert!(!c.feed(&[0xff]));
        let mut c = TextCheck::default();
        assert!(!c.feed(b"a\0b"));
        let mut c = TextCheck::default();
        assert!(c.feed(&[0xe2]) && !c.feed(&[0x41, 0x41]), "a broken sequence across pieces");
        assert!(is_text("✓".as_bytes()) && !is_text(b"\0") && !is_text(&[0xc3]));
    }
}
