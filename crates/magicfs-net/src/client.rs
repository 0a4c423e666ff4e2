//! The client: ureq 3 agents over rustls (one for `http://`, one for
//! `https://`, each with the proxy the environment names for it), pooled
//! keep-alive connections, connect and per-read/write timeouts, redirects
//! followed only within one origin, answers read up to a limit, and every
//! byte on the wire counted.
//!
//! Why ureq rather than reqwest: every caller is a blocking thread (the
//! compute workers, the chat and generation workers, the CLI), so a blocking
//! client avoids a hidden runtime per client; ureq's resolver hook lets the
//! allowlist pin the address it checked, with or without a proxy.

use crate::allow::Allowlist;
use crate::connect::{chain, Pinned};
use crate::error::{NetError, NetResult};
use crate::url::HttpUrl;
use percent_encoding::percent_decode_str;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use ureq::http::{HeaderMap, Method, Request};
use ureq::{Agent, Body, Proxy, ProxyProtocol};

/// Most redirects followed (within one origin) for one request.
const MAX_REDIRECTS: usize = 5;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 << 10;

/// How long a client waits.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// To open a connection (TLS handshake included).
    pub connect: Duration,
    /// For one read or write on a connection to make progress.
    pub io: Duration,
}

impl Default for Timeouts {
    /// 10 s to connect, 120 s per read or write.
    fn default() -> Timeouts {
        Timeouts { connect: Duration::from_secs(10), io: Duration::from_secs(120) }
    }
}

/// A client for hosts on one allowlist. Clones share connections and the
/// byte counter.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    allow: Allowlist,
    timeouts: Timeouts,
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    wire: Arc<AtomicU64>,
    http: OnceLock<NetResult<Agent>>,
    https: OnceLock<NetResult<Agent>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("allow", &self.inner.allow).field("timeouts", &self.inner.timeouts).finish()
    }
}

impl Client {
    /// A client for hosts on `allow`, with the default [`Timeouts`].
    pub fn new(allow: Allowlist) -> Client {
        Client::with_timeouts(allow, Timeouts::default())
    }

    /// A client for hosts on `allow` with `timeouts`.
    pub fn with_timeouts(allow: Allowlist, timeouts: Timeouts) -> Client {
        Client::build(allow, timeouts, Vec::new())
    }

    /// A client that also trusts the CA certificates in `ca_file` (PEM),
    /// whatever the process-wide `--ca-file` says.
    pub fn with_ca_file(allow: Allowlist, timeouts: Timeouts, ca_file: &std::path::Path) -> NetResult<Client> {
        Ok(Client::build(allow, timeouts, crate::tls::read_ca_file(ca_file)?))
    }

