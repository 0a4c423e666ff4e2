//! `magicfs serve`: the HTTP(S) edge server for near-data compute over files
//! under root directories (see the `magicfs-http` crate), and with
//! `--console` the web console and with `--mcp` the MCP endpoint over the
//! first root (`magicfs-console`, `magicfs-mcp`), behind the same TLS,
//! limits, logs and token. Requests are logged to stderr
//! through `tracing` (`MAGICFS_LOG` sets the level).

use crate::cli::ServeArgs;
use anyhow::{anyhow, bail, Context};
use magicfs_http::{Limits, ServeConfig, TlsFiles};
use magicfs_volume::Volume;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::filter::LevelFilter;

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
    config.allow = magicfs_remote::Allowlist::parse(&a.allow_hosts)?;
    config.streams = a.streams.max(1);
    config.tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => bail!("give both --tls-cert and --tls-key, or neither"),
    };
    if a.header_timeout == 0 || a.body_timeout == 0 {
        bail!("--header-timeout and --body-timeout must be at least 1 second");
    }
    config.limits = Limits {
        max_connections: a.max_connections.max(1),
        max_requests: a.max_requests.max(1),
        header_timeout: Duration::from_secs(a.header_timeout),
        body_timeout: Duration::from_secs(a.body_timeout),
        ..Limits::default()
    };
    let mut extra = axum::Router::new();
    let mut made_up = false;
    if a.console || a.mcp {
        if config.token.is_none() {
            config.token = Some(make_token()?);
            made_up = true;
        }
        let token = config.token.as_deref().unwrap_or_default();
        let backend = super::mcp::mount_backend(&config.roots[0])?;
        let vol = Arc::new(Volume::new(Arc::new(backend), super::mcp::limits(&a.console_limits)?));
        if a.console {
            extra = extra.merge(magicfs_console::router(vol.clone(), token));
            config.public = Some(magicfs_console::is_public);
        }
        if a.mcp {
            extra = extra.merge(magicfs_mcp::http_router(vol, token, config.listen));
        }
    }
    raise_descriptor_limit(config.limits.max_connections);
    init_logs();
    let has_token = config.token.is_some();
    let token = config.token.clone();
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    magicfs_http::run_until_signal_with(config, extra, |addr| {
        eprintln!("magicfs serve: listening on {scheme}://{addr}");
        if a.console {
            match (&token, made_up) {
                (Some(t), true) => eprintln!("magicfs serve: console at {scheme}://{addr}/console/#token={t} (token made up for this run; set --token to choose one)"),
                _ => eprintln!("magicfs serve: console at {scheme}://{addr}/console/ (log in with the server's token)"),
            }
        }
        if a.mcp {
            match (&token, made_up, a.console) {
                (Some(t), true, false) => eprintln!("magicfs serve: MCP endpoint at {scheme}://{addr}{} (Authorization: Bearer {t}; token made up for this run; set --token to choose one)", magicfs_mcp::HTTP_PATH),
                _ => eprintln!("magicfs serve: MCP endpoint at {scheme}://{addr}{} (Authorization: Bearer with the server's token)", magicfs_mcp::HTTP_PATH),
            }
        }
        if !addr.ip().is_loopback() && !has_token {
            eprintln!(
                "magicfs serve: warning: listening on a non-loopback address without a token; anyone who can reach {addr} can read the files under the roots (transfers into them are refused without a token; set --token or MAGICFS_TOKEN)"
            );
        }
        if !addr.ip().is_loopback() && scheme == "http" && has_token {
            eprintln!(
                "magicfs serve: note: the token and the files cross the network in cleartext; serve https with --tls-cert and --tls-key, or behind a TLS-terminating reverse proxy"
            );
        }
    })
    .map_err(|e| anyhow!("{e}"))?;
    eprintln!("magicfs serve: stopped");
    Ok(0)
}

/// Request logs: `tracing` events on stderr, at the level `MAGICFS_LOG`
/// names (default `info`).
fn init_logs() {
    let level = match std::env::var("MAGICFS_LOG").unwrap_or_default().to_ascii_lowercase().as_str() {
        "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => LevelFilter::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// Raises the soft limit on open files towards the hard one, so that the
/// connection limit, not the descriptor limit, decides.
fn raise_descriptor_limit(connections: usize) {
    let want = (connections as u64).saturating_mul(2).saturating_add(256);
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid, owned struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
