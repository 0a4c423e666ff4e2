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
/// common entities decoded, block boundaries kept as line breaks.
pub fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..lt]));
        rest = &rest[lt..];
        if rest.starts_with("<!--") {
            rest = rest.find("-->").map_or("", |e| &rest[e + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            rest = "";
            break;
        };
        let tag = rest[1..gt].trim_start_matches('/').to_ascii_lowercase();
        let tag_name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        rest = &rest[gt + 1..];
        if (tag_name == "script" || tag_name == "style") && !rest.is_empty() {
            let close = format!("</{tag_name}");
            let lower = rest.to_ascii_lowercase();
            rest = lower.find(&close).map_or("", |e| {
                let after = &rest[e..];
                after.find('>').map_or("", |g| &after[g + 1..])
            });
            continue;
        }
        let block = matches!(
            tag_name.as_str(),
            "p" | "br"
                | "div"
                | "li"
                | "tr"
                | "h1"
                | "h2"
                | "h3"
                | "h4"
                | "h5"
                | "h6"
                | "title"
                | "section"
                | "article"
        );
        out.push(if block { '\n' } else { ' ' });
    }
    out.push_str(&decode_entities(rest));
    out
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    s.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
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
    fn binary_and_huge_are_skipped() {
        assert_eq!(extract("x.bin", b"ab\0cd"), Err(Skip::Binary));
        assert_eq!(extract("x", &[0xff; 100]), Err(Skip::Binary));
        assert_eq!(extract("a.md", b"# Title\ntext").as_deref(), Ok("# Title\ntext"));
    }
}
