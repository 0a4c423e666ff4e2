//! `http://` URLs: just enough parsing to connect and to compare origins.

use crate::error::{RemoteError, RemoteResult};
use std::fmt;

/// A parsed `http://host[:port]/path?query` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host as written, without brackets for IPv6 literals, lower-cased.
    pub host: String,
    /// Port (80 when not written).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl HttpUrl {
    /// Parses `text`. `https://` is refused with an explanation: this build
    /// speaks plain HTTP only.
    pub fn parse(text: &str) -> RemoteResult<HttpUrl> {
        let bad = |why: &str| RemoteError::BadUrl(format!("{text:?}: {why}"));
        let rest = if let Some(rest) = strip_prefix_ci(text, "http://") {
            rest
        } else if strip_prefix_ci(text, "https://").is_some() {
            return Err(bad(
                "https sources are not supported by this build (it speaks plain HTTP); serve the data over http:// on a trusted network or through a local TLS-terminating proxy",
            ));
        } else {
            return Err(bad("give an http:// URL, such as http://127.0.0.1:8811/files/data.bin"));
        };
        if text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("the URL holds spaces or control characters"));
        }
        let (authority, target) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let target = target.split('#').next().unwrap_or("/");
        let target = if target.starts_with('/') { target.to_string() } else { format!("/{target}") };
        if authority.contains('@') {
            return Err(bad("user names and passwords in URLs are not accepted; give a token with --token"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed [ in the host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the URL has no host"));
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p.parse::<u16>().map_err(|_| bad("the port is not a number from 1 to 65535"))?,
        };
        if port == 0 {
            return Err(bad("port 0 cannot be connected to"));
        }
        Ok(HttpUrl { host: host.to_ascii_lowercase(), port, target })
    }

    /// `host:port` as sent in the `Host` header (IPv6 literals bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The origin, `http://host:port`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.authority())
    }

    /// Resolves a `Location` header value against this URL.
    pub fn join(&self, location: &str) -> RemoteResult<HttpUrl> {
        if location.contains("://") {
            HttpUrl::parse(location)
        } else if let Some(rest) = location.strip_prefix("//") {
            HttpUrl::parse(&format!("http://{rest}"))
        } else if location.starts_with('/') {
            Ok(HttpUrl { target: location.to_string(), ..self.clone() })
        } else {
            let dir = self.target.split('?').next().unwrap_or("/");
            let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
            Ok(HttpUrl { target: format!("{dir}{location}"), ..self.clone() })
        }
    }

    /// This base URL with `path` appended (one `/` between them).
    pub fn with_path(&self, path: &str) -> HttpUrl {
        let base = self.target.split('?').next().unwrap_or("/").trim_end_matches('/');
        HttpUrl { target: format!("{base}/{}", path.trim_start_matches('/')), ..self.clone() }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.target)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Percent-encodes a relative path for use in a URL (keeps `/`).
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8811/files/a.bin?x=1#frag").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.target.as_str()), ("127.0.0.1", 8811, "/files/a.bin?x=1"));
        assert_eq!(u.origin(), "http://127.0.0.1:8811");
        let u = HttpUrl::parse("HTTP://[::1]/").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.authority()), ("::1", 80, "[::1]:80".to_string()));
        assert_eq!(HttpUrl::parse("http://Example.COM").unwrap().target, "/");
        for bad in ["ftp://x/", "http://", "http://u:p@h/", "http://h:99999/", "http://h:0/", "http://h/a b"] {
            assert!(matches!(HttpUrl::parse(bad), Err(RemoteError::BadUrl(_))), "{bad}");
        }
        let e = HttpUrl::parse("https://example.com/x").unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
    }

    #[test]
    fn joins_locations() {
        let u = HttpUrl::parse("http://h:1/a/b?q").unwrap();
        assert_eq!(u.join("/c").unwrap().to_string(), "http://h:1/c");
        assert_eq!(u.join("c").unwrap().to_string(), "http://h:1/a/c");
        assert_eq!(u.join("http://169.254.169.254/x").unwrap().host, "169.254.169.254");
        assert_eq!(u.join("//o:2/z").unwrap().to_string(), "http://o:2/z");
        assert_eq!(HttpUrl::parse("http://h/base/").unwrap().with_path("/f/g").target, "/base/f/g");
        assert_eq!(encode_path("a b/c%"), "a%20b/c%25");
    }
}
