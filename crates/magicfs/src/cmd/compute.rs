//! `magicfs compute`: byte-window operations over a file, run in place on a
//! read-only memory map.

use crate::cli::ComputeArgs;
use anyhow::{anyhow, bail, Context};
use magicfs_compute::{execute, instr, windows, Instruction, Op, Output, MAX_INSTRUCTIONS};
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

pub fn run(a: ComputeArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let path = a.path.display();
    let file = File::open(&a.path).with_context(|| format!("cannot open {path}"))?;
    let meta = file.metadata().with_context(|| format!("cannot stat {path}"))?;
    if !meta.is_file() {
        bail!("{path} is not a regular file; compute reads the bytes of a file");
    }
    // SAFETY: the map is read-only and lives only while this command runs. If
    // another process truncates the file meanwhile, reading the lost pages
    // raises SIGBUS, as it would for any reader of a mapped file.
    let map = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {path} into memory"))?;
    let data: &[u8] = &map;
    let size = data.len() as u64;

    let mut out = Printer::new(a.json);
    let mut busy = started.elapsed();
    let mut bytes = 0u64;
    let mut count = 0u64;
    let mut run = |program: &[Instruction], out: &mut Printer| -> anyhow::Result<()> {
        let t = Instant::now();
        let results = execute(data, program).map_err(|e| anyhow!("{path}: {e}"))?;
        busy += t.elapsed();
        bytes += program.iter().map(|i| i.length).sum::<u64>();
        count += program.len() as u64;
        out.print(&results)
    };

    if let Some(prog) = &a.instructions {
        let text =
            std::fs::read_to_string(prog).with_context(|| format!("cannot read instructions {}", prog.display()))?;
        let program = instr::parse(&text).map_err(|e| anyhow!("{}: {e}", prog.display()))?;
        run(&program, &mut out)?;
    } else {
        let op = a.op.ok_or_else(|| anyhow!("give --op NAME or --instructions FILE.json"))?;
        if op.needs_imm() && a.imm.is_none() {
            bail!("--op {op} needs --imm N, the byte value to count (0-255)");
        }
        let offset = a.offset.unwrap_or(0);
        let length = match a.length {
            Some(l) => l,
            None => size.checked_sub(offset).ok_or_else(|| {
                anyhow!("{path}: --offset {offset} is past the end of the file ({size} bytes); keep it <= {size}")
            })?,
        };
        if offset.checked_add(length).is_none_or(|end| end > size) {
            bail!(
                "{path}: the range at offset {offset} with length {length} reaches past the end of the file ({size} bytes); keep offset + length <= {size}"
            );
        }
        let window = match a.window {
            Some(0) => bail!("--window must be at least 1 byte"),
            Some(w) => w.min(length.max(1)),
            None => length.max(1),
        };
        // One program holds at most MAX_INSTRUCTIONS windows: run the range in batches.
        let batch = window.saturating_mul(MAX_INSTRUCTIONS as u64);
        let mut start = offset;
        loop {
            let len = batch.min(offset + length - start);
            run(&windows(op, a.imm, start, len, window), &mut out)?;
            start += len;
            if start >= offset + length {
                break;
            }
        }
    }
    out.finish()?;
    summary(a.op, bytes, count, busy);
    Ok(0)
}

/// Writes results as `offset length value` lines or as one JSON array.
struct Printer {
    w: BufWriter<std::io::Stdout>,
    json: bool,
    first: bool,
}

impl Printer {
    fn new(json: bool) -> Printer {
        Printer { w: BufWriter::new(std::io::stdout()), json, first: true }
    }

    fn print(&mut self, results: &[Output]) -> anyhow::Result<()> {
        for o in results {
            if self.json {
                self.w.write_all(if self.first { b"[\n" } else { b",\n" })?;
                serde_json::to_writer(&mut self.w, o)?;
            } else {
                writeln!(self.w, "{} {} {}", o.offset, o.length, o.value)?;
            }
            self.first = false;
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if self.json {
            self.w.write_all(if self.first { b"[]\n" } else { b"\n]\n" })?;
        }
        self.w.flush()?;
        Ok(())
    }
}

/// One line on stderr: what was read, how long it took (opening, mapping and
/// computing; not printing) and the rate in GB/s (10^9 bytes per second).
fn summary(op: Option<Op>, bytes: u64, windows: u64, busy: Duration) {
    let secs = busy.as_secs_f64();
    let rate = if secs > 0.0 { bytes as f64 / secs / 1e9 } else { 0.0 };
    let what = op.map_or_else(|| "instructions".to_string(), |op| op.to_string());
    eprintln!("magicfs compute: {what}: {bytes} bytes in {windows} windows, {secs:.4} s, {rate:.2} GB/s");
}
