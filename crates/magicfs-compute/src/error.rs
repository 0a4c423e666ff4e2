//! The compute-layer error.

use crate::instr::{Op, MAX_INSTRUCTIONS};
use std::fmt;

/// What an instruction looks like, for messages.
const EXAMPLE: &str =
    r#"[{"op":"counteq","imm":0,"offset":0,"length":4096}, {"op":"crc32c","offset":4096,"length":100}]"#;

/// Why a compute program could not be read or run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComputeError {
    /// The instruction text is not JSON.
    Json(String),
    /// The JSON is not an array.
    NotAnArray,
    /// An op name that does not exist.
    UnknownOp {
        /// Position of the instruction in the program, when there is one.
        index: Option<usize>,
        /// The name given.
        op: String,
    },
    /// An instruction that is not an object with the expected fields.
    BadInstruction {
        /// Position of the instruction in the program.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An op that needs `imm` has none.
    MissingImm {
        /// Position of the instruction in the program.
        index: usize,
        /// The op.
        op: Op,
    },
    /// A window reaches past the end of the data.
    OutOfBounds {
        /// Position of the instruction in the program.
        index: usize,
        /// First byte of the window.
        offset: u64,
        /// Length of the window.
        length: u64,
        /// Size of the data in bytes.
        size: u64,
    },
    /// More than [`MAX_INSTRUCTIONS`] instructions in one program.
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// A size such as `64KiB` that could not be read.
    BadSize {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ComputeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComputeError::Json(m) => {
                write!(f, "the instructions are not valid JSON ({m}); write a JSON array such as {EXAMPLE}")
            }
            ComputeError::NotAnArray => {
                write!(f, "the instructions must be a JSON array of instruction objects, such as {EXAMPLE}")
            }
            ComputeError::UnknownOp { index, op } => {
                if let Some(i) = index {
                    write!(f, "instruction {i}: ")?;
                }
                write!(f, "unknown op {op:?}; use one of {}", Op::names())
            }
            ComputeError::BadInstruction { index, reason } => write!(
                f,
                "instruction {index}: {reason}; each instruction is an object with \"op\" ({}), \"offset\" and \"length\" in bytes, and \"imm\" (0-255) for counteq",
                Op::names()
            ),
            ComputeError::MissingImm { index, op } => {
                write!(f, "instruction {index}: op {op} needs \"imm\", the byte value to count (0-255)")
            }
            ComputeError::OutOfBounds { index, offset, length, size } => write!(
                f,
                "instruction {index}: the window at offset {offset} with length {length} reaches past the end of the data ({size} bytes); keep offset + length <= {size}"
            ),
            ComputeError::TooMany { count } => write!(
                f,
                "{count} instructions in one program, at most {MAX_INSTRUCTIONS} are allowed; split the program or use larger windows"
            ),
            ComputeError::BadSize { text, reason } => write!(
                f,
                "cannot read the size {text:?}: {reason}; write a number of bytes with an optional suffix, such as 4096, 64KiB, 1MiB or 2GiB"
            ),
        }
    }
}

impl std::error::Error for ComputeError {}

/// Result alias of the compute layer.
pub type ComputeResult<T> = Result<T, ComputeError>;
