//! Byte sizes written for people: `4096`, `64KiB`, `1MiB`, `2GB`.

use crate::error::{ComputeError, ComputeResult};

/// Reads a size in bytes: a whole number with an optional unit, case
/// insensitive and optionally after a space. `K`, `KiB`, `M`, `MiB`, `G`,
/// `GiB`, `T`, `TiB` are powers of 1024; `KB`, `MB`, `GB`, `TB` powers of
/// 1000; `B` or nothing means bytes.
pub fn parse_size(text: &str) -> ComputeResult<u64> {
    let bad = |reason: &str| ComputeError::BadSize { text: text.into(), reason: reason.into() };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(bad("it does not start with a number"));
    }
    let n: u64 = digits.parse().map_err(|_| bad("the number is too large"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad("unknown unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)")),
    };
    n.checked_mul(scale).ok_or_else(|| bad("the size is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        for (text, want) in [
            ("4096", 4096),
            ("0", 0),
            ("1MiB", 1 << 20),
            ("64KiB", 65536),
            ("64kib", 65536),
            ("64K", 65536),
            ("2 GiB", 2 << 30),
            ("1TiB", 1 << 40),
            ("3MB", 3_000_000),
            ("5B", 5),
            (" 7 ", 7),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refusals_say_why() {
        for (text, needle) in [
            ("", "number"),
            ("MiB", "number"),
            ("1.5MiB", "unit"),
            ("12XB", "unit"),
            ("-1", "number"),
            ("99999999999999999999", "too large"),
            ("20000000TiB", "too large"),
        ] {
            let e = parse_size(text).unwrap_err();
            assert!(e.to_string().contains(needle) && e.to_string().contains("64KiB"), "{text}: {e}");
        }
    }
}
