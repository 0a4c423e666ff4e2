//! Store URLs: where a volume's chunk bytes live.

use crate::error::ObjectsError;
use std::fmt;
use std::path::PathBuf;

/// Where chunk bytes live: `s3://BUCKET[/PREFIX]`, `file:///DIR`, or
/// `memory://` (one process, for tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// An S3 bucket and a key prefix (no leading or trailing `/`; may be empty).
    S3 {
        /// The bucket name.
        bucket: String,
        /// Every object's key starts with this.
        prefix: String,
    },
    /// A local directory (absolute).
    File(PathBuf),
    /// Objects in this process's memory.
    Memory,
}

impl StoreUrl {
    /// Parses a store URL, explaining what is accepted when it is not.
    pub fn parse(s: &str) -> Result<StoreUrl, ObjectsError> {
        let bad = |why: &str| ObjectsError::BadUrl(format!("{s:?}: {why}; use s3://BUCKET/PREFIX or file:///DIR"));
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !valid_bucket(bucket) {
                return Err(bad("a bucket name is 3 to 63 lowercase letters, digits, '-' or '.'"));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
                return Err(bad("the prefix may not hold '.', '..' or empty parts"));
            }
            return Ok(StoreUrl::S3 { bucket: bucket.to_string(), prefix: prefix.to_string() });
        }
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("a file URL names an absolute directory (three slashes: file:///DIR)"));
            }
            return Ok(StoreUrl::File(PathBuf::from(path)));
        }
        if s == "memory://" {
            return Ok(StoreUrl::Memory);
        }
        Err(bad("unknown scheme"))
    }

    /// A short name of the service for log lines and errors.
    pub fn service(&self) -> String {
        match self {
            StoreUrl::S3 { bucket, .. } => {
                let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS".to_string());
                format!("S3 at {endpoint} (bucket {bucket})")
            }
            StoreUrl::File(d) => format!("object directory {}", d.display()),
            StoreUrl::Memory => "memory object store".to_string(),
        }
    }
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreUrl::File(d) => write!(f, "file://{}", d.display()),
            StoreUrl::Memory => write!(f, "memory://"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        for s in ["s3://bucket/a/b", "s3://my.bucket-1", "file:///tmp/x", "memory://"] {
            assert_eq!(StoreUrl::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            StoreUrl::parse("s3://bkt/pre/").unwrap(),
            StoreUrl::S3 { bucket: "bkt".into(), prefix: "pre".into() }
        );
    }

    #[test]
    fn refuses_with_a_hint() {
        for s in ["s3://B", "s3://ab", "file://rel/dir", "http://x", "s3://bkt/a/../b", ""] {
            let e = StoreUrl::parse(s).unwrap_err().to_string();
            assert!(e.contains("s3://BUCKET/PREFIX"), "{e}");
        }
    }
}
