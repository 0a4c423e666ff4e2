//! What a generator is told about the file it writes: the JSON document an
//! `exec` plugin reads on standard input, and what the `llm` generator turns
//! into a prompt.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the request document.
pub const REQUEST_VERSION: u32 = 1;

/// One entry of the directory structure around the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Path relative to [`GenRequest::tree_root`], `/`-separated.
    pub path: String,
    /// True for directories.
    pub dir: bool,
    /// Size in bytes (0 for directories).
    pub size: u64,
}

/// A file next to the one being generated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    /// Entry name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Its text, when it is small UTF-8 and fits the context budget.
    pub content: Option<String>,
}

/// Everything a generator gets for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenRequest {
    /// [`REQUEST_VERSION`].
    pub version: u32,
    /// The generator chosen for the file.
    pub generator: String,
    /// Path of the file from the mount's root (`/proj/main.py`).
    pub path: String,
    /// File name.
    pub name: String,
    /// The file's own prompt (`user.magic.prompt`), or the nearest
    /// directory's when the file has none; may be empty.
    pub prompt: String,
    /// Prompts of the directories above the file, outermost first: what the
    /// project is about.
    pub context: Vec<String>,
    /// Path of the directory the structure below is relative to.
    pub tree_root: String,
    /// The directory structure under `tree_root` (bounded).
    pub tree: Vec<TreeEntry>,
    /// Other entries of the file's directory, with small texts.
    pub siblings: Vec<Sibling>,
    /// The file's format, from its extension or its prompt (`json`, `yaml`,
    /// `toml`, `csv`, `py`, `sh`, `rs`, `js`, `md`, `txt`, `other`); the
    /// content is checked against it.
    #[serde(default)]
    pub format: String,
    /// Which attempt this is: 1, then 2, 3, … when an answer was invalid
    /// (empty, not parsing, the wrong shape) and is asked for again.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// Sampling settings from `user.magic.<key>` xattrs of the file or the
    /// directories above it (`temperature`, `top_p`, `repeat_penalty`, …).
    #[serde(default)]
    pub sampling: BTreeMap<String, String>,
}

fn first_attempt() -> u32 {
    1
}

impl GenRequest {
    /// The file's path relative to [`GenRequest::tree_root`].
    pub fn relative_path(&self) -> &str {
        let root = self.tree_root.trim_end_matches('/');
        self.path.strip_prefix(root).map(|p| p.trim_start_matches('/')).filter(|p| !p.is_empty()).unwrap_or(&self.name)
    }
}
