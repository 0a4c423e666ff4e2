//! The loop detector: notices when generated text has started repeating
//! one span over and over ("Why did the chicken…" until the token limit),
//! so generation can stop there and the repeats can be cut off.
//!
//! A text *loops* when it ends with at least three copies of one unit (two
//! when the unit is 64 bytes or longer), the copies together span at least
//! 48 bytes, and the unit holds at least three letters (a row of `=====`,
//! blank lines or `0, 0, 0` are not loops). The check is incremental: every
//! byte updates, for each period up to [`MAX_PERIOD`], the length of the
//! run of bytes equal to the byte one period earlier, so a whole reply costs
//! O(bytes × periods) with no rescans.

/// Longest repeated unit looked for, in bytes.
pub const MAX_PERIOD: usize = 1024;
/// Fewest bytes the repeated copies must span.
const MIN_SPAN: usize = 48;
/// A unit this long counts as a loop after two copies.
const LONG_UNIT: usize = 64;
/// Letters a unit must hold.
const MIN_LETTERS: usize = 3;

/// Watches a stream of text for a repeating tail.
#[derive(Debug, Default)]
pub struct LoopDetector {
    text: Vec<u8>,
    /// `run[p]`: how many of the last bytes equal the byte `p` before them.
    run: Vec<usize>,
}

impl LoopDetector {
    /// A detector with nothing seen yet.
    pub fn new() -> LoopDetector {
        LoopDetector { text: Vec::new(), run: vec![0; MAX_PERIOD + 1] }
    }

    /// Everything pushed so far.
    pub fn text(&self) -> &str {
        // Only whole `&str` pieces are pushed.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }

    /// Adds `piece`; when the text now loops, returns how many bytes of it
    /// to keep (everything up to the end of the first copy of the unit).
    pub fn push(&mut self, piece: &str) -> Option<usize> {
        if self.run.is_empty() {
            self.run = vec![0; MAX_PERIOD + 1];
        }
        for &b in piece.as_bytes() {
            self.text.push(b);
            let i = self.text.len() - 1;
            for p in 1..=MAX_PERIOD.min(i) {
                self.run[p] = if self.text[i - p] == b { self.run[p] + 1 } else { 0 };
            }
        }
        self.check()
    }

    fn check(&self) -> Option<usize> {
        let n = self.text.len();
        for p in 1..=MAX_PERIOD.min(n / 2) {
            let span = self.run[p] + p; // bytes of the periodic tail
            let copies = span / p;
            if span < MIN_SPAN || copies < 2 || (copies < 3 && p < LONG_UNIT) {
                continue;
            }
            let start = n - span;
            let unit = &self.text[start..start + p];
            if unit.iter().filter(|b| b.is_ascii_alphabetic()).count() < MIN_LETTERS && !unit.iter().any(|b| *b >= 0x80)
            {
                continue;
            }
            return Some(cut_point(&self.text, start, p));
        }
        None
    }
}

/// Where to cut a text whose bytes from `start` repeat with period `p`: after
/// one whole copy of the unit, moved forward (less than one period) to the
/// end of a line or sentence when the copy has one, and to a character boundary.
fn cut_point(text: &[u8], start: usize, p: usize) -> usize {
    let first_end = start + p;
    let boundary = (0..p).find(|j| {
        let at = first_end + j;
        let prev = text[at - 1];
        let ends_sentence = |c: u8| matches!(c, b'.' | b'!' | b'?');
        prev == b'\n'
            || (ends_sentence(prev) && text.get(at).is_some_and(|c| c.is_ascii_whitespace()))
            || (prev == b' ' && at >= 2 && ends_sentence(text[at - 2]))
    });
    let mut cut = first_end + boundary.unwrap_or(0);
    while cut < text.len() && (text[cut] & 0xC0) == 0x80 {
        cut += 1;
    }
    cut.min(text.len())
}

/// If `text` ends in a loop, the length to keep (see [`LoopDetector`]).
pub fn find_loop(text: &str) -> Option<usize> {
    LoopDetector::new().push(text)
}

/// `text` with a repeating tail cut down to one copy; `true` when something was cut.
pub fn trim_loop(text: &str) -> (String, bool) {
    match find_loop(text) {
        Some(keep) => (text[..keep].to_string(), true),
        None => (text.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_sentence_is_cut_to_one_copy() {
        let joke = "Why did the chicken cross the road? To get to the other side. ";
        let text = format!("Here is one. {}", joke.repeat(5));
        let (kept, cut) = trim_loop(&text);
        assert!(cut);
        assert_eq!(kept, format!("Here is one. {}", joke.trim_end()), "{kept:?}");
        // Streaming: detected as soon as the tail repeats, before the end.
        let mut d = LoopDetector::new();
        let mut stopped_at = None;
        for (i, w) in text.split_inclusive(' ').enumerate() {
            if let Some(keep) = d.push(w) {
                stopped_at = Some((i, keep));
                break;
            }
        }
        let (i, keep) = stopped_at.expect("a loop");
        assert!(i < text.split_inclusive(' ').count() - 5, "stopped late, at word {i}");
        assert_eq!(&d.text()[..keep], kept);
    }

    #[test]
    fn repeated_lines_are_cut_at_a_line_end() {
        let text = format!("# Haiku\n{}", "# File structure:\n".repeat(12));
        assert_eq!(trim_loop(&text).0, "# Haiku\n# File structure:\n");
        // Long units count after two copies.
        let para = "The disk spins on and on, holding every byte we ever wrote to it.\n";
        assert_eq!(trim_loop(&format!("{para}{para}")).0, para);
    }

    #[test]
    fn ordinary_text_code_and_rules_are_not_loops() {
        for t in [
            "=".repeat(200),
            "\n\n\n\n".repeat(30),
            "0, ".repeat(40),
            "}\n}\n}\n".into(),
            "- milk\n- eggs\n- bread\n- butter\n".into(),
            "def a():\n    return 1\n\n\ndef b():\n    return 2\n".into(),
            "ha ha ha ha".into(),
            "name,age\nann,31\nbob,42\ncid,27\n".into(),
        ] {
            assert_eq!(find_loop(&t), None, "{t:?}");
        }
        // Non-ASCII text is cut on a character boundary.
        let t = "Très bien. ".repeat(6);
        let (k, cut) = trim_loop(&t);
        assert!(cut && k.starts_with("Très bien.") && k.len() < 20, "{k:?}");
    }
}
