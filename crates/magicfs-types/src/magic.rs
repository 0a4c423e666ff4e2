//! The `user.magic.*` attributes whose values have a fixed form, and their
//! parsers: `setxattr` refuses a value these reject (`EINVAL`), and the
//! code that reads the attribute parses it with the same function.

/// Sampling temperature of a chat session.
pub const TEMPERATURE: &str = "user.magic.temperature";
/// Token limit of one reply of a chat session.
pub const MAX_TOKENS: &str = "user.magic.max_tokens";
/// Codec of a file's new chunks (checked by the store's codec parser).
pub const CODEC: &str = "user.magic.codec";

fn text(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value).ok().map(str::trim)
}

/// A temperature: a number from 0 to 5.
pub fn parse_temperature(value: &[u8]) -> Result<f32, String> {
    text(value)
        .and_then(|v| v.parse::<f32>().ok())
        .filter(|t| (0.0..=5.0).contains(t))
        .ok_or_else(|| format!("{TEMPERATURE}={:?} is not a number from 0 to 5", String::from_utf8_lossy(value)))
}

/// A token limit: a whole number of at least 1.
pub fn parse_max_tokens(value: &[u8]) -> Result<u32, String> {
    text(value)
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("{MAX_TOKENS}={:?} is not a whole number of at least 1", String::from_utf8_lossy(value)))
}

/// Checks a value about to be stored under `name`; `Err` says what is
/// wrong with it. Names without a fixed form accept anything.
pub fn check(name: &[u8], value: &[u8]) -> Result<(), String> {
    match name {
        n if n == TEMPERATURE.as_bytes() => parse_temperature(value).map(|_| ()),
        n if n == MAX_TOKENS.as_bytes() => parse_max_tokens(value).map(|_| ()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_is_refused_and_sense_accepted() {
        for (n, v) in [
            (TEMPERATURE, "NaN"),
            (TEMPERATURE, "inf"),
            (TEMPERATURE, "-0.5"),
            (TEMPERATURE, "6"),
            (MAX_TOKENS, "-1"),
            (MAX_TOKENS, "0"),
            (MAX_TOKENS, "lots"),
            (MAX_TOKENS, "99999999999"),
        ] {
            assert!(check(n.as_bytes(), v.as_bytes()).is_err(), "{n}={v} accepted");
        }
        for (n, v) in [(TEMPERATURE, "0.7"), (MAX_TOKENS, "256"), ("user.x", "y")] {
            assert!(check(n.as_bytes(), v.as_bytes()).is_ok(), "{n}={v} refused");
        }
        assert!(check(TEMPERATURE.as_bytes(), &[0xff]).is_err());
    }
}
