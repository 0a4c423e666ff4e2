//! A small blocking HTTP/1.1 client: one connection per request
//! (`Connection: close`), addresses checked against an [`Allowlist`] before
//! connecting, redirects followed only within the same origin, and every byte
//! sent and received counted.

use crate::allow::Allowlist;
use crate::error::{RemoteError, RemoteResult};
use crate::url::HttpUrl;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most redirects followed (within one origin) for one request.
const MAX_REDIRECTS: usize = 5;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 << 10;

/// The client.
#[derive(Clone, Debug)]
pub struct Client {
    /// Where requests may go.
    pub allow: Allowlist,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one read or write on the connection.
    pub io_timeout: Duration,
    wire: Arc<AtomicU64>,
}

impl Client {
    /// A client for hosts on `allow`, with 5 s to connect and 120 s per read.
    pub fn new(allow: Allowlist) -> Client {
        Client {
            allow,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(120),
            wire: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Bytes sent and received on the wire by this client and its clones
    /// (request and response heads included).
    pub fn wire_bytes(&self) -> u64 {
        self.wire.load(Ordering::Relaxed)
    }

    /// Sends one request and reads the answer's head. A redirect within the
    /// same origin is followed (a 303 becomes a GET); one to another origin is
    /// refused, whatever its address.
    pub fn request(
        &self,
        method: &str,
        url: &HttpUrl,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RemoteResult<Response> {
        let mut url = url.clone();
        let mut method = method.to_string();
        let mut body = body;
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send_once(&method, &url, headers, body)?;
            if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let Some(location) = response.header("location").map(str::to_string) else {
                return Ok(response);
            };
            let next = url.join(&location)?;
            if next.origin() != url.origin() {
                return Err(RemoteError::Redirect(format!(
                    "{url} redirects to {next}, another address; redirects are followed only within the same origin, so a source cannot send this client elsewhere"
                )));
            }
            if response.status == 303 {
                method = "GET".into();
                body = b"";
            }
            url = next;
        }
        Err(RemoteError::Redirect(format!("{url}: more than {MAX_REDIRECTS} redirects")))
    }

    fn send_once(&self, method: &str, url: &HttpUrl, headers: &[(&str, &str)], body: &[u8]) -> RemoteResult<Response> {
        let addrs = self.allow.resolve(url)?;
        let mut stream = self.connect(url, &addrs)?;
        let broken = |e: std::io::Error| RemoteError::Connect(format!("{method} {url}: {e}"));
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: magicfs/{}\r\n",
            url.target,
            url.authority(),
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in headers {
            if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
                return Err(RemoteError::BadUrl(format!("header {k:?} holds a line break")));
            }
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).map_err(broken)?;
        stream.write_all(body).map_err(broken)?;
        self.wire.fetch_add((head.len() + body.len()) as u64, Ordering::Relaxed);
        let reader = Counting { inner: stream, wire: self.wire.clone() };
        Response::read_head(BufReader::with_capacity(256 << 10, reader), url.clone(), method == "HEAD")
    }

    fn connect(&self, url: &HttpUrl, addrs: &[SocketAddr]) -> RemoteResult<TcpStream> {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(addr, self.connect_timeout) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    s.set_read_timeout(Some(self.io_timeout))
                        .and_then(|()| s.set_write_timeout(Some(self.io_timeout)))
                        .map_err(|e| RemoteError::Connect(format!("{url}: {e}")))?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(RemoteError::Connect(format!(
            "cannot connect to {}: {}",
            url.origin(),
            last.map_or_else(|| "no address".to_string(), |e| e.to_string())
        )))
    }
}

/// A stream that counts the bytes read from it.
struct Counting {
    inner: TcpStream,
    wire: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.wire.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// How the body's end is known.
#[derive(Clone, Copy, Debug)]
enum Framing {
    Length(u64),
    Chunked,
    Close,
}

/// An answer whose head has been read; the body is read by one of the
/// `read_*` methods.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower-case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The URL that answered.
    pub url: HttpUrl,
    reader: BufReader<Counting>,
    framing: Framing,
}

impl Response {
    fn read_head(mut reader: BufReader<Counting>, url: HttpUrl, head_only: bool) -> RemoteResult<Response> {
        let broken = |what: String| RemoteError::Protocol(format!("{url}: {what}"));
        let mut lines = Vec::new();
        let mut total = 0;
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| RemoteError::Connect(format!("{url}: reading the answer: {e}")))?;
            if n == 0 {
                return Err(broken("the connection closed before the answer's head ended".into()));
            }
            total += n;
            if total > MAX_HEAD {
                return Err(broken("the answer's head is too long".into()));
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            if line.is_empty() {
                if lines.is_empty() {
                    continue;
                }
                break;
            }
            lines.push(line);
        }
        let status_line = &lines[0];
        let status: u16 = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| broken(format!("not an HTTP/1.x status line: {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines[1..]
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let framing = if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            Framing::Chunked
        } else if let Some(len) = get("content-length") {
            Framing::Length(len.parse().map_err(|_| broken(format!("bad Content-Length {len:?}")))?)
        } else {
            Framing::Close
        };
        if status == 100 {
            return Response::read_head(reader, url, head_only);
        }
        Ok(Response { status, headers, url, reader, framing })
    }

    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body length the head announces, if it does.
    pub fn content_length(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }

