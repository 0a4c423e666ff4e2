//! `GenError`, the generation layer's one error type.

use magicfs_types::FsError;

/// Why content could not be generated.
#[derive(Debug, Clone, PartialEq)]
pub enum GenError {
    /// `user.magic.generator` names a generator nobody registered.
    UnknownGenerator(String),
    /// The generator ran longer than its time limit and was stopped.
    Timeout {
        /// Generator name.
        generator: String,
        /// The limit, in seconds.
        secs: f64,
    },
    /// An external plugin failed: non-zero exit, unusable output, cannot start.
    Plugin(String),
    /// The language model failed or is not configured.
    Model(String),
    /// The model's directory structure could not be used.
    Tree(String),
    /// Every attempt gave content that is not valid for the file's type
    /// (empty, not parsing, not the shape the prompt asks for).
    Invalid {
        /// Attempts made.
        attempts: u32,
        /// What was wrong with the last one.
        reason: String,
    },
    /// The file changed while its content was generated; the result was dropped.
    Changed,
    /// Generation was cancelled (unmount).
    Cancelled,
    /// Neither the file nor a directory above it names a prompt or a generator.
    NoRule(String),
    /// The filesystem refused an operation.
    Fs(FsError),
}

impl std::fmt::Display for GenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GenError::UnknownGenerator(g) => {
                write!(f, "unknown generator '{g}' (built in: llm, readme, none; plugins come from `mount --plugin NAME=PROGRAM`)")
            }
            GenError::Timeout { generator, secs } => write!(f, "generator '{generator}' timed out after {secs:.1} s"),
            GenError::Plugin(m) => write!(f, "plugin: {m}"),
            GenError::Model(m) => write!(f, "model: {m}"),
            GenError::Tree(m) => write!(f, "tree: {m}"),
            GenError::Invalid { attempts, reason } => {
                write!(f, "no valid content after {attempts} attempts; the last one: {reason}")
            }
            GenError::Changed => write!(f, "the file changed while its content was generated; the result was dropped"),
            GenError::Cancelled => write!(f, "generation cancelled"),
            GenError::NoRule(p) => write!(
                f,
                "{p} has no prompt or generator (own or inherited); set one with `setfattr -n user.magic.prompt -v TEXT {p}`"
            ),
            GenError::Fs(e) => write!(f, "filesystem: {e:?}"),
        }
    }
}

impl std::error::Error for GenError {}

impl From<FsError> for GenError {
    fn from(e: FsError) -> Self {
        GenError::Fs(e)
    }
}

impl GenError {
    /// The errno a reader waiting on this generation receives.
    pub fn errno(&self) -> i32 {
        match self {
            GenError::Fs(e) => e.errno(),
            GenError::NoRule(_) => libc::ENODATA,
            _ => libc::EIO,
        }
    }
}
