//! The range planner: which byte ranges of a remote object a program needs,
//! and in which requests to fetch them.
//!
//! Each non-empty window is widened to whole blocks of [`BLOCK`] bytes (1 MiB,
//! aligned to multiples of 1 MiB; the last block ends at the object's end).
//! Windows whose blocks touch or overlap are coalesced into one *batch*, a
//! contiguous range held in memory while its windows run; a batch is closed
//! once it holds [`PlanOptions::max_batch`] bytes and the next window does not
//! reach back into it, so memory stays bounded for long tiled jobs. Each batch
//! is fetched in requests of at most [`PlanOptions::max_request`] bytes.
//! Blocks no window touches are never fetched, so a program that covers part
//! of an object never fetches all of it (unless its windows are within 1 MiB
//! of each other everywhere).

use magicfs_compute::Instruction;

/// Alignment and granularity of fetched ranges: 1 MiB.
pub const BLOCK: u64 = 1 << 20;

/// Sizes the planner works with.
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// Block size ranges are aligned to and widened to.
    pub block: u64,
    /// Largest single range request.
    pub max_request: u64,
    /// Size at which a batch is closed (when no window crosses the cut).
    pub max_batch: u64,
}

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions { block: BLOCK, max_request: 8 * BLOCK, max_batch: 32 * BLOCK }
    }
}

/// A contiguous range fetched and held while its windows run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// First byte (a multiple of the block size).
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Indices of the program's windows inside this batch.
    pub windows: Vec<usize>,
    /// The range requests (`start..end`) that tile the batch, in order.
    pub requests: Vec<(u64, u64)>,
}

impl Batch {
    /// Bytes the batch holds.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True for a batch of no bytes (never planned).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Plans the fetches for `program` over an object of `size` bytes. The
/// program must already be validated against `size`; empty windows need no
/// bytes and appear in no batch.
pub fn plan(program: &[Instruction], size: u64, opts: PlanOptions) -> Vec<Batch> {
    let block = opts.block.max(1);
    let mut order: Vec<usize> = (0..program.len()).filter(|&i| program[i].length > 0).collect();
    order.sort_by_key(|&i| (program[i].offset, program[i].length));
    let mut batches: Vec<Batch> = Vec::new();
    let mut window_end = 0u64; // furthest window end in the open batch
    for i in order {
        let ins = &program[i];
        let end = ins.offset + ins.length;
        let a = ins.offset / block * block;
        let b = end.div_ceil(block).saturating_mul(block).min(size);
        match batches.last_mut() {
            Some(cur) if a <= cur.end && !(cur.len() >= opts.max_batch && ins.offset >= window_end) => {
                cur.end = cur.end.max(b);
                cur.windows.push(i);
                window_end = window_end.max(end);
            }
            _ => {
                batches.push(Batch { start: a, end: b, windows: vec![i], requests: Vec::new() });
                window_end = end;
            }
        }
    }
    let step = (opts.max_request / block).max(1) * block;
    for batch in &mut batches {
        let mut at = batch.start;
        while at < batch.end {
            let next = (at + step).min(batch.end);
            batch.requests.push((at, next));
            at = next;
        }
    }
    batches
}

/// Total bytes a plan fetches.
pub fn planned_bytes(batches: &[Batch]) -> u64 {
    batches.iter().map(Batch::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use magicfs_compute::Op;

    fn w(offset: u64, length: u64) -> Instruction {
        Instruction::new(Op::Xor, None, offset, length)
    }

    #[test]
    fn aligns_and_coalesces() {
        let size = 10 * BLOCK + 5;
        let p =
            plan(&[w(10, 5), w(BLOCK - 1, 2), w(5 * BLOCK + 3, 1), w(0, 0), w(size - 1, 1)], size, Default::default());
        assert_eq!(
            p.iter().map(|b| (b.start, b.end, b.windows.clone())).collect::<Vec<_>>(),
            vec![(0, 2 * BLOCK, vec![0, 1]), (5 * BLOCK, 6 * BLOCK, vec![2]), (10 * BLOCK, size, vec![4])]
        );
        assert_eq!(planned_bytes(&p), 3 * BLOCK + 5);
        assert!(planned_bytes(&p) < size);
    }

    #[test]
    fn cuts_long_tiled_jobs_and_requests() {
        let size = 200 * BLOCK;
        let program: Vec<_> = (0..200).map(|k| w(k * BLOCK, BLOCK)).collect();
        let opts = PlanOptions::default();
        let p = plan(&program, size, opts);
        assert!(p.iter().all(|b| b.len() <= opts.max_batch));
        assert_eq!(planned_bytes(&p), size);
        for b in &p {
            assert_eq!(b.requests.first().unwrap().0, b.start);
            assert_eq!(b.requests.last().unwrap().1, b.end);
            assert!(b.requests.iter().all(|r| r.1 - r.0 <= opts.max_request && r.0 % BLOCK == 0));
            assert!(b
                .windows
                .iter()
                .all(|&i| program[i].offset >= b.start && program[i].offset + program[i].length <= b.end));
        }
        // One window longer than a batch stays whole.
        let p = plan(&[w(3, size - 3)], size, opts);
        assert_eq!((p.len(), p[0].start, p[0].end), (1, 0, size));
    }

    #[test]
    fn every_window_lies_inside_its_batch() {
        let size = 50 * BLOCK + 777;
        let mut seed = 7u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let program: Vec<_> = (0..300)
            .map(|_| {
                let off = next() % size;
                w(off, next() % (size - off).min(3 * BLOCK + 1))
            })
            .collect();
        let opts = PlanOptions { block: BLOCK, max_request: 2 * BLOCK, max_batch: 4 * BLOCK };
        let p = plan(&program, size, opts);
        let mut seen = vec![false; program.len()];
        for b in &p {
            for &i in &b.windows {
                assert!(program[i].offset >= b.start && program[i].offset + program[i].length <= b.end);
                seen[i] = true;
            }
        }
        assert!(program.iter().zip(&seen).all(|(ins, s)| *s || ins.length == 0));
    }
}
