//! The extended attributes of generated content.

/// What the file should contain (on a file), or what the project below is
/// about (on a directory; inherited by every empty file below).
pub const PROMPT: &[u8] = b"user.magic.prompt";
/// Which generator writes the file (on a file), or the files below (on a
/// directory; `readme` on a directory asks for a `README.magic` overlay).
pub const GENERATOR: &[u8] = b"user.magic.generator";
/// Command: setting it (any value) regenerates the file; never stored.
pub const REGENERATE: &[u8] = b"user.magic.regenerate";
/// Command: setting it on a directory asks the model for a tree of files
/// described by the value; never stored (the value becomes the prompt).
pub const GENERATE_TREE: &[u8] = b"user.magic.generate";
/// On a generated directory: the model's JSON answer the tree was built from.
pub const TREE: &[u8] = b"user.magic.tree";
/// Provenance: the generator that wrote the content.
pub const PROV_GENERATOR: &[u8] = b"user.magic.provenance.generator";
/// Provenance: the model or program behind the generator.
pub const PROV_MODEL: &[u8] = b"user.magic.provenance.model";
/// Provenance: BLAKE3 of the generator name, the context prompts and the prompt.
pub const PROV_PROMPT_HASH: &[u8] = b"user.magic.provenance.prompt_hash";
/// Provenance: when the content was stored (RFC 3339, UTC).
pub const PROV_TIME: &[u8] = b"user.magic.provenance.time";
/// Provenance: `stop`, `length` when the model hit its token limit, `loop`
/// when the answer began to repeat and was cut.
pub const PROV_FINISH: &[u8] = b"user.magic.provenance.finish";
/// Provenance: which attempt gave the stored content (1 when the first answer was valid).
pub const PROV_ATTEMPT: &[u8] = b"user.magic.provenance.attempt";
/// Why the last generation of the file (or tree of the directory) failed;
/// removed when one succeeds.
pub const ERROR: &[u8] = b"user.magic.error";
/// Name of the overlay file of a directory with `user.magic.generator=readme`.
pub const README_OVERLAY: &[u8] = b"README.magic";

/// True for attributes whose change may alter which files are generated.
pub fn affects_rules(name: &[u8]) -> bool {
    name == PROMPT || name == GENERATOR || name == GENERATE_TREE
}

/// `SystemTime` as RFC 3339 in UTC, to the second.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The prompt hash recorded in provenance.
pub fn prompt_hash(generator: &str, context: &[String], prompt: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(generator.as_bytes());
    for c in context {
        h.update(b"\0");
        h.update(c.as_bytes());
    }
    h.update(b"\0\0");
    h.update(prompt.as_bytes());
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_000_000)), "2026-11-18T11:06:40Z");
    }
}
