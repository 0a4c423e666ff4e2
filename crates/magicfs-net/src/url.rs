//! `http://` and `https://` URLs: parsed by the `url` crate (WHATWG rules,
//! international names), limited to what a request needs.

use crate::error::{NetError, NetResult};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt;
use std::net::IpAddr;
use url::{Host, Url};

/// Bytes of a path that stay as they are: unreserved characters and `/`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// A parsed `http(s)://host[:port]/path?query` URL without credentials or fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    url: Url,
}

impl HttpUrl {
    /// Parses `text`: `http://` or `https://`, a host, no user name or password.
    pub fn parse(text: &str) -> NetResult<HttpUrl> {
        let bad = |why: &str| NetError::BadUrl(format!("{text:?}: {why}"));
        if text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("the URL holds spaces or control characters"));
        }
        let url = Url::parse(text).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => {
                bad("give an http:// or https:// URL, such as https://127.0.0.1:8811/files/data.bin")
            }
            url::ParseError::InvalidPort => bad("the port is not a number from 1 to 65535"),
            url::ParseError::EmptyHost => bad("the URL has no host"),
            e => bad(&e.to_string()),
        })?;
        HttpUrl::checked(url, text)
    }

    fn checked(mut url: Url, text: &str) -> NetResult<HttpUrl> {
        let bad = |why: String| NetError::BadUrl(format!("{text:?}: {why}"));
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "{}:// is not HTTP; give an http:// or https:// URL, such as https://127.0.0.1:8811/files/data.bin",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("user names and passwords in URLs are not accepted; give a token with --token".into()));
        }
        if url.host().is_none() {
            return Err(bad("the URL has no host".into()));
        }
        if url.port() == Some(0) {
            return Err(bad("port 0 cannot be connected to".into()));
        }
        url.set_fragment(None);
        Ok(HttpUrl { url })
    }

    /// True for `https://`.
    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// The host: a lower-case name, or an address (IPv6 without brackets).
    pub fn host(&self) -> String {
        match self.url.host() {
            Some(Host::Domain(d)) => d.to_string(),
            Some(Host::Ipv4(a)) => a.to_string(),
            Some(Host::Ipv6(a)) => a.to_string(),
            None => String::new(),
        }
    }

    /// The host when it is an address literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.url.host() {
            Some(Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            _ => None,
        }
    }

    /// The port (80 or 443 when not written).
    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(80)
    }

    /// `host:port`, IPv6 literals bracketed.
    pub fn authority(&self) -> String {
        match self.url.host() {
            Some(Host::Ipv6(a)) => format!("[{a}]:{}", self.port()),
            _ => format!("{}:{}", self.host(), self.port()),
        }
    }

    /// The origin, `scheme://host:port`: redirects stay within it.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme(), self.authority())
    }

    /// The path (percent-encoded), starting with `/`.
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// The path with its percent-escapes decoded; `None` when they do not decode to UTF-8.
    pub fn decoded_path(&self) -> Option<String> {
        percent_decode_str(self.url.path()).decode_utf8().ok().map(|p| p.into_owned())
    }

    /// Path and query, as sent in a request line.
    pub fn target(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_string(),
        }
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// Resolves a `Location` header value against this URL.
    pub fn join(&self, location: &str) -> NetResult<HttpUrl> {
        let url = self
            .url
            .join(location)
            .map_err(|e| NetError::Protocol(format!("{self} redirects to {location:?}, not a URL: {e}")))?;
        HttpUrl::checked(url, location)
    }

    /// This base URL with `path` (already percent-encoded) appended, one `/`
    /// between them, and no query.
    pub fn with_path(&self, path: &str) -> HttpUrl {
        let mut url = self.url.clone();
        let joined = format!("{}/{}", self.url.path().trim_end_matches('/'), path.trim_start_matches('/'));
        url.set_path(&joined);
        url.set_query(None);
        HttpUrl { url }
    }

    /// This URL with the path `/` and no query.
    pub fn base(&self) -> HttpUrl {
        let mut url = self.url.clone();
        url.set_path("/");
        url.set_query(None);
        HttpUrl { url }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

/// Percent-encodes a relative path for use in a URL (keeps `/`).
pub fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8811/files/a.bin?x=1#frag").unwrap();
        assert_eq!((u.host().as_str(), u.port(), u.target().as_str()), ("127.0.0.1", 8811, "/files/a.bin?x=1"));
        assert_eq!(u.origin(), "http://127.0.0.1:8811");
        let u = HttpUrl::parse("HTTP://[::1]/").unwrap();
        assert_eq!((u.host().as_str(), u.port(), u.authority()), ("::1", 80, "[::1]:80".to_string()));
        assert_eq!(HttpUrl::parse("http://Example.COM").unwrap().target(), "/");
        assert_eq!(HttpUrl::parse("http://Example.COM").unwrap().host(), "example.com");
        let s = HttpUrl::parse("https://api.example.com/v1").unwrap();
        assert!(s.is_https());
        assert_eq!((s.port(), s.origin().as_str()), (443, "https://api.example.com:443"));
        for bad in
            ["ftp://x/", "http://", "http://u:p@h/", "http://h:99999/", "http://h:0/", "http://h/a b", "h:80", "/x"]
        {
            assert!(matches!(HttpUrl::parse(bad), Err(NetError::BadUrl(_))), "{bad}");
        }
    }

    #[test]
    fn joins_locations() {
        let u = HttpUrl::parse("http://h:1/a/b?q").unwrap();
        assert_eq!(u.join("/c").unwrap().to_string(), "http://h:1/c");
        assert_eq!(u.join("c").unwrap().to_string(), "http://h:1/a/c");
        assert_eq!(u.join("http://169.254.169.254/x").unwrap().host(), "169.254.169.254");
        assert_eq!(u.join("//o:2/z").unwrap().to_string(), "http://o:2/z");
        assert!(u.join("https://h:1/a").unwrap().origin() != u.origin());
        assert!(u.join("file:///etc/passwd").is_err());
        assert_eq!(HttpUrl::parse("http://h/base/").unwrap().with_path("/f/g").target(), "/base/f/g");
        assert_eq!(HttpUrl::parse("http://h/base?q=1").unwrap().with_path("x%20y").target(), "/base/x%20y");
        assert_eq!(encode_path("a b/c%é"), "a%20b/c%25%C3%A9");
        assert_eq!(HttpUrl::parse("http://h/d/b%20c.bin").unwrap().decoded_path().unwrap(), "/d/b c.bin");
        assert_eq!(HttpUrl::parse("https://h:9/d/x?q").unwrap().base().to_string(), "https://h:9/");
    }
}