    fn build(
        allow: Allowlist,
        timeouts: Timeouts,
        extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                allow,
                timeouts,
                extra_roots,
                wire: Arc::new(AtomicU64::new(0)),
                http: OnceLock::new(),
                https: OnceLock::new(),
            }),
        }
    }

    /// The hosts this client may reach.
    pub fn allowlist(&self) -> &Allowlist {
        &self.inner.allow
    }

    /// Bytes sent and received on the wire by this client and its clones
    /// (heads and TLS records included).
    pub fn wire_bytes(&self) -> u64 {
        self.inner.wire.load(Ordering::Relaxed)
    }

    /// The agent for `url`'s scheme, made on first use.
    fn agent(&self, https: bool) -> NetResult<&Agent> {
        let cell = if https { &self.inner.https } else { &self.inner.http };
        cell.get_or_init(|| make_agent(&self.inner, https)).as_ref().map_err(Clone::clone)
    }

    /// Sends one request and returns the answer with its head read. A
    /// redirect within the same origin is followed (a 303 becomes a GET);
    /// one to another origin is refused, whatever its address.
    pub fn request(&self, method: &str, url: &HttpUrl, headers: &[(&str, &str)], body: &[u8]) -> NetResult<Response> {
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
                return Err(NetError::Redirect(format!(
                    "{url} redirects to {next}, another address; redirects are followed only within the same origin, so a source cannot send this client elsewhere"
                )));
            }
            if response.status == 303 {
                method = "GET".into();
                body = b"";
            }
            url = next;
        }
        Err(NetError::Redirect(format!("{url}: more than {MAX_REDIRECTS} redirects")))
    }

    fn send_once(&self, method: &str, url: &HttpUrl, headers: &[(&str, &str)], body: &[u8]) -> NetResult<Response> {
        let agent = self.agent(url.is_https())?;
        let m = Method::from_bytes(method.as_bytes())
            .map_err(|_| NetError::BadUrl(format!("{method:?} is not an HTTP method")))?;
        let mut builder = Request::builder().method(m.clone()).uri(url.as_str());
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let sent = if m == Method::GET || m == Method::HEAD || (body.is_empty() && m == Method::DELETE) {
            let request = builder.body(()).map_err(|e| NetError::BadUrl(format!("{method} {url}: {e}")))?;
            agent.run(request)
        } else {
            let request = builder.body(body).map_err(|e| NetError::BadUrl(format!("{method} {url}: {e}")))?;
            agent.run(request)
        };
        let response = sent.map_err(|e| describe(e, method, url))?;
        let (parts, body) = response.into_parts();
        Ok(Response { status: parts.status.as_u16(), headers: parts.headers, url: url.clone(), body })
    }
}

/// One agent: its proxy, timeouts, pool and TLS roots.
fn make_agent(inner: &Inner, https: bool) -> NetResult<Agent> {
    let config = agent_config(inner, https, true)?;
    let tunnel = agent_config(inner, https, false)?;
    Ok(Agent::with_parts(config, chain(inner.wire.clone(), tunnel), Pinned { allow: inner.allow.clone() }))
}

/// An agent's configuration; `resolve_target` as the proxy is told (the
/// agent resolves and checks every target; see `connect::PinnedTunnel`).
fn agent_config(inner: &Inner, https: bool, resolve_target: bool) -> NetResult<ureq::config::Config> {
    let t = inner.timeouts;
    let mut config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .save_redirect_history(false)
        .user_agent(format!("magicfs/{}", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(t.connect))
        .timeout_per_read(Some(t.io))
        .timeout_per_write(Some(t.io))
        .max_idle_connections(64)
        .max_idle_connections_per_host(32)
        .max_response_header_size(MAX_HEAD)
        .input_buffer_size(256 << 10)
        .output_buffer_size(256 << 10)
        .proxy(env_proxy(https, resolve_target)?);
    if https {
        config = config.tls_config(crate::tls::client_config(&inner.extra_roots)?);
    }
    Ok(config.build())
}

/// The proxy the environment names for a scheme: `HTTPS_PROXY` or
/// `HTTP_PROXY` (or their lower-case forms), else `ALL_PROXY`, with the hosts
/// of `NO_PROXY` (`name`, `.name` and `*.name` each cover the name and its
/// subdomains; `*` covers every host) reached directly.
fn env_proxy(https: bool, resolve_target: bool) -> NetResult<Option<Proxy>> {
    let names: &[&str] = if https {
        &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    };
    let Some((name, text)) =
        names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
    else {
        return Ok(None);
    };
    let shown = without_credentials(&text);
    let bad = |why: &str| NetError::Config(format!("{name}={shown:?}: {why}"));
    let full = if text.contains("://") { text.clone() } else { format!("http://{text}") };
    let u = url::Url::parse(&full).map_err(|e| bad(&e.to_string()))?;
    let protocol = match u.scheme() {
        "http" => ProxyProtocol::Http,
        "https" => ProxyProtocol::Https,
        _ => return Err(bad("only http:// and https:// proxies are supported")),
    };
    let host = u.host_str().ok_or_else(|| bad("no host"))?;
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let mut b = Proxy::builder(protocol)
        .host(host.trim_start_matches('[').trim_end_matches(']'))
        .port(u.port_or_known_default().unwrap_or(80))
        .resolve_target(resolve_target);
    if !u.username().is_empty() {
        b = b.username(&decode(u.username()));
    }
    if let Some(p) = u.password() {
        b = b.password(&decode(p));
    }
    let no_proxy = std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")).unwrap_or_default();
    for entry in no_proxy.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // As curl reads it: `name` and `.name` both cover the name and its subdomains.
        let name = entry.trim_start_matches('*').trim_start_matches('.');
        if name.is_empty() {
            b = b.no_proxy(entry);
        } else {
            b = b.no_proxy(name).no_proxy(&format!(".{name}"));
        }
    }
    b.build().map(Some).map_err(|e| bad(&e.to_string()))
}

