//! `magicfs format`: create a cluster volume.

use crate::cli::FormatArgs;

pub fn run(a: FormatArgs) -> anyhow::Result<i32> {
    super::volume::format(&a.meta, &a.store)?;
    Ok(0)
}
