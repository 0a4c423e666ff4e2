//! Text extraction: plain text, Markdown and source code as they are, HTML
//! with its tags, scripts and styles removed; binary files are skipped.

/// Files larger than this are not indexed (their size is checked before reading).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Why a file has no text to index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// Contains NUL bytes or is mostly not UTF-8.
    Binary,
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge,
    /// Could not be read (permissions, I/O error, vanished).
    Unreadable,
    /// Not a regular file (FIFO, socket, device).
    NotRegular,
}

impl Skip {
    /// Short name for status output.
    pub fn name(self) -> &'static str {
        match self {
            Skip::Binary => "binary",
            Skip::TooLarge => "too_large",
            Skip::Unreadable => "unreadable",
            Skip::NotRegular => "not_regular",
        }
    }
}

/// The text of a file named `name` with contents `bytes`.
pub fn extract(name: &str, bytes: &[u8]) -> Result<String, Skip> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Skip::TooLarge);
    }
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err(Skip::Binary);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.to_string(),
        Err(_) => {
            let lossy = String::from_utf8_lossy(bytes);
            let bad = lossy.chars().filter(|c| *c == '\u{fffd}').count();
            if bad * 100 > lossy.chars().count().max(1) {
                return Err(Skip::Binary);
            }
            lossy.into_owned()
        }
    };
    let lower = name.to_ascii_lowercase();
    let head = text[..text.len().min(512)].trim_start().to_ascii_lowercase();
    if lower.ends_with(".html")
        || lower.ends_with(".htm")
        || lower.ends_with(".xhtml")
        || head.starts_with("<!doctype html")
        || head.starts_with("<html")
    {
        return Ok(strip_html(&text));
    }
    Ok(text)
}

/// Text of an HTML document: tags, comments, scripts and styles removed,
/// character references (named and numeric) decoded, block boundaries kept
/// as line breaks. One pass of html5ever's tokenizer: linear in the size of
/// the page, whatever its tags.
pub fn strip_html(html: &str) -> String {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{BufferQueue, Tokenizer};
    let sink =
        TextSink { out: std::cell::RefCell::new(String::with_capacity(html.len() / 2)), skip: Default::default() };
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let tok = Tokenizer::new(sink, Default::default());
    // The sink never asks the tokenizer to pause for a script, so one feed takes it all.
    let _ = tok.feed(&input);
    tok.end();
    tok.sink.out.into_inner()
}

/// Collects the text tokens of a page.
struct TextSink {
    out: std::cell::RefCell<String>,
    /// Inside `<script>`, `<style>`, `<noscript>` or `<template>`: characters are not text.
    skip: std::cell::Cell<bool>,
}

impl html5ever::tokenizer::TokenSink for TextSink {
    type Handle = ();

    fn process_token(
        &self,
        token: html5ever::tokenizer::Token,
        _line: u64,
    ) -> html5ever::tokenizer::TokenSinkResult<()> {
        use html5ever::tokenizer::states::RawKind;
        use html5ever::tokenizer::{TagKind, Token, TokenSinkResult};
        match token {
            Token::CharacterTokens(t) if !self.skip.get() => self.out.borrow_mut().push_str(&t),
            Token::TagToken(tag) => {
                let name: &str = &tag.name;
                let hidden = matches!(name, "script" | "style" | "noscript" | "template");
                if hidden {
                    self.skip.set(tag.kind == TagKind::StartTag && !tag.self_closing);
                    if self.skip.get() {
                        // Scripts and styles are raw text up to their end tag, as a browser reads them.
                        let raw = if name == "script" { RawKind::ScriptData } else { RawKind::Rawtext };
                        return if name == "noscript" || name == "template" {
                            TokenSinkResult::Continue
                        } else {
                            TokenSinkResult::RawData(raw)
                        };
                    }
                } else if name == "title" || name == "textarea" {
                    let mut out = self.out.borrow_mut();
                    out.push('\n');
                    if tag.kind == TagKind::StartTag {
                        return TokenSinkResult::RawData(RawKind::Rcdata);
                    }
                } else if is_block(name) {
                    self.out.borrow_mut().push('\n');
                } else if matches!(name, "td" | "th" | "img" | "input") {
                    self.out.borrow_mut().push(' ');
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// Elements that start a new line of text.
fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "br"
            | "div"
            | "li"
            | "ul"
            | "ol"
            | "dl"
            | "dt"
            | "dd"
            | "tr"
            | "table"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "nav"
            | "aside"
            | "main"
            | "blockquote"
            | "pre"
            | "hr"
            | "figure"
            | "figcaption"
            | "body"
            | "head"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_loses_tags_scripts_and_entities() {
        let t = extract("a.html", b"<html><head><style>p{}</style><script>x()</script></head><body><p>Fish &amp; chips</p><!-- c --></body></html>").unwrap();
        assert_eq!(t.split_whitespace().collect::<Vec<_>>(), ["Fish", "&", "chips"]);
    }

    #[test]
    fn html_entities_numeric_and_named_and_inline_tags() {
        let t = strip_html("<p>caf&#233; &#x2014; na&iuml;ve &lt;tag&gt; <b>bo</b>ld</p><p>CVE&#45;2024&#x2D;1234</p>");
        let words: Vec<&str> = t.split_whitespace().collect();
        assert_eq!(words, ["café", "—", "naïve", "<tag>", "bold", "CVE-2024-1234"]);
    }

    #[test]
    fn script_closing_tags_in_any_case_and_unclosed_scripts() {
        let t = strip_html("<SCRIPT>var a = '<p>no</p>';</ScRiPt>yes<style>p{}</STYLE> too<script>never closed");
        assert_eq!(t.split_whitespace().collect::<Vec<_>>(), ["yes", "too"]);
        let t = strip_html("<title>A &amp; B</title><noscript>turn on js</noscript>body");
        assert_eq!(t.split_whitespace().collect::<Vec<_>>(), ["A", "&", "B", "body"]);
    }

    #[test]
    fn a_page_of_script_tags_is_read_in_one_pass() {
        // 16 MiB (the largest file indexed) of script tags and text between
        // them: with a scan per tag this is quadratic and takes hours.
        let unit = "<script type=\"text/javascript\">var x = 1;</script>word ";
        let page = unit.repeat((MAX_FILE_BYTES as usize) / unit.len());
        let t0 = std::time::Instant::now();
        let text = extract("big.html", page.as_bytes()).unwrap();
        let took = t0.elapsed();
        assert_eq!(text.split_whitespace().count(), (MAX_FILE_BYTES as usize) / unit.len());
        assert!(!text.contains("var"));
        assert!(took < std::time::Duration::from_secs(60), "16 MiB of script tags took {took:?}");
    }

    #[test]
    fn binary_and_huge_are_skipped() {
        assert_eq!(extract("x.bin", b"ab\0cd"), Err(Skip::Binary));
        assert_eq!(extract("x", &[0xff; 100]), Err(Skip::Binary));
        assert_eq!(extract("a.md", b"# Title\ntext").as_deref(), Ok("# Title\ntext"));
    }
}
