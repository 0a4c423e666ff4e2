//! [`VPath`]: a path inside a volume, checked before anything touches the
//! filesystem. A `..` component is refused outright (it is never resolved
//! against the host), `.` and empty components are dropped, and the result
//! is relative to the volume's root.

use crate::error::{VResult, VolumeError};

/// Longest path accepted, in bytes.
pub const MAX_PATH: usize = 4096;
/// Longest component accepted, in bytes.
pub const MAX_NAME: usize = 255;
/// The URI scheme of a volume's files.
pub const URI_SCHEME: &str = "magicfs://";

/// A normalised path relative to the volume's root (`""` is the root).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VPath(String);

impl VPath {
    /// The root of the volume.
    pub fn root() -> VPath {
        VPath(String::new())
    }

    /// Checks and normalises `text` (`/a/./b/` → `a/b`). A `magicfs://`
    /// prefix is accepted (`magicfs:///a/b` and `magicfs://a/b` are `a/b`).
    pub fn parse(text: &str) -> VResult<VPath> {
        let text = text.strip_prefix(URI_SCHEME).unwrap_or(text);
        if text.len() > MAX_PATH {
            return Err(VolumeError::BadArgument(format!("the path is longer than {MAX_PATH} bytes")));
        }
        if text.contains('\0') {
            return Err(VolumeError::BadArgument("the path contains a NUL byte".into()));
        }
        let mut parts: Vec<&str> = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(VolumeError::Escape(format!(
                        "{text}: '..' is not allowed; paths are relative to the volume's root and stay inside it"
                    )))
                }
                p if p.len() > MAX_NAME => {
                    return Err(VolumeError::BadArgument(format!("a path component is longer than {MAX_NAME} bytes")))
                }
                p => parts.push(p),
            }
        }
        Ok(VPath(parts.join("/")))
    }

    /// The path relative to the root, `""` for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as shown to users: `/a/b`, `/` for the root.
    pub fn display(&self) -> String {
        format!("/{}", self.0)
    }

    /// The `magicfs:///a/b` URI of this path.
    pub fn uri(&self) -> String {
        format!("{URI_SCHEME}/{}", self.0)
    }

    /// True for the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The components.
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|p| !p.is_empty())
    }

    /// The last component (`""` for the root).
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// The parent directory and the last component; `None` for the root.
    pub fn split(&self) -> Option<(VPath, &str)> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rsplit_once('/') {
            Some((dir, name)) => (VPath(dir.to_string()), name),
            None => (VPath::root(), self.0.as_str()),
        })
    }

    /// `self/name` (`name` must be one plain component).
    pub fn join(&self, name: &str) -> VResult<VPath> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
            return Err(VolumeError::BadArgument(format!("{name:?} is not a plain file name")));
        }
        Ok(VPath(if self.0.is_empty() { name.to_string() } else { format!("{}/{name}", self.0) }))
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &VPath) -> bool {
        other.0.is_empty() || self.0 == other.0 || self.0.starts_with(&format!("{}/", other.0))
    }
}

impl std::fmt::Display for VPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses_escapes() {
        assert_eq!(VPath::parse("/a/./b/").unwrap().as_str(), "a/b");
        assert_eq!(VPath::parse("").unwrap(), VPath::root());
        assert_eq!(VPath::parse("magicfs:///notes/x.md").unwrap().as_str(), "notes/x.md");
        assert_eq!(VPath::parse("magicfs://notes/x.md").unwrap().as_str(), "notes/x.md");
        assert!(matches!(VPath::parse("../etc/passwd"), Err(VolumeError::Escape(_))));
        assert!(matches!(VPath::parse("a/../../b"), Err(VolumeError::Escape(_))));
        assert!(matches!(VPath::parse("a\0b"), Err(VolumeError::BadArgument(_))));
        assert!(matches!(VPath::parse(&"x".repeat(300)), Err(VolumeError::BadArgument(_))));
        let p = VPath::parse("a/b/c").unwrap();
        assert_eq!(p.split().unwrap(), (VPath::parse("a/b").unwrap(), "c"));
        assert_eq!(p.uri(), "magicfs:///a/b/c");
        assert!(p.starts_with(&VPath::parse("a").unwrap()));
        assert!(!VPath::parse("ab").unwrap().starts_with(&VPath::parse("a").unwrap()));
        assert!(VPath::root().join("..").is_err());
    }
}
