//! The arguments of each tool, with their JSON schemas (`schemars`).
//! Unknown fields are refused, so a misspelt argument is an error rather
//! than silently ignored.

use schemars::JsonSchema;
use serde::Deserialize;

/// `list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Directory to list, from the volume's root (default `/`).
    #[serde(default)]
    pub path: Option<String>,
    /// Also return each entry's `user.*` extended attributes (prompts, provenance, …).
    #[serde(default)]
    pub metadata: bool,
}

/// How file content travels in JSON.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// UTF-8 text when the bytes are valid UTF-8, base64 otherwise (reads only).
    #[default]
    Auto,
    /// UTF-8 text.
    Text,
    /// Base64 (standard alphabet, with padding).
    Base64,
}

/// `read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// The file, from the volume's root.
    pub path: String,
    /// First byte to read (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Bytes to read (default: to the end; never more than the server's read cap).
    #[serde(default)]
    pub length: Option<u64>,
    /// `auto` (default), `text` or `base64`.
    #[serde(default)]
    pub encoding: Encoding,
}

/// What `write` does with an existing file.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Replace the content (default).
    #[default]
    Overwrite,
    /// Add to the end.
    Append,
    /// Fail if the file exists.
    CreateNew,
}

/// `write`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// The file, from the volume's root.
    pub path: String,
    /// The content.
    pub content: String,
    /// `text` (default; `auto` is the same) or `base64`.
    #[serde(default)]
    pub encoding: Encoding,
    /// `overwrite` (default), `append` or `create_new`.
    #[serde(default)]
    pub mode: Mode,
    /// Create missing directories above the file.
    #[serde(default)]
    pub parents: bool,
}

/// `mkdir`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MkdirArgs {
    /// The directory to create, from the volume's root.
    pub path: String,
    /// Create missing directories above it too (no error if it exists).
    #[serde(default)]
    pub parents: bool,
}

/// `move`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveArgs {
    /// What to move.
    pub from: String,
    /// Where to.
    pub to: String,
    /// Replace what is at `to` (default: fail if something is there).
    #[serde(default)]
    pub overwrite: bool,
}

/// `delete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// What to delete (a symlink is deleted itself, never its target).
    pub path: String,
    /// Delete a directory with everything in it.
    #[serde(default)]
    pub recursive: bool,
}

/// `stat`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatArgs {
    /// The entry, from the volume's root.
    pub path: String,
}

/// `search`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// What to look for, in plain words.
    pub query: String,
    /// How many files to return, best first (1-100, default 10).
    #[serde(default = "ten")]
    #[schemars(range(min = 1, max = 100))]
    pub k: usize,
}

fn ten() -> usize {
    10
}

/// `chat`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatArgs {
    /// The session: the file `sessions/<session>` (a plain name; created when new).
    pub session: String,
    /// What to say.
    pub message: String,
}

/// What `generate` makes.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GenerateKind {
    /// One file whose content the model writes now (default).
    #[default]
    File,
    /// A directory of files the model plans from the sentence; each is
    /// written on first read (or now with `fill`).
    Tree,
}

/// `generate`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateArgs {
    /// One sentence: what the file holds, or what the tree is about.
    pub prompt: String,
    /// The new file, or the directory of the tree (created when missing).
    pub path: String,
    /// `file` (default) or `tree`.
    #[serde(default)]
    pub kind: GenerateKind,
    /// For a tree: write every file now instead of on first read.
    #[serde(default)]
    pub fill: bool,
}

/// A byte-window operation.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComputeOp {
    /// Count the bytes equal to `imm`.
    Counteq,
    /// XOR of all bytes.
    Xor,
    /// Sum of all bytes.
    Add,
    /// FNV-1a 64-bit hash.
    Fnv,
    /// CRC-32C.
    Crc32c,
}

impl ComputeOp {
    /// The op's name.
    pub fn name(self) -> &'static str {
        match self {
            ComputeOp::Counteq => "counteq",
            ComputeOp::Xor => "xor",
            ComputeOp::Add => "add",
            ComputeOp::Fnv => "fnv",
            ComputeOp::Crc32c => "crc32c",
        }
    }
}

/// `compute`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputeArgs {
    /// The file, from the volume's root.
    pub path: String,
    /// The operation.
    pub op: ComputeOp,
    /// The byte value `counteq` counts (0-255).
    #[serde(default)]
    pub imm: Option<u8>,
    /// First byte (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Bytes (default: to the end of the file).
    #[serde(default)]
    pub length: Option<u64>,
    /// Window size in bytes: one result per window (default: one window; at most 4096 windows).
    #[serde(default)]
    pub window: Option<u64>,
}
