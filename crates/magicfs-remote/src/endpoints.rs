//! The endpoint registry: named `magicfs serve` instances a job can be
//! spread over, with their concurrency, token, daily budgets, last probe and
//! today's usage. Stored as one JSON file (`endpoints.json` in a store's data
//! directory, or a configuration path), rewritten atomically.

use crate::error::{RemoteError, RemoteResult};
use magicfs_net::HttpUrl;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Name of the registry file inside a store's data directory.
pub const FILE_NAME: &str = "endpoints.json";

/// What the last probe measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Probe {
    /// Median round trip of `GET /health`, in milliseconds.
    pub latency_ms: f64,
    /// Bytes per second a compute request got through, end to end.
    pub throughput_bps: f64,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

/// Requests and bytes sent on one day (UTC).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// Days since the Unix epoch.
    pub day: u64,
    /// Compute requests sent that day.
    pub requests: u64,
    /// Bytes of windows sent that day.
    pub bytes: u64,
}

/// One registered endpoint.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    /// The name jobs use (`--on NAME`).
    pub name: String,
    /// Base URL of a `magicfs serve` (`http://host:port`).
    pub url: String,
    /// Requests sent to it at once.
    pub concurrency: usize,
    /// Bearer token, if it needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Most compute requests per day, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_requests: Option<u64>,
    /// Most window bytes per day, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_bytes: Option<u64>,
    /// The last probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// Today's usage.
    #[serde(default)]
    pub usage: Usage,
}

/// Never shows the token.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("concurrency", &self.concurrency)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("budget_requests", &self.budget_requests)
            .field("budget_bytes", &self.budget_bytes)
            .field("probe", &self.probe)
            .field("usage", &self.usage)
            .finish()
    }
}

impl Endpoint {
    /// Today's usage (a usage from an earlier day counts as none).
    pub fn usage_today(&self) -> Usage {
        let today = today();
        if self.usage.day == today {
            self.usage.clone()
        } else {
            Usage { day: today, ..Usage::default() }
        }
    }

    /// Adds `requests` and `bytes` to today's usage.
    pub fn charge(&mut self, requests: u64, bytes: u64) {
        let mut u = self.usage_today();
        u.requests += requests;
        u.bytes += bytes;
        self.usage = u;
    }

    /// Requests and bytes left today (`None`: unlimited).
    pub fn remaining(&self) -> (Option<u64>, Option<u64>) {
        let u = self.usage_today();
        (
            self.budget_requests.map(|b| b.saturating_sub(u.requests)),
            self.budget_bytes.map(|b| b.saturating_sub(u.bytes)),
        )
    }
}

/// Days since the Unix epoch, now (UTC).
pub fn today() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0)
}

/// The registry file and its endpoints.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    /// The endpoints, in the order added.
    pub endpoints: Vec<Endpoint>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    endpoints: Vec<Endpoint>,
}

