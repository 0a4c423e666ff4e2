//! What the server is told at start.

use crate::error::{HttpError, HttpResult};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default limit on the size of a request body: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The server's settings. Its `Debug` form never shows the token.
#[derive(Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port; see [`crate::Server::local_addr`]).
    pub listen: SocketAddr,
    /// Directories whose files may be read, canonical (symlinks resolved).
    /// `/files/` serves the first one.
    pub roots: Vec<PathBuf>,
    /// Bearer token every route but `/health` requires, if any. Routes that
    /// write (transfers) are refused without one.
    pub token: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Hosts `http(s)://` data sources may be read from (default: none).
    pub allow: magicfs_remote::Allowlist,
    /// Most concurrent range streams to one origin.
    pub streams: usize,
    /// Paths besides `/health` answered without the token (the static files
    /// of routes merged in with [`crate::Server::bind_with`]).
    pub public: Option<fn(&str) -> bool>,
    /// Certificate chain and private key (PEM) to serve `https://` with.
    pub tls: Option<TlsFiles>,
    /// Connection, request and time limits.
    pub limits: Limits,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("roots", &self.roots)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("max_body", &self.max_body)
            .field("allow", &self.allow)
            .field("streams", &self.streams)
            .field("public", &self.public.is_some())
            .field("tls", &self.tls)
            .field("limits", &self.limits)
            .finish()
    }
}

/// A certificate chain and its private key, PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What one client, or many, may hold of the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections at once. At the limit, a new connection closes the
    /// one that has waited longest for a request; if every connection is
    /// busy, the new one is closed.
    pub max_connections: usize,
    /// Requests handled at once (`/health` aside); more are answered 503.
    pub max_requests: usize,
    /// Compute programs run at once; more wait, up to `queue_wait`.
    pub max_compute: usize,
    /// How long a request waits for a compute slot before a 503.
    pub queue_wait: Duration,
    /// Time to send a request's head (and, with TLS, to finish the
    /// handshake); also how long an idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// Time to send a request's body.
    pub body_timeout: Duration,
    /// Time a write to a client may make no progress before the connection
    /// is closed (a client that does not read its answer).
    pub write_timeout: Duration,
    /// Time requests still running at shutdown are given to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Limits {
            max_connections: 1024,
            max_requests: 256,
            max_compute: cpus.max(2),
            queue_wait: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(1),
        }
    }
}

impl ServeConfig {
    /// Settings for `listen` and `roots`, with the roots canonicalized: each
    /// must be an existing directory. No token, no TLS, bodies up to
    /// [`DEFAULT_MAX_BODY`], no remote sources, the default [`Limits`].
    pub fn new(listen: SocketAddr, roots: &[PathBuf]) -> HttpResult<ServeConfig> {
        if roots.is_empty() {
            return Err(HttpError::Config("give at least one root directory to serve (--root DIR)".into()));
        }
        let mut canonical = Vec::with_capacity(roots.len());
        for root in roots {
            let c = root
                .canonicalize()
                .map_err(|e| HttpError::Config(format!("root {}: {e}; give an existing directory", root.display())))?;
            if !c.is_dir() {
                return Err(HttpError::Config(format!("root {} is not a directory", root.display())));
            }
            canonical.push(c);
        }
        Ok(ServeConfig {
            listen,
            roots: canonical,
            token: None,
            max_body: DEFAULT_MAX_BODY,
            allow: magicfs_remote::Allowlist::none(),
            streams: magicfs_remote::fetch::DEFAULT_STREAMS,
            public: None,
            tls: None,
            limits: Limits::default(),
        })
    }
}
