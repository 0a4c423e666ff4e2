//! Exit statuses of `magicfs`, the same for every subcommand, listed in
//! `magicfs --help` (and so the man page) and the README's "Exit status".

/// Success.
pub const OK: i32 = 0;
/// A runtime error: the store, a mount, a file, the network or a model failed.
pub const FAILURE: i32 = 1;
/// A usage error: an unknown flag, a bad value, `-o` option or configuration
/// file (clap's own status for the errors it finds).
pub const USAGE: i32 = 2;
/// `magicfs search` found nothing.
pub const NO_MATCH: i32 = 3;
/// `magicfs fsck` found problems in the store (as fsck(8)'s "errors left
/// uncorrected").
pub const PROBLEMS: i32 = 4;

/// An error in how the command was asked for, not in doing it: exits
/// [`USAGE`].
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A usage error with `msg`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

/// Returns early with a usage error, like `anyhow::bail!`.
macro_rules! usage_bail {
    ($($t:tt)*) => {
        return Err($crate::exit::usage(format!($($t)*)))
    };
}
pub(crate) use usage_bail;

/// The exit status for an error that ended a command.
pub fn code_of(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| c.is::<Usage>()) {
        USAGE
    } else {
        FAILURE
    }
}
