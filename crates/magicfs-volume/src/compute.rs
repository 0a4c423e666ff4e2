//! Byte-window compute over a volume's file: one op over a range cut into
//! windows, run in place on all cores (`magicfs_compute`), with the rate.

use crate::error::{VResult, VolumeError};
use magicfs_compute::{execute, validate, windows, Op, Output, MAX_INSTRUCTIONS};
use serde::Serialize;
use std::time::Instant;

/// What to compute.
#[derive(Clone, Debug, Default)]
pub struct ComputeRequest {
    /// `counteq`, `xor`, `add`, `fnv` or `crc32c`.
    pub op: String,
    /// The byte counted by `counteq`.
    pub imm: Option<u8>,
    /// First byte (default 0).
    pub offset: Option<u64>,
    /// Bytes (default: to the end of the file).
    pub length: Option<u64>,
    /// Window size (default: the whole range as one window).
    pub window: Option<u64>,
}

/// The results and how fast they came.
#[derive(Clone, Debug, Serialize)]
pub struct ComputeOut {
    /// The file, from the volume's root.
    pub path: String,
    /// The op run.
    pub op: String,
    /// Size of the file.
    pub size: u64,
    /// Bytes processed.
    pub bytes: u64,
    /// Windows computed.
    pub windows: usize,
    /// Time spent computing, in milliseconds.
    pub elapsed_ms: f64,
    /// Rate in GB/s (10^9 bytes per second).
    pub gbps: f64,
    /// One result per window, in order.
    pub results: Vec<Output>,
}

/// Runs `req` over `data` (the bytes of the file at `path`).
pub fn run(path: &str, data: &[u8], req: &ComputeRequest) -> VResult<ComputeOut> {
    let op: Op = req.op.parse().map_err(|_| {
        VolumeError::BadArgument(format!(
            "unknown op {:?}: use one of {}",
            req.op,
            Op::ALL.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    if op.needs_imm() && req.imm.is_none() {
        return Err(VolumeError::BadArgument(format!("op {op} needs imm, the byte value to count (0-255)")));
    }
    let size = data.len() as u64;
    let offset = req.offset.unwrap_or(0);
    let length = match req.length {
        Some(l) => l,
        None => size.checked_sub(offset).ok_or_else(|| {
            VolumeError::BadArgument(format!("offset {offset} is past the end of the file ({size} bytes)"))
        })?,
    };
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(VolumeError::BadArgument(format!(
            "the range at offset {offset} with length {length} reaches past the end of the file ({size} bytes)"
        )));
    }
    let window = match req.window {
        Some(0) => return Err(VolumeError::BadArgument("window must be at least 1 byte".into())),
        Some(w) => w.min(length.max(1)),
        None => length.max(1),
    };
    let count = length.div_ceil(window).max(1);
    if count > MAX_INSTRUCTIONS as u64 {
        return Err(VolumeError::BadArgument(format!(
            "{count} windows asked for; at most {MAX_INSTRUCTIONS}: use a window of at least {} bytes",
            length.div_ceil(MAX_INSTRUCTIONS as u64)
        )));
    }
    let program = windows(op, req.imm, offset, length, window);
    validate(&program, size).map_err(|e| VolumeError::BadArgument(e.to_string()))?;
    let started = Instant::now();
    let results = execute(data, &program).map_err(|e| VolumeError::BadArgument(e.to_string()))?;
    let secs = started.elapsed().as_secs_f64();
    Ok(ComputeOut {
        path: path.to_string(),
        op: op.name().to_string(),
        size,
        bytes: length,
        windows: results.len(),
        elapsed_ms: secs * 1e3,
        gbps: if secs > 0.0 { length as f64 / secs / 1e9 } else { 0.0 },
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_errors() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
        let req = ComputeRequest { op: "counteq".into(), imm: Some(0), window: Some(1000), ..Default::default() };
        let out = run("/x", &data, &req).unwrap();
        assert_eq!(out.windows, 10);
        let zeros: u64 = out.results.iter().map(|r| r.value).sum();
        assert_eq!(zeros, data.iter().filter(|b| **b == 0).count() as u64);
        assert!(run("/x", &data, &ComputeRequest { op: "nope".into(), ..Default::default() }).is_err());
        assert!(run("/x", &data, &ComputeRequest { op: "counteq".into(), ..Default::default() }).is_err());
        let past = ComputeRequest { op: "xor".into(), offset: Some(9_000), length: Some(2_000), ..Default::default() };
        assert!(matches!(run("/x", &data, &past), Err(VolumeError::BadArgument(_))));
        let tiny = ComputeRequest { op: "xor".into(), window: Some(1), ..Default::default() };
        assert!(matches!(run("/x", &data, &tiny), Err(VolumeError::BadArgument(_))));
    }
}
