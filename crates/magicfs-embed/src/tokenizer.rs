//! The BERT uncased tokenizer: basic tokenization (clean text, CJK
//! characters apart, accents stripped after NFD, lowercase, split on
//! whitespace and punctuation), then greedy longest-match WordPiece.
//!
//! This follows the `BertNormalizer` + `BertPreTokenizer` + `WordPiece`
//! pipeline of the model's `tokenizer.json` (clean_text, handle_chinese_chars,
//! lowercase, strip_accents following lowercase, `##` continuation, `[UNK]`,
//! 100 characters per word at most).

use crate::EmbedError;
use std::collections::HashMap;
use std::path::Path;
use unicode_general_category::{get_general_category, GeneralCategory as G};
use unicode_normalization::UnicodeNormalization;

/// Longest word WordPiece splits; longer words become `[UNK]`.
const MAX_WORD_CHARS: usize = 100;

/// One token with the byte range of the original text it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// Vocabulary id.
    pub id: u32,
    /// First byte of its word in the original text.
    pub start: usize,
    /// One past the last byte of its word in the original text.
    pub end: usize,
}

/// A WordPiece vocabulary with the special tokens the model needs.
pub struct Tokenizer {
    vocab: HashMap<String, u32>,
    unk: u32,
    cls: u32,
    sep: u32,
}

impl Tokenizer {
    /// Reads `vocab.txt` (one token a line, the line number is the id).
    pub fn from_vocab_file(path: &Path) -> Result<Tokenizer, EmbedError> {
        let text = std::fs::read_to_string(path).map_err(|e| EmbedError::io(path, e))?;
        Tokenizer::from_vocab(text.lines())
    }

    /// Builds a tokenizer from vocabulary lines.
    pub fn from_vocab<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Tokenizer, EmbedError> {
        let vocab: HashMap<String, u32> = lines.enumerate().map(|(i, l)| (l.to_string(), i as u32)).collect();
        let get = |t: &str| vocab.get(t).copied().ok_or_else(|| EmbedError::Model(format!("vocabulary lacks {t}")));
        let (unk, cls, sep) = (get("[UNK]")?, get("[CLS]")?, get("[SEP]")?);
        Ok(Tokenizer { vocab, unk, cls, sep })
    }

    /// Number of entries in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Word pieces of `text` with their source byte ranges (no special tokens, no truncation).
    pub fn tokens(&self, text: &str) -> Vec<Token> {
        let mut out = Vec::new();
        let mut piece = String::new();
        for (word, start, end) in basic_words(text) {
            self.wordpiece(&word, &mut piece, &mut |id| out.push(Token { id, start, end }));
        }
        out
    }

    /// Model input for `text`: `[CLS] pieces [SEP]`, at most `max_len` ids in all.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = vec![self.cls];
        let limit = max_len.max(2) - 1;
        let mut piece = String::new();
        'outer: for (word, _, _) in basic_words(text) {
            let mut full = false;
            self.wordpiece(&word, &mut piece, &mut |id| {
                if ids.len() < limit {
                    ids.push(id)
                } else {
                    full = true
                }
            });
            if full {
                break 'outer;
            }
        }
        ids.push(self.sep);
        ids
    }

    /// Wraps already-tokenized pieces as model input.
    pub fn wrap(&self, pieces: impl Iterator<Item = u32>) -> Vec<u32> {
        let mut ids = vec![self.cls];
        ids.extend(pieces);
        ids.push(self.sep);
        ids
    }

    /// Greedy longest-match-first WordPiece of one normalized word.
    fn wordpiece(&self, word: &str, piece: &mut String, emit: &mut impl FnMut(u32)) {
        let chars: Vec<(usize, char)> = word.char_indices().collect();
        if chars.len() > MAX_WORD_CHARS {
            return emit(self.unk);
        }
        let mut ids = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let b0 = chars[start].0;
                let b1 = chars.get(end).map_or(word.len(), |c| c.0);
                piece.clear();
                if start > 0 {
                    piece.push_str("##");
                }
                piece.push_str(&word[b0..b1]);
                if let Some(&id) = self.vocab.get(piece.as_str()) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => ids.push(id),
                None => return emit(self.unk),
            }
            start = end;
        }
        ids.into_iter().for_each(emit);
    }
}

/// Cleans, splits and normalizes `text` into words with their byte ranges.
fn basic_words(text: &str) -> Vec<(String, usize, usize)> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut cur_start = 0;
    let mut cur_end = 0;
    let flush = |cur: &mut String, s: usize, e: usize, words: &mut Vec<(String, usize, usize)>| {
        if !cur.is_empty() {
            words.push((normalize(cur), s, e));
            cur.clear();
        }
    };
    for (i, c) in text.char_indices() {
        let e = i + c.len_utf8();
        if c == '\0' || c == '\u{fffd}' || is_control(c) {
            continue;
        }
        if is_whitespace(c) {
            flush(&mut cur, cur_start, cur_end, &mut words);
        } else if is_chinese(c) || is_punctuation(c) {
            flush(&mut cur, cur_start, cur_end, &mut words);
            words.push((normalize(c.encode_utf8(&mut [0; 4])), i, e));
        } else {
            if cur.is_empty() {
                cur_start = i;
            }
            cur.push(c);
            cur_end = e;
        }
    }
    flush(&mut cur, cur_start, cur_end, &mut words);
    words.retain(|w| !w.0.is_empty());
    words
}

/// Strips accents (NFD, drop non-spacing marks), then lowercases.
fn normalize(word: &str) -> String {
    let stripped: String = word.nfd().filter(|c| get_general_category(*c) != G::NonspacingMark).collect();
    stripped.to_lowercase()
}

fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' ') || get_general_category(c) == G::SpaceSeparator
}

fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    matches!(get_general_category(c), G::Control | G::Format | G::Unassigned | G::PrivateUse | G::Surrogate)
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            get_general_category(c),
            G::ConnectorPunctuation
                | G::DashPunctuation
                | G::OpenPunctuation
                | G::ClosePunctuation
                | G::InitialPunctuation
                | G::FinalPunctuation
                | G::OtherPunctuation
        )
}

fn is_chinese(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B920..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        let v = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "un", "##aff", "##able", ",", "cafe", "!", "中"];
        Tokenizer::from_vocab(v.into_iter()).unwrap()
    }

    #[test]
    fn words_split_on_punctuation_and_whitespace() {
        let w: Vec<String> = basic_words("Hello,  WORLD!\tCafé 中x").into_iter().map(|w| w.0).collect();
        assert_eq!(w, ["hello", ",", "world", "!", "cafe", "中", "x"]);
    }

    #[test]
    fn wordpiece_is_greedy_longest_match() {
        let t = tok();
        assert_eq!(t.encode("unaffable hello zzz", 256), vec![2, 6, 7, 8, 4, 1, 3]);
    }

    #[test]
    fn encode_truncates_to_max_len() {
        let t = tok();
        let ids = t.encode(&"hello ".repeat(1000), 256);
        assert_eq!(ids.len(), 256);
        assert_eq!((ids[0], ids[255]), (2, 3));
    }

    #[test]
    fn tokens_keep_source_offsets() {
        let t = tok();
        let toks = t.tokens("  Café!");
        assert_eq!(toks[0], Token { id: 10, start: 2, end: 7 });
        assert_eq!(toks[1], Token { id: 11, start: 7, end: 8 });
    }
}
