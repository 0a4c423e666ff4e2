//! The instruction format: a JSON array of byte-window operations.
//!
//! ```json
//! [{"op":"counteq","imm":0,"offset":0,"length":1048576},
//!  {"op":"crc32c","offset":4096,"length":100}]
//! ```
//!
//! Each instruction names an [`Op`], the window it reads (`offset` and
//! `length` in bytes, `offset + length` at most the size of the data) and, for
//! `counteq`, the byte value `imm` (0-255). `imm` given to another op is
//! ignored. A window of length 0 is valid and yields the op's value for no
//! bytes. Fields other than these four are refused, so a misspelt field is an
//! error rather than silently ignored.

use crate::error::{ComputeError, ComputeResult};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Most instructions one program may hold.
pub const MAX_INSTRUCTIONS: usize = 4096;

/// An operation over one byte window. The exact definitions are in [`crate::ops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Number of bytes equal to `imm`.
    Counteq,
    /// XOR of all bytes (one byte).
    Xor,
    /// Sum of all bytes modulo 2^64.
    Add,
    /// FNV-1a 64-bit hash.
    Fnv,
    /// CRC-32C (Castagnoli).
    Crc32c,
}

impl Op {
    /// Every op, in the order the documentation lists them.
    pub const ALL: [Op; 5] = [Op::Counteq, Op::Xor, Op::Add, Op::Fnv, Op::Crc32c];

    /// The op's name in the instruction format and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Op::Counteq => "counteq",
            Op::Xor => "xor",
            Op::Add => "add",
            Op::Fnv => "fnv",
            Op::Crc32c => "crc32c",
        }
    }

    /// True when the op reads `imm`.
    pub fn needs_imm(self) -> bool {
        self == Op::Counteq
    }

    /// The op's value for an empty window.
    pub fn identity(self) -> u64 {
        match self {
            Op::Fnv => crate::ops::FNV_OFFSET,
            Op::Counteq | Op::Xor | Op::Add | Op::Crc32c => 0,
        }
    }

    /// The names of all ops, comma-separated, for messages.
    pub(crate) fn names() -> String {
        Op::ALL.map(Op::name).join(", ")
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = ComputeError;

    fn from_str(s: &str) -> ComputeResult<Op> {
        Op::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| ComputeError::UnknownOp { index: None, op: s.into() })
    }
}

/// One operation over one window of the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instruction {
    /// What to compute.
    pub op: Op,
    /// The byte value for `counteq`; ignored by the other ops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imm: Option<u8>,
    /// First byte of the window.
    pub offset: u64,
    /// Length of the window in bytes (0 is allowed).
    pub length: u64,
}

impl Instruction {
    /// An instruction over `length` bytes from `offset`.
    pub fn new(op: Op, imm: Option<u8>, offset: u64, length: u64) -> Instruction {
        Instruction { op, imm, offset, length }
    }

    /// One past the last byte of the window, or `None` if that overflows a `u64`.
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.length)
    }
}

/// Reads a program from JSON text and checks each instruction's form (op name,
/// fields, `imm` where needed, at most [`MAX_INSTRUCTIONS`]). Windows are
/// checked against the data by [`validate`].
pub fn parse(json: &str) -> ComputeResult<Vec<Instruction>> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| ComputeError::Json(e.to_string()))?;
    let serde_json::Value::Array(items) = value else {
        return Err(ComputeError::NotAnArray);
    };
    if items.len() > MAX_INSTRUCTIONS {
        return Err(ComputeError::TooMany { count: items.len() });
    }
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        if let Some(name) = item.get("op").and_then(serde_json::Value::as_str) {
            if name.parse::<Op>().is_err() {
                return Err(ComputeError::UnknownOp { index: Some(index), op: name.into() });
            }
        }
        let ins: Instruction =
            serde_json::from_value(item).map_err(|e| ComputeError::BadInstruction { index, reason: e.to_string() })?;
        check_imm(index, &ins)?;
        out.push(ins);
    }
    Ok(out)
}

/// Checks a program against data of `size` bytes: at most
/// [`MAX_INSTRUCTIONS`] instructions, `imm` present where the op needs it, and
/// every window inside the data.
pub fn validate(instrs: &[Instruction], size: u64) -> ComputeResult<()> {
    if instrs.len() > MAX_INSTRUCTIONS {
        return Err(ComputeError::TooMany { count: instrs.len() });
    }
    for (index, ins) in instrs.iter().enumerate() {
        check_imm(index, ins)?;
        if ins.end().is_none_or(|end| end > size) {
            return Err(ComputeError::OutOfBounds { index, offset: ins.offset, length: ins.length, size });
        }
    }
    Ok(())
}