/// A proxy URL as it may be shown: any user name and password replaced by `…`.
fn without_credentials(text: &str) -> String {
    let (scheme, rest) = text.split_once("://").map_or(("", text), |(s, r)| (s, r));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let shown = match authority.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}{path}"),
        None => rest.to_string(),
    };
    if scheme.is_empty() {
        shown
    } else {
        format!("{scheme}://{shown}")
    }
}

/// Turns ureq's error into this layer's, saying what to do where it can.
fn describe(e: ureq::Error, method: &str, url: &HttpUrl) -> NetError {
    let origin = url.origin();
    match e {
        ureq::Error::Other(inner) => match inner.downcast::<NetError>() {
            Ok(net) => *net,
            Err(other) => NetError::Connect(format!("{method} {url}: {other}")),
        },
        ureq::Error::Io(io) => io_error(io, method, url),
        ureq::Error::Timeout(t) => NetError::Connect(format!("{method} {url}: timed out ({t})")),
        ureq::Error::HostNotFound => NetError::Connect(format!("cannot resolve the host of {origin}")),
        ureq::Error::ConnectionFailed => NetError::Connect(format!("cannot connect to {origin}")),
        ureq::Error::Rustls(e) => tls_error(&e, url),
        ureq::Error::Tls(m) => NetError::Tls(format!("{origin}: TLS failed: {m}")),
        ureq::Error::TlsRequired => NetError::Tls(format!("{origin}: the connection is not TLS")),
        ureq::Error::BodyExceedsLimit(n) => NetError::TooLarge(format!("{url}: the answer is longer than {n} bytes")),
        ureq::Error::LargeResponseHeader(..) => NetError::Protocol(format!("{url}: the answer's head is too long")),
        ureq::Error::Protocol(p) => NetError::Protocol(format!("{url}: not a well-formed HTTP answer: {p}")),
        ureq::Error::ConnectProxyFailed(m) => NetError::Connect(format!("{origin} through the proxy: {m}")),
        ureq::Error::InvalidProxyUrl => NetError::Config("the proxy URL in the environment cannot be used".into()),
        ureq::Error::BadUri(m) => NetError::BadUrl(format!("{url}: {m}")),
        other => NetError::Connect(format!("{method} {url}: {other}")),
    }
}

fn io_error(io: std::io::Error, method: &str, url: &HttpUrl) -> NetError {
    if let Some(e) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return tls_error(e, url);
    }
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => NetError::Connect(format!("cannot connect to {}: {io}", url.origin())),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            NetError::Connect(format!("{method} {url}: timed out ({io})"))
        }
        _ => NetError::Connect(format!("{method} {url}: {io}")),
    }
}

