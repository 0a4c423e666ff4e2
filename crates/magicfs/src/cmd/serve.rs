//! `magicfs serve`: the HTTP edge server for near-data compute over files
//! under root directories (see the `magicfs-http` crate).

use crate::cli::ServeArgs;
use anyhow::Context;
use magicfs_http::ServeConfig;

pub fn run(a: ServeArgs) -> anyhow::Result<i32> {
    let mut config = ServeConfig::new(a.listen, &a.roots)?;
    config.token = a.token.filter(|t| !t.is_empty());
    config.max_body = usize::try_from(a.max_body).context("--max-body is larger than this machine can address")?;
    config.allow = magicfs_remote::Allowlist::with(&a.allow_hosts)?;
    config.streams = a.streams.max(1);
    let has_token = config.token.is_some();
    magicfs_http::run_until_signal(config, |addr| {
        eprintln!("magicfs serve: listening on http://{addr}");
        if !addr.ip().is_loopback() && !has_token {
            eprintln!(
                "magicfs serve: warning: listening on a non-loopback address without a token; anyone who can reach {addr} can read the files under the roots (set --token or MAGICFS_TOKEN)"
            );
        }
    })?;
    eprintln!("magicfs serve: stopped");
    Ok(0)
}