fn check_imm(index: usize, ins: &Instruction) -> ComputeResult<()> {
    if ins.op.needs_imm() && ins.imm.is_none() {
        return Err(ComputeError::MissingImm { index, op: ins.op });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let p = parse(
            r#"[{"op":"counteq","imm":0,"offset":0,"length":1048576}, {"op":"crc32c","offset":4096,"length":100}]"#,
        )
        .unwrap();
        assert_eq!(
            p,
            vec![Instruction::new(Op::Counteq, Some(0), 0, 1 << 20), Instruction::new(Op::Crc32c, None, 4096, 100)]
        );
        assert_eq!(parse("[]").unwrap(), vec![]);
    }

    #[test]
    fn round_trips_through_json() {
        let p = vec![Instruction::new(Op::Counteq, Some(7), 1, 2), Instruction::new(Op::Fnv, None, 3, 4)];
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(text, r#"[{"op":"counteq","imm":7,"offset":1,"length":2},{"op":"fnv","offset":3,"length":4}]"#);
        assert_eq!(parse(&text).unwrap(), p);
    }

    #[test]
    fn op_names() {
        for op in Op::ALL {
            assert_eq!(op.name().parse::<Op>().unwrap(), op);
            assert_eq!(serde_json::to_string(&op).unwrap(), format!("\"{op}\""));
        }
        assert!(matches!("CRC32C".parse::<Op>(), Err(ComputeError::UnknownOp { index: None, .. })));
    }

    #[test]
    fn imm_is_ignored_by_other_ops_and_required_by_counteq() {
        let p = parse(r#"[{"op":"xor","imm":5,"offset":0,"length":1}]"#).unwrap();
        assert_eq!(p[0].imm, Some(5));
        let e = parse(r#"[{"op":"xor","offset":0,"length":1},{"op":"counteq","offset":0,"length":1}]"#).unwrap_err();
        assert_eq!(e, ComputeError::MissingImm { index: 1, op: Op::Counteq });
        assert!(e.to_string().contains("instruction 1") && e.to_string().contains("imm"), "{e}");
    }

    #[test]
    fn malformed_programs_are_refused_with_the_reason() {
        let e = parse(r#"[{"op":"xor","offset":0,"length":1}"#).unwrap_err();
        assert!(matches!(e, ComputeError::Json(_)), "{e:?}");
        assert!(e.to_string().contains("not valid JSON"), "{e}");

        assert_eq!(parse(r#"{"op":"xor","offset":0,"length":1}"#).unwrap_err(), ComputeError::NotAnArray);

        let e = parse(r#"[{"op":"xor","offset":0,"length":1},{"op":"sha1","offset":0,"length":1}]"#).unwrap_err();
        assert_eq!(e, ComputeError::UnknownOp { index: Some(1), op: "sha1".into() });
        assert!(e.to_string().contains("unknown op \"sha1\"") && e.to_string().contains("crc32c"), "{e}");

        for (text, needle) in [
            (r#"[{"op":"xor","offset":0}]"#, "length"),
            (r#"[{"op":"xor","offset":-1,"length":1}]"#, "-1"),
            (r#"[{"op":"counteq","imm":256,"offset":0,"length":1}]"#, "256"),
            (r#"[{"op":"xor","offset":0,"lenght":1}]"#, "lenght"),
            (r#"[{"op":7,"offset":0,"length":1}]"#, "op"),
            (r#"[17]"#, "instruction 0"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(matches!(e, ComputeError::BadInstruction { index: 0, .. }), "{text}: {e:?}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn at_most_max_instructions() {
        let one = r#"{"op":"add","offset":0,"length":0}"#;
        let program = |n: usize| format!("[{}]", vec![one; n].join(","));
        assert_eq!(parse(&program(MAX_INSTRUCTIONS)).unwrap().len(), MAX_INSTRUCTIONS);
        let e = parse(&program(MAX_INSTRUCTIONS + 1)).unwrap_err();
        assert_eq!(e, ComputeError::TooMany { count: 4097 });
        assert!(e.to_string().contains("4097") && e.to_string().contains("4096"), "{e}");
        let too_many = vec![Instruction::new(Op::Add, None, 0, 0); MAX_INSTRUCTIONS + 1];
        assert_eq!(validate(&too_many, 0), Err(ComputeError::TooMany { count: 4097 }));
    }

    #[test]
    fn windows_must_lie_inside_the_data() {
        let ok = [
            Instruction::new(Op::Xor, None, 0, 100),
            Instruction::new(Op::Xor, None, 100, 0),
            Instruction::new(Op::Xor, None, 99, 1),
        ];
        validate(&ok, 100).unwrap();
        let past = [Instruction::new(Op::Xor, None, 0, 1), Instruction::new(Op::Crc32c, None, 90, 11)];
        let e = validate(&past, 100).unwrap_err();
        assert_eq!(e, ComputeError::OutOfBounds { index: 1, offset: 90, length: 11, size: 100 });
        let msg = e.to_string();
        assert!(
            msg.contains("instruction 1") && msg.contains("90") && msg.contains("11") && msg.contains("100"),
            "{msg}"
        );
        assert!(validate(&[Instruction::new(Op::Xor, None, 101, 0)], 100).is_err());
        assert!(validate(&[Instruction::new(Op::Xor, None, u64::MAX, 2)], 100).is_err());
    }
}
