//! Splitting text into passages of at most 254 word pieces (256 model
//! tokens with `[CLS]` and `[SEP]`), consecutive passages overlapping by 54
//! pieces so that no sentence is only ever seen cut in two.

use magicfs_embed::Tokenizer;

/// Names the passage rules; vectors made under another version are re-made.
pub const CHUNKER_VERSION: &str = "wp254-stride200-v1";
/// Word pieces per passage.
const WINDOW: usize = 254;
/// Word pieces from one passage start to the next.
const STRIDE: usize = 200;

/// One passage: its text, hash and model input.
pub struct Passage {
    /// The source text it covers.
    pub text: String,
    /// BLAKE3 of the chunker version and the text: equal passages share a vector.
    pub hash: [u8; 32],
    /// Token ids with `[CLS]`/`[SEP]`.
    pub ids: Vec<u32>,
}

/// The passages of `text`.
pub fn passages(tok: &Tokenizer, text: &str) -> Vec<Passage> {
    let toks = tok.tokens(text);
    let mut out = Vec::new();
    let mut start = 0;
    while start < toks.len() {
        let end = (start + WINDOW).min(toks.len());
        let w = &toks[start..end];
        let body = &text[w[0].start..w[w.len() - 1].end];
        let mut h = blake3::Hasher::new();
        h.update(CHUNKER_VERSION.as_bytes());
        h.update(body.as_bytes());
        out.push(Passage {
            text: body.to_string(),
            hash: *h.finalize().as_bytes(),
            ids: tok.wrap(w.iter().map(|t| t.id)),
        });
        if end == toks.len() {
            break;
        }
        start += STRIDE;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_overlaps_and_short_text_is_one_passage() {
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "word"];
        let tok = Tokenizer::from_vocab(vocab.into_iter()).unwrap();
        assert_eq!(passages(&tok, "word word").len(), 1);
        assert!(passages(&tok, "  \n").is_empty());
        let text = "word ".repeat(500);
        let p = passages(&tok, &text);
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|p| p.ids.len() <= 256));
        assert_eq!(p[0].ids.len(), 256);
    }
}