fn tls_error(e: &rustls::Error, url: &HttpUrl) -> NetError {
    use rustls::{CertificateError, Error as E};
    let origin = url.origin();
    let why = match e {
        E::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate is not signed by a trusted authority ({e}); if a private CA signed it, give the CA's certificate with --ca-file CA.pem (or MAGICFS_CA_FILE)"
        ),
        E::InvalidCertificate(CertificateError::NotValidForName)
        | E::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            format!("the server's certificate is not valid for the name {} ({e})", url.host())
        }
        E::InvalidCertificate(CertificateError::Expired) | E::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            format!("the server's certificate has expired ({e})")
        }
        E::InvalidCertificate(_) => format!("the server's certificate was refused ({e})"),
        E::InvalidMessage(_) => format!("the server does not speak TLS here ({e}); is it an http:// address?"),
        _ => format!("the TLS handshake failed ({e})"),
    };
    NetError::Tls(format!("{origin}: {why}"))
}

/// An answer whose head has been read; the body is read by one of the
/// consuming methods.
pub struct Response {
    /// The status code.
    pub status: u16,
    headers: HeaderMap,
    /// The URL that answered.
    pub url: HttpUrl,
    body: Body,
}

impl Response {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every header, in order (values that are not text are left out).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
    }

    /// The body length the head announces, if it does.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }

    /// Reads the whole body, refusing one longer than `limit` bytes.
    pub fn read_body(self, limit: usize) -> NetResult<Vec<u8>> {
        let url = self.url.clone();
        if self.content_length().is_some_and(|n| n > limit as u64) {
            return Err(NetError::TooLarge(format!("{url}: the answer is longer than {limit} bytes")));
        }
        self.body.into_with_config().limit(limit as u64).read_to_vec().map_err(|e| describe(e, "reading", &url))
    }

    /// Reads a body of exactly `buf.len()` bytes into `buf`.
    pub fn read_exact_into(self, buf: &mut [u8]) -> NetResult<()> {
        let url = self.url.clone();
        if let Some(n) = self.content_length() {
            if n != buf.len() as u64 {
                return Err(NetError::Protocol(format!(
                    "{url}: answered {n} bytes where {} were asked for",
                    buf.len()
                )));
            }
        }
        let mut reader = self.body.into_with_config().limit(buf.len() as u64 + 1).reader();
        reader.read_exact(buf).map_err(|e| describe(ureq::Error::from(e), "reading", &url))?;
        let mut extra = [0u8; 1];
        match reader.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err(NetError::Protocol(format!("{url}: answered more than the {} bytes asked for", buf.len()))),
            Err(e) => Err(describe(ureq::Error::from(e), "reading", &url)),
        }
    }

    /// The body as a reader of at most `limit` bytes, for answers that stream.
    pub fn into_reader(self, limit: u64) -> impl Read + Send {
        self.body.into_with_config().limit(limit).reader()
    }

    /// Passes a 2xx answer through; turns any other into [`NetError::Status`]
    /// carrying the peer's `{"error":…}` message when it sent one.
    pub fn success(self, what: &str) -> NetResult<Response> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let status = self.status;
        let url = self.url.to_string();
        let text = self.read_body(64 << 10).unwrap_or_default();
        let said = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                e.as_str().or_else(|| e.get("message").and_then(|m| m.as_str())).map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&text[..text.len().min(300)]).trim().to_string());
        Err(NetError::Status { status, message: format!("{what}: {url} answered {status}: {said}") })
    }

    /// Reads a JSON body of at most `limit` bytes.
    pub fn json<T: serde::de::DeserializeOwned>(self, limit: usize) -> NetResult<T> {
        let url = self.url.clone();
        let body = self.read_body(limit)?;
        serde_json::from_slice(&body)
            .map_err(|e| NetError::Protocol(format!("{url}: the answer is not the JSON expected: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn proxy_credentials_are_never_shown() {
        assert_eq!(without_credentials("http://u:secret@proxy:3128/x"), "http://…@proxy:3128/x");
        assert_eq!(without_credentials("u:p@w@proxy:3128"), "…@proxy:3128");
        assert_eq!(without_credentials("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(without_credentials("proxy"), "proxy");
    }
}
