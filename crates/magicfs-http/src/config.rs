//! What the server is told at start.

use crate::error::{HttpError, HttpResult};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default limit on the size of a request body: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The server's settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port; see [`crate::Server::local_addr`]).
    pub listen: SocketAddr,
    /// Directories whose files may be read, canonical (symlinks resolved).
    /// `/files/` serves the first one.
    pub roots: Vec<PathBuf>,
    /// Bearer token every route but `/health` requires, if any.
    pub token: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Hosts `http://` data sources may be read from (default: loopback only).
    pub allow: magicfs_remote::Allowlist,
    /// Most concurrent range streams to one origin.
    pub streams: usize,
    /// Paths besides `/health` answered without the token (the static files
    /// of routes merged in with [`crate::Server::bind_with`]).
    pub public: Option<fn(&str) -> bool>,
}

impl ServeConfig {
    /// Settings for `listen` and `roots`, with the roots canonicalized: each
    /// must be an existing directory. No token, bodies up to [`DEFAULT_MAX_BODY`], remote sources on loopback only.
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
            allow: magicfs_remote::Allowlist::default(),
            streams: magicfs_remote::fetch::DEFAULT_STREAMS,
            public: None,
        })
    }
}
