//! Running a program over a byte slice, in parallel.
//!
//! Windows run concurrently (rayon). A large window is itself cut into parts
//! that run concurrently: for `counteq`, `add` and `xor`, pieces of [`PIECE`]
//! bytes whose counts and sums are added and XORs folded. A CRC-32C window is
//! cut into at most one part per thread, each at least [`CRC_PIECE`] bytes,
//! and the parts' CRCs are joined in order with `crc32c_combine` (joining two
//! CRCs costs about as much as computing the CRC of a few megabytes, hence the
//! large parts). FNV-1a cannot be split, so each FNV window runs on one thread
//! and only different windows run side by side.

use crate::error::ComputeResult;
use crate::instr::{validate, Instruction, Op};
use crate::ops;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Size of the pieces a large `counteq`, `add` or `xor` window is cut into.
pub const PIECE: usize = 256 << 10;

/// Smallest part a CRC-32C window is cut into.
pub const CRC_PIECE: usize = 16 << 20;

/// Below this many bytes in all, a program runs on the calling thread.
const PARALLEL_MIN: u64 = 1 << 20;

/// The result of one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The op that ran.
    pub op: Op,
    /// First byte of the window.
    pub offset: u64,
    /// Length of the window.
    pub length: u64,
    /// The op's value: a count, the XOR byte, the sum, the FNV-1a hash or the
    /// CRC-32C, as an unsigned integer.
    pub value: u64,
}

/// Runs `instrs` over `data` and returns one [`Output`] per instruction, in
/// the same order. The program is checked first ([`validate`]): nothing runs
/// if any instruction is malformed or reads past the end of `data`.
pub fn execute(data: &[u8], instrs: &[Instruction]) -> ComputeResult<Vec<Output>> {
    validate(instrs, data.len() as u64)?;
    let total = instrs.iter().fold(0u64, |t, i| t.saturating_add(i.length));
    let output = |ins: &Instruction, value: u64| Output { op: ins.op, offset: ins.offset, length: ins.length, value };
    if total < PARALLEL_MIN {
        return Ok(instrs.iter().map(|ins| output(ins, eval_serial(window(data, ins), ins))).collect());
    }
    Ok(instrs.par_iter().map(|ins| output(ins, eval_parallel(window(data, ins), ins))).collect())
}

/// Tiles `length` bytes from `offset` into windows of `window` bytes for one
/// op (the last window may be shorter). A `window` of 0, or one at least as
/// long as the range, gives a single window; an empty range gives one empty
/// window. The result holds `length / window` instructions, and [`execute`]
/// takes at most [`MAX_INSTRUCTIONS`](crate::MAX_INSTRUCTIONS) at a time, so
/// tile a long range batch by batch.
pub fn windows(op: Op, imm: Option<u8>, offset: u64, length: u64, window: u64) -> Vec<Instruction> {
    if window == 0 || window >= length {
        return vec![Instruction::new(op, imm, offset, length)];
    }
    let count = length.div_ceil(window);
    (0..count)
        .map(|k| {
            let start = k * window;
            Instruction::new(op, imm, offset.saturating_add(start), window.min(length - start))
        })
        .collect()
}

/// The bytes an instruction reads (already validated against `data`).
fn window<'a>(data: &'a [u8], ins: &Instruction) -> &'a [u8] {
    let start = ins.offset as usize;
    &data[start..start + ins.length as usize]
}

fn eval_serial(w: &[u8], ins: &Instruction) -> u64 {
    match ins.op {
        Op::Counteq => ops::counteq(w, ins.imm.unwrap_or(0)),
        Op::Xor => u64::from(ops::xor(w)),
        Op::Add => ops::add(w),
        Op::Fnv => ops::fnv(w),
        Op::Crc32c => u64::from(ops::crc32c(w)),
    }
}

fn eval_parallel(w: &[u8], ins: &Instruction) -> u64 {
    if w.len() <= PIECE || ins.op == Op::Fnv {
        return eval_serial(w, ins);
    }
    let pieces = w.par_chunks(PIECE);
    match ins.op {
        Op::Counteq => {
            let imm = ins.imm.unwrap_or(0);
            pieces.map(|p| ops::counteq(p, imm)).sum()
        }
        Op::Xor => u64::from(pieces.map(ops::xor).reduce(|| 0, |a, b| a ^ b)),
        Op::Add => pieces.map(ops::add).reduce(|| 0, u64::wrapping_add),
        Op::Crc32c => {
            let parts = (w.len() / CRC_PIECE).min(rayon::current_num_threads());
            u64::from(if parts < 2 { ops::crc32c(w) } else { crc32c_parts(w, parts) })
        }
        Op::Fnv => ops::fnv(w),
    }
}

