//! What volume operations answer with.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// A file, directory or other entry.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Entry {
    /// Path from the volume's root, starting with `/`.
    pub path: String,
    /// The last component (`/` for the root).
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits in octal, such as `0644`.
    pub mode: String,
    /// Last modification, RFC 3339 in UTC.
    pub mtime: String,
    /// Where a symlink points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `user.*` extended attributes (prompts, provenance, …), when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xattrs: Option<BTreeMap<String, String>>,
}

impl Entry {
    /// An entry at `path` (a volume path without the leading `/`).
    pub fn new(path: &str, kind: &'static str, size: u64, perm: u32, mtime: SystemTime) -> Entry {
        let name = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("/").to_string();
        Entry {
            path: format!("/{path}"),
            name,
            kind,
            size,
            mode: format!("{:04o}", perm & 0o7777),
            mtime: magicfs_gen::names::rfc3339(mtime),
            target: None,
            xattrs: None,
        }
    }
}

/// One search result.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Hit {
    /// Path from the volume's root (`/…`), or the absolute host path of a watched file.
    pub path: String,
    /// Cosine similarity of the best passage (−1 to 1).
    pub score: f32,
    /// The best passage.
    pub passage: String,
}

/// A file of a generated tree.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Planned {
    /// Path from the volume's root.
    pub path: String,
    /// What the file is to hold (its generation prompt).
    pub prompt: String,
    /// Size now (0 until it is generated).
    pub size: u64,
}

/// How [`crate::Backend::write`] treats an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Replace its content (create it when missing).
    Overwrite,
    /// Add at its end (create it when missing).
    Append,
    /// Fail if it exists.
    CreateNew,
}
