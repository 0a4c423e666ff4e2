//! A small HTTP/1.1 client over `TcpStream` for the OpenAI-compatible
//! backend: one request per connection, `Content-Length`, chunked and
//! read-to-close bodies, read incrementally so server-sent events stream.
//! Plain `http://` only (a local server, or a TLS-terminating proxy).

use crate::LlmError;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path prefix without a trailing slash (may be empty).
    pub path: String,
}

impl Url {
    /// Parses `url`; only `http://` is supported.
    pub fn parse(url: &str) -> Result<Url, LlmError> {
        let bad = |why: &str| LlmError::Request(format!("--llm-url {url:?}: {why}"));
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("https://") {
            return Err(bad("https is not supported; use http:// (a local server or a TLS-terminating proxy)"));
        } else {
            return Err(bad("expected http://host:port"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h.trim_matches(|c| c == '[' || c == ']'), p.parse().map_err(|_| bad("bad port"))?)
            }
            _ => (authority, 80),
        };
        Ok(Url { host: host.to_string(), port, path: path.to_string() })
    }
}

/// The status and body of an answer.
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body, decoded from its transfer encoding.
    pub body: BufReader<Body>,
}

impl Response {
    /// Reads the whole body as text (at most 16 MiB).
    pub fn text(mut self) -> Result<String, LlmError> {
        let mut v = Vec::new();
        (&mut self.body).take(16 << 20).read_to_end(&mut v).map_err(io_err)?;
        Ok(String::from_utf8_lossy(&v).into_owned())
    }
}

fn io_err(e: std::io::Error) -> LlmError {
    LlmError::Backend(format!("reading the answer: {e}"))
}

enum Mode {
    Length(u64),
    Chunked { left: u64, done: bool },
    Close,
}

/// A response body being read from the connection.
pub struct Body {
    conn: BufReader<TcpStream>,
    mode: Mode,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.mode {
            Mode::Close => self.conn.read(buf),
            Mode::Length(0) => Ok(0),
            Mode::Length(left) => {
                let n = (*left).min(buf.len() as u64) as usize;
                let got = self.conn.read(&mut buf[..n])?;
                *left -= got as u64;
                Ok(got)
            }
            Mode::Chunked { done: true, .. } => Ok(0),
            Mode::Chunked { left, done } => {
                if *left == 0 {
                    let mut line = String::new();
                    self.conn.read_line(&mut line)?;
                    if line.trim().is_empty() {
                        // The CRLF that ends the previous chunk.
                        line.clear();
                        self.conn.read_line(&mut line)?;
                    }
                    let size = line.trim().split(';').next().unwrap_or("");
                    let size = u64::from_str_radix(size, 16).map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad chunk size {line:?}"))
                    })?;
                    if size == 0 {
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                }
                let n = (*left).min(buf.len() as u64) as usize;
                let got = self.conn.read(&mut buf[..n])?;
                if got == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                *left -= got as u64;
                Ok(got)
            }
        }
    }
}

/// Sends one request and reads the status line and headers.
pub fn request(
    method: &str,
    url: &Url,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, LlmError> {
    let target = format!("{}:{}", url.host, url.port);
    let addrs: Vec<_> =
        target.to_socket_addrs().map_err(|e| LlmError::Backend(format!("cannot resolve {target}: {e}")))?.collect();
    let mut last = None;
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, Duration::from_secs(10).min(timeout)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(stream) = stream else {
        let why = last.map(|e| e.to_string()).unwrap_or_else(|| "no address".into());
        return Err(LlmError::Backend(format!("cannot connect to http://{target}: {why}")));
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.set_nodelay(true);
    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nUser-Agent: magicfs\r\n",
        url.path, url.host, url.port
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let send_err = |e: std::io::Error| LlmError::Backend(format!("sending to http://{target}: {e}"));
    let mut w = &stream;
    w.write_all(head.as_bytes()).map_err(send_err)?;
    if let Some(b) = body {
        w.write_all(b).map_err(send_err)?;
    }
    let mut conn = BufReader::new(stream);
    let mut line = String::new();
    conn.read_line(&mut line).map_err(io_err)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| LlmError::Backend(format!("http://{target} did not answer HTTP (status line {line:?})")))?;
    let mut hdrs = Vec::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).map_err(io_err)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            hdrs.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |k: &str| hdrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mode = if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        Mode::Chunked { left: 0, done: false }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse().ok()) {
        Mode::Length(n)
    } else {
        Mode::Close
    };
    Ok(Response { status, body: BufReader::new(Body { conn, mode }) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Url::parse("http://127.0.0.1:8080/v1/").unwrap(),
            Url { host: "127.0.0.1".into(), port: 8080, path: "/v1".into() }
        );
        assert_eq!(Url::parse("http://localhost").unwrap().port, 80);
        assert!(Url::parse("https://api.example.com").unwrap_err().to_string().contains("https"));
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("http://h:notaport").is_err());
    }
}
