//! `magicfs stats`: counters of a mounted filesystem or an unmounted store.

use crate::cli::StatsArgs;
use anyhow::{anyhow, bail, Context};
use magicfs_core::{Fs, FsConfig};
use serde_json::Value;

fn human(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

pub fn run(a: StatsArgs) -> anyhow::Result<i32> {
    let status: Value = match (&a.mountpoint, &a.data) {
        (None, None) if a.meta.is_some() => {
            let fs = super::volume::open_fs(a.meta.as_deref().unwrap_or_default())?;
            let v = serde_json::to_value(fs.status())?;
            fs.shutdown().map_err(|e| anyhow!("{e}"))?;
            v
        }
        (Some(m), _) => {
            let p = m.join(".magic/status");
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {} (is {} a MagicFS mount?)", p.display(), m.display()))?;
            serde_json::from_str(&text).context("status is not valid JSON")?
        }
        (None, Some(d)) => {
            let fs = Fs::open_store(d, false, FsConfig::default()).map_err(|e| anyhow!("{e}"))?;
            serde_json::to_value(fs.status())?
        }
        (None, None) => bail!("name a mount point, --data DIR or --meta postgres://…"),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(0);
    }
    let n = |k: &str| status.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let s = |k: &str| {
        status.get(k).filter(|v| !v.is_null()).map(|v| v.to_string().trim_matches('"').to_string()).unwrap_or_default()
    };
    println!("backend        {} {}{}", s("backend"), s("store_path"), s("volume"));
    println!("inodes         {} ({} files, {} directories)", n("inodes"), n("files"), n("directories"));
    println!("logical size   {}", human(n("logical_bytes")));
    println!("file data      {} (holes excluded)", human(n("data_bytes")));
    println!(
        "after dedup    {} in {} chunks (dedup ratio {:.2}x)",
        human(n("unique_bytes")),
        n("chunks"),
        n("dedup_ratio")
    );
    println!(
        "stored         {} (compression ratio {:.2}x, overall {:.2}x)",
        human(n("stored_bytes")),
        n("compression_ratio"),
        n("total_ratio")
    );
    println!(
        "on disk        packs {}, db {}, log {}",
        human(n("pack_bytes")),
        human(n("db_bytes")),
        human(n("wal_bytes"))
    );
    println!("open handles   {}, dirty {}", n("open_handles"), human(n("dirty_bytes")));
    if let Some(t) = status.pointer("/fuse/transport").and_then(Value::as_str) {
        println!("requests over  {t}");
    }
    Ok(0)
}