impl Registry {
    /// Reads the registry at `path` (none there yet: an empty registry).
    pub fn load(path: &Path) -> RemoteResult<Registry> {
        let endpoints = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice::<OnDisk>(&bytes)
                    .map_err(|e| {
                        RemoteError::Config(format!(
                            "{}: not an endpoint registry ({e}); fix or remove the file",
                            path.display()
                        ))
                    })?
                    .endpoints
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(RemoteError::Io(format!("cannot read {}: {e}", path.display()))),
        };
        Ok(Registry { path: path.to_path_buf(), endpoints })
    }

    /// Where the registry lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the registry (owner-only permissions, since it may hold tokens)
    /// to a temporary file and renames it over the old one.
    pub fn save(&self) -> RemoteResult<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |e: std::io::Error| RemoteError::Io(format!("cannot write {}: {e}", self.path.display()));
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self.path.with_extension(format!("json.tmp{}", std::process::id()));
        let text = serde_json::to_vec_pretty(&OnDisk { endpoints: self.endpoints.clone() })
            .map_err(|e| RemoteError::Io(e.to_string()))?;
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
        f.write_all(&text).and_then(|()| f.write_all(b"\n")).and_then(|()| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    /// Adds an endpoint, or replaces the settings of one with the same name
    /// (keeping its probe and usage).
    pub fn add(&mut self, mut e: Endpoint) -> RemoteResult<()> {
        if e.name.is_empty()
            || e.name == "all"
            || !e.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(RemoteError::Config(format!(
                "endpoint name {:?}: use letters, digits, '-', '_' or '.' (and not \"all\")",
                e.name
            )));
        }
        if e.concurrency == 0 {
            return Err(RemoteError::Config("--concurrency must be at least 1".into()));
        }
        let url = HttpUrl::parse(&e.url)?;
        e.url = url.to_string().trim_end_matches('/').to_string();
        if let Some(old) = self.endpoints.iter_mut().find(|o| o.name == e.name) {
            e.probe = if old.url == e.url { old.probe.take() } else { None };
            e.usage = std::mem::take(&mut old.usage);
            *old = e;
        } else {
            self.endpoints.push(e);
        }
        Ok(())
    }

    /// Removes the endpoint `name`.
    pub fn remove(&mut self, name: &str) -> RemoteResult<Endpoint> {
        let i =
            self.endpoints.iter().position(|e| e.name == name).ok_or_else(|| {
                RemoteError::Config(format!("no endpoint named {name:?}; see `magicfs endpoints list`"))
            })?;
        Ok(self.endpoints.remove(i))
    }

    /// The endpoints a selection names: `all`, or names separated by commas.
    pub fn select(&self, selection: &str) -> RemoteResult<Vec<Endpoint>> {
        if self.endpoints.is_empty() {
            return Err(RemoteError::Config(format!(
                "no endpoints are registered in {}; add one with `magicfs endpoints add NAME URL`",
                self.path.display()
            )));
        }
        if selection.trim() == "all" {
            return Ok(self.endpoints.clone());
        }
        let mut out: Vec<Endpoint> = Vec::new();
        for name in selection.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let e = self.endpoints.iter().find(|e| e.name == name).ok_or_else(|| {
                RemoteError::Config(format!("no endpoint named {name:?}; see `magicfs endpoints list`"))
            })?;
            if !out.iter().any(|o| o.name == e.name) {
                out.push(e.clone());
            }
        }
        if out.is_empty() {
            return Err(RemoteError::Config("--on names no endpoint; give all or NAME,NAME".into()));
        }
        Ok(out)
    }

    /// The endpoint `name`, for updates.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Endpoint> {
        self.endpoints.iter_mut().find(|e| e.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(name: &str, url: &str) -> Endpoint {
        Endpoint {
            name: name.into(),
            url: url.into(),
            concurrency: 2,
            token: None,
            budget_requests: Some(10),
            budget_bytes: None,
            probe: None,
            usage: Usage::default(),
        }
    }

    #[test]
    fn persists_adds_replaces_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(FILE_NAME);
        let mut r = Registry::load(&path).unwrap();
        assert!(r.select("all").is_err());
        r.add(ep("a", "http://127.0.0.1:1/")).unwrap();
        r.add(ep("b", "http://127.0.0.1:2")).unwrap();
        r.get_mut("a").unwrap().charge(3, 100);
        r.add(ep("a", "http://127.0.0.1:1")).unwrap();
        r.save().unwrap();
        let r2 = Registry::load(&path).unwrap();
        assert_eq!(r2.endpoints.len(), 2);
        assert_eq!(r2.endpoints[0].url, "http://127.0.0.1:1");
        assert_eq!(r2.endpoints[0].usage_today().requests, 3);
        assert_eq!(r2.endpoints[0].remaining(), (Some(7), None));
        assert_eq!(r2.select("b, a").unwrap().iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert!(r2.select("c").is_err());
        let mut r3 = r2;
        r3.remove("a").unwrap();
        assert!(r3.remove("a").is_err());
        assert!(r3.add(ep("all", "http://h/")).is_err());
        assert!(r3.add(ep("x y", "http://h/")).is_err());
        assert!(r3.add(ep("x", "ftp://h/")).is_err());
        std::fs::write(&path, "{").unwrap();
        assert!(Registry::load(&path).unwrap_err().to_string().contains("not an endpoint registry"));
    }
}
