//! `magicfs serve`: the HTTP edge server for near-data compute over files
//! under root directories (see the `magicfs-http` crate), and with
//! `--console` the web console over the first root (`magicfs-console`).

use crate::cli::ServeArgs;
use anyhow::{anyhow, Context};
use magicfs_http::ServeConfig;
use magicfs_volume::Volume;
use std::io::Read;
use std::sync::Arc;

/// A fresh random token: 32 hex digits from the kernel's generator.
fn make_token() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).context("cannot read /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

pub fn run(a: ServeArgs) -> anyhow::Result<i32> {
    let mut config = ServeConfig::new(a.listen, &a.roots)?;
    config.token = a.token.filter(|t| !t.is_empty());
    config.max_body = usize::try_from(a.max_body).context("--max-body is larger than this machine can address")?;
    config.allow = magicfs_remote::Allowlist::with(&a.allow_hosts)?;
    config.streams = a.streams.max(1);
    let mut extra = axum::Router::new();
    let mut made_up = false;
    if a.console {
        if config.token.is_none() {
            config.token = Some(make_token()?);
            made_up = true;
        }
        let backend = super::mcp::mount_backend(&config.roots[0])?;
        let vol = Arc::new(Volume::new(Arc::new(backend), super::mcp::limits(&a.console_limits)?));
        extra = magicfs_console::router(vol, config.token.as_deref().unwrap_or_default());
        config.public = Some(magicfs_console::is_public);
    }
    let has_token = config.token.is_some();
    let token = config.token.clone();
    magicfs_http::run_until_signal_with(config, extra, |addr| {
        eprintln!("magicfs serve: listening on http://{addr}");
        if a.console {
            match (&token, made_up) {
                (Some(t), true) => eprintln!("magicfs serve: console at http://{addr}/console/#token={t} (token made up for this run; set --token to choose one)"),
                _ => eprintln!("magicfs serve: console at http://{addr}/console/ (log in with the server's token)"),
            }
        }
        if !addr.ip().is_loopback() && !has_token {
            eprintln!(
                "magicfs serve: warning: listening on a non-loopback address without a token; anyone who can reach {addr} can read the files under the roots (set --token or MAGICFS_TOKEN)"
            );
        }
    })
    .map_err(|e| anyhow!("{e}"))?;
    eprintln!("magicfs serve: stopped");
    Ok(0)
}
