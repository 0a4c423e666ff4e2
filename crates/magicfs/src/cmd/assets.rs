//! `magicfs assets probe URL…`: a catalogue line per data source.

use crate::cli::{AssetsArgs, AssetsCmd};
use crate::cmd::compute::fetch_config;

pub fn run(a: AssetsArgs) -> anyhow::Result<i32> {
    let AssetsCmd::Probe { urls, remote } = a.cmd;
    let cfg = fetch_config(&remote)?;
    let mut failed = 0;
    for url in &urls {
        match magicfs_remote::probe_asset(url, &cfg) {
            Ok(report) => println!("{}", serde_json::to_string(&report)?),
            Err(e) => {
                failed += 1;
                println!("{}", serde_json::json!({ "url": url, "error": e.to_string() }));
                eprintln!("magicfs assets: {url}: {e}");
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
