//! MagicFS near-data compute: operations over byte windows of a file's data,
//! run where the data is instead of copying it out.
//!
//! A program is a list of [`Instruction`]s, each an [`Op`] over one window
//! (`offset`, `length`) of a byte slice; [`instr::parse`] reads one from JSON
//! (the format is described in [`instr`]). [`execute`] checks the program
//! against the data and runs it on all cores: windows run side by side, and
//! large windows are split into pieces whose partial results are joined
//! exactly (see [`run`]). The ops and their exact definitions are in [`ops`]:
//!
//! | op | value |
//! |---|---|
//! | `counteq` | number of bytes equal to `imm` |
//! | `xor` | XOR of all bytes (one byte) |
//! | `add` | sum of all bytes modulo 2^64 |
//! | `fnv` | FNV-1a 64-bit hash |
//! | `crc32c` | CRC-32C (Castagnoli) |
//!
//! ```
//! use magicfs_compute::{execute, instr, Op};
//!
//! let data = b"hello, near-data world";
//! let program = instr::parse(r#"[{"op":"counteq","imm":108,"offset":0,"length":22},
//!                               {"op":"crc32c","offset":7,"length":15}]"#)?;
//! let out = execute(data, &program)?;
//! assert_eq!((out[0].op, out[0].value), (Op::Counteq, 3)); // three b'l'
//! assert_eq!(out[1].value, u64::from(magicfs_compute::ops::crc32c(b"near-data world")));
//! # Ok::<(), magicfs_compute::ComputeError>(())
//! ```
#![warn(missing_docs)]

mod error;
pub mod instr;
pub mod ops;
pub mod run;
pub mod size;
#[cfg(test)]
mod testdata;

pub use error::{ComputeError, ComputeResult};
pub use instr::{parse, validate, Instruction, Op, MAX_INSTRUCTIONS};
pub use run::{execute, windows, Output};
pub use size::parse_size;