    /// Reads the whole body, refusing one longer than `limit` bytes.
    pub fn read_body(mut self, limit: usize) -> RemoteResult<Vec<u8>> {
        let url = self.url.clone();
        let too_long = || RemoteError::Protocol(format!("{url}: the answer is longer than {limit} bytes"));
        let io = |e: std::io::Error| RemoteError::Connect(format!("{url}: reading the answer: {e}"));
        let mut out = Vec::new();
        match self.framing {
            Framing::Length(n) => {
                if n > limit as u64 {
                    return Err(too_long());
                }
                out.resize(n as usize, 0);
                self.reader.read_exact(&mut out).map_err(io)?;
            }
            Framing::Close => {
                (&mut self.reader).take(limit as u64 + 1).read_to_end(&mut out).map_err(io)?;
                if out.len() > limit {
                    return Err(too_long());
                }
            }
            Framing::Chunked => loop {
                let mut line = String::new();
                self.reader.read_line(&mut line).map_err(io)?;
                let size_text = line.trim().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| RemoteError::Protocol(format!("{url}: bad chunk size {size_text:?}")))?;
                if size == 0 {
                    break;
                }
                if out.len() + size > limit {
                    return Err(too_long());
                }
                let at = out.len();
                out.resize(at + size, 0);
                self.reader.read_exact(&mut out[at..]).map_err(io)?;
                let mut crlf = [0u8; 2];
                self.reader.read_exact(&mut crlf).map_err(io)?;
            },
        }
        Ok(out)
    }

    /// Reads a body of exactly `buf.len()` bytes into `buf`.
    pub fn read_exact_into(mut self, buf: &mut [u8]) -> RemoteResult<()> {
        let url = self.url.clone();
        match self.framing {
            Framing::Length(n) if n == buf.len() as u64 => self
                .reader
                .read_exact(buf)
                .map_err(|e| RemoteError::Connect(format!("{url}: the answer broke off: {e}"))),
            Framing::Length(n) => {
                Err(RemoteError::Protocol(format!("{url}: answered {n} bytes where {} were asked for", buf.len())))
            }
            _ => {
                let body = self.read_body(buf.len())?;
                if body.len() != buf.len() {
                    return Err(RemoteError::Protocol(format!(
                        "{url}: answered {} bytes where {} were asked for",
                        body.len(),
                        buf.len()
                    )));
                }
                buf.copy_from_slice(&body);
                Ok(())
            }
        }
    }

    /// Passes a 2xx answer through; turns any other into [`RemoteError::Origin`]
    /// carrying the origin's `{"error":…}` message when it sent one.
    pub fn success(self, what: &str) -> RemoteResult<Response> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let status = self.status;
        let url = self.url.to_string();
        let text = self.read_body(64 << 10).unwrap_or_default();
        let said = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&text[..text.len().min(300)]).trim().to_string());
        Err(RemoteError::Origin { status, message: format!("{what}: {url} answered {status}: {said}") })
    }

    /// Reads a JSON body of at most `limit` bytes.
    pub fn json<T: serde::de::DeserializeOwned>(self, limit: usize) -> RemoteResult<T> {
        let url = self.url.clone();
        let body = self.read_body(limit)?;
        serde_json::from_slice(&body)
            .map_err(|e| RemoteError::Protocol(format!("{url}: the answer is not the JSON expected: {e}")))
    }
}
