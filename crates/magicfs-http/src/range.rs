//! `Range: bytes=…` requests and entity tags.

use std::ops::RangeInclusive;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most ranges one request may ask for; a longer list is answered with the whole file.
pub const MAX_RANGES: usize = 64;

/// What a `Range` header asks of a file of a given size.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranges {
    /// No usable header: send the whole file.
    Whole,
    /// These byte ranges (inclusive, inside the file), in the order asked.
    Parts(Vec<RangeInclusive<u64>>),
    /// Well-formed, but no range lies inside the file.
    Unsatisfiable,
}

/// Reads a `Range` header value for a file of `size` bytes. A header that is
/// not a well-formed `bytes=` list, or asks for more than [`MAX_RANGES`]
/// ranges, is ignored (the whole file is sent), as RFC 9110 allows.
pub fn parse_range(header: &str, size: u64) -> Ranges {
    let Some(list) = header.trim().strip_prefix("bytes=") else {
        return Ranges::Whole;
    };
    let specs: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if specs.is_empty() || specs.len() > MAX_RANGES {
        return Ranges::Whole;
    }
    let mut parts = Vec::with_capacity(specs.len());
    for spec in specs {
        let Some((first, last)) = spec.split_once('-') else {
            return Ranges::Whole;
        };
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            // A suffix: the last `n` bytes.
            let Ok(n) = last.parse::<u64>() else {
                return Ranges::Whole;
            };
            if n > 0 && size > 0 {
                parts.push(size - n.min(size)..=size - 1);
            }
            continue;
        }
        let Ok(start) = first.parse::<u64>() else {
            return Ranges::Whole;
        };
        let end = if last.is_empty() {
            u64::MAX
        } else {
            match last.parse::<u64>() {
                Ok(end) if end >= start => end,
                _ => return Ranges::Whole,
            }
        };
        if start < size {
            parts.push(start..=end.min(size - 1));
        }
    }
    if parts.is_empty() {
        Ranges::Unsatisfiable
    } else {
        Ranges::Parts(parts)
    }
}

/// A strong entity tag from a file's size and modification time in nanoseconds.
pub fn etag(size: u64, modified: SystemTime) -> String {
    let nanos = match modified.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos(),
        Err(e) => e.duration().as_nanos(),
    };
    format!("\"{size:x}-{nanos:x}\"")
}

/// True when an `If-None-Match` value names `etag` (or is `*`). The comparison
/// is the weak one RFC 9110 prescribes for this header.
pub fn none_match(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multiple_ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ranges::Parts(vec![0..=9]));
        assert_eq!(parse_range("bytes=90-200", 100), Ranges::Parts(vec![90..=99]));
        assert_eq!(parse_range("bytes=95-", 100), Ranges::Parts(vec![95..=99]));
        assert_eq!(parse_range("bytes=-10", 100), Ranges::Parts(vec![90..=99]));
        assert_eq!(parse_range("bytes=-1000", 100), Ranges::Parts(vec![0..=99]));
        assert_eq!(parse_range("bytes=0-9, 20-29", 100), Ranges::Parts(vec![0..=9, 20..=29]));
        assert_eq!(parse_range("bytes=0-9,200-300", 100), Ranges::Parts(vec![0..=9]));
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(parse_range("bytes=100-", 100), Ranges::Unsatisfiable);
        assert_eq!(parse_range("bytes=200-300,400-500", 100), Ranges::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Ranges::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Ranges::Unsatisfiable);
        for ignored in ["items=0-9", "bytes=9-0", "bytes=a-b", "bytes=", "bytes=5", "0-9"] {
            assert_eq!(parse_range(ignored, 100), Ranges::Whole, "{ignored}");
        }
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(parse_range(&many, 100), Ranges::Whole);
    }

    #[test]
    fn etags() {
        let t = UNIX_EPOCH + std::time::Duration::from_nanos(0x1234);
        let tag = etag(255, t);
        assert_eq!(tag, "\"ff-1234\"");
        assert!(none_match(&tag, &tag));
        assert!(none_match(&format!("\"x\", W/{tag}"), &tag));
        assert!(none_match("*", &tag));
        assert!(!none_match("\"ff-1235\"", &tag));
    }
}