/// CRC-32C of `w` computed in `parts` parts side by side, joined in order.
fn crc32c_parts(w: &[u8], parts: usize) -> u32 {
    let part = w.len().div_ceil(parts.max(1)).max(1);
    let join = |(a, len_a): (u32, usize), (b, len_b): (u32, usize)| match (len_a, len_b) {
        (0, _) => (b, len_b),
        (_, 0) => (a, len_a),
        _ => (ops::crc32c_combine(a, b, len_b), len_a + len_b),
    };
    w.par_chunks(part).map(|p| (ops::crc32c(p), p.len())).reduce(|| (0, 0), join).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ComputeError;
    use crate::ops::reference;
    use crate::testdata::{random_bytes, XorShift};

    fn expected(data: &[u8], ins: &Instruction) -> u64 {
        let w = &data[ins.offset as usize..(ins.offset + ins.length) as usize];
        match ins.op {
            Op::Counteq => reference::counteq(w, ins.imm.unwrap()),
            Op::Xor => u64::from(reference::xor(w)),
            Op::Add => reference::add(w),
            Op::Fnv => reference::fnv(w),
            Op::Crc32c => u64::from(reference::crc32c(w)),
        }
    }

    fn check(data: &[u8], program: &[Instruction]) {
        let out = execute(data, program).unwrap();
        assert_eq!(out.len(), program.len());
        for (ins, o) in program.iter().zip(&out) {
            assert_eq!((o.op, o.offset, o.length), (ins.op, ins.offset, ins.length));
            assert_eq!(o.value, expected(data, ins), "{ins:?}");
        }
    }

    #[test]
    fn every_op_equals_the_reference_on_random_windows() {
        let data = random_bytes(3 << 20, 11);
        let n = data.len() as u64;
        let mut rng = XorShift::new(5);
        for op in Op::ALL {
            let imm = Some(rng.next() as u8 % 4);
            let mut program = vec![
                Instruction::new(op, imm, 0, n),
                Instruction::new(op, imm, 0, 0),
                Instruction::new(op, imm, n, 0),
                Instruction::new(op, imm, n - 1, 1),
                Instruction::new(op, imm, 12345, 1),
                Instruction::new(op, imm, 1, n - 1),
                Instruction::new(op, imm, 3, n - 8),
            ];
            for _ in 0..40 {
                let length = match rng.below(3) {
                    0 => rng.below(100),
                    1 => rng.below(3 * PIECE as u64),
                    _ => rng.below(n + 1),
                };
                program.push(Instruction::new(op, imm, rng.below(n - length + 1), length));
            }
            check(&data, &program);
            // The same windows one at a time: small programs take the serial path.
            for ins in program.iter().filter(|i| i.length < PARALLEL_MIN) {
                check(&data, std::slice::from_ref(ins));
            }
        }
    }

    #[test]
    fn crc32c_parts_join_in_order() {
        let data = random_bytes((3 << 20) + 17, 8);
        for (start, end) in [(0, data.len()), (5, data.len() - 3), (100, 100), (7, 8), (1, 1 << 20)] {
            let w = &data[start..end];
            for parts in [0, 1, 2, 3, 7, 64] {
                assert_eq!(crc32c_parts(w, parts), reference::crc32c(w), "{start}..{end} in {parts}");
            }
        }
    }

    #[test]
    fn mixed_program_keeps_its_order() {
        let data = random_bytes(100_000, 2);
        let program: Vec<_> = (0..200u64)
            .map(|k| Instruction::new(Op::ALL[(k % 5) as usize], Some(k as u8), k * 397 % 90_000, k * 31 % 9_000))
            .collect();
        check(&data, &program);
    }

    #[test]
    fn parallel_64_mib_equals_the_serial_reference() {
        let data = random_bytes(64 << 20, 64);
        let n = data.len() as u64;
        let mut program: Vec<_> = Op::ALL.iter().map(|&op| Instruction::new(op, Some(0), 0, n)).collect();
        program.push(Instruction::new(Op::Crc32c, None, 7, n - 7 - 1_000_003));
        program.extend(windows(Op::Fnv, None, 5, n - 5, 1 << 20));
        program.extend(windows(Op::Counteq, Some(0), 0, n, 3 << 20));
        check(&data, &program);
    }

    #[test]
    fn past_the_end_runs_nothing() {
        let data = random_bytes(1000, 1);
        let program = [Instruction::new(Op::Add, None, 0, 1000), Instruction::new(Op::Fnv, None, 999, 2)];
        let e = execute(&data, &program).unwrap_err();
        assert_eq!(e, ComputeError::OutOfBounds { index: 1, offset: 999, length: 2, size: 1000 });
        assert!(e.to_string().contains("past the end"), "{e}");
        assert!(execute(&[], &[Instruction::new(Op::Xor, None, 0, 1)]).is_err());
    }

    #[test]
    fn empty_windows_give_identities() {
        let out = execute(&[], &Op::ALL.map(|op| Instruction::new(op, Some(0), 0, 0))).unwrap();
        assert_eq!(out.iter().map(|o| o.value).collect::<Vec<_>>(), Op::ALL.map(Op::identity).to_vec());
        assert_eq!(Op::Fnv.identity(), reference::fnv(&[]));
        assert_eq!(Op::Crc32c.identity(), u64::from(reference::crc32c(&[])));
    }

    #[test]
    fn windows_tile_the_range() {
        let w = windows(Op::Xor, None, 10, 25, 10);
        assert_eq!(w.iter().map(|i| (i.offset, i.length)).collect::<Vec<_>>(), vec![(10, 10), (20, 10), (30, 5)]);
        assert_eq!(windows(Op::Xor, None, 10, 30, 10).len(), 3);
        assert_eq!(windows(Op::Xor, None, 10, 25, 0), vec![Instruction::new(Op::Xor, None, 10, 25)]);
        assert_eq!(windows(Op::Xor, None, 10, 25, 100), vec![Instruction::new(Op::Xor, None, 10, 25)]);
        assert_eq!(windows(Op::Xor, None, 10, 0, 4), vec![Instruction::new(Op::Xor, None, 10, 0)]);
    }

    #[test]
    fn output_serialises_value_as_a_number() {
        let o = Output { op: Op::Crc32c, offset: 1, length: 2, value: 0xE306_9283 };
        assert_eq!(serde_json::to_string(&o).unwrap(), r#"{"op":"crc32c","offset":1,"length":2,"value":3808858755}"#);
    }
}
