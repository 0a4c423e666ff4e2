//! How the client's connections are made: ureq's connector chain (CONNECT
//! proxy, TCP, rustls) with two additions — a resolver that asks the
//! [`Allowlist`] (so the address connected to is the one that was checked)
//! and a transport that counts the bytes crossing the socket.

use crate::allow::Allowlist;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, NextTimeout, RustlsConnector, TcpConnector,
    Transport,
};

/// Resolves through the allowlist. The proxy named in the environment is
/// trusted and resolved as usual; every other host is checked, and only the
/// addresses the list passes are returned (with a proxy too: the proxy is
/// asked to `CONNECT` to the checked address).
#[derive(Debug)]
pub(crate) struct Pinned {
    pub(crate) allow: Allowlist,
}

impl Resolver for Pinned {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = uri.host().ok_or_else(|| ureq::Error::BadUri(format!("{uri}: no host")))?;
        if let Some(p) = config.proxy() {
            if p.host().eq_ignore_ascii_case(host) && p.port() == port {
                return DefaultResolver::default().resolve(uri, config, timeout);
            }
        }
        let origin =
            format!("{}://{}", uri.scheme_str().unwrap_or("http"), uri.authority().map_or(host, |a| a.as_str()));
        let addrs = self.allow.resolve_host(host, port, &origin).map_err(|e| ureq::Error::Other(Box::new(e)))?;
        let mut out = self.empty();
        for a in addrs.into_iter().take(16) {
            out.push(a);
        }
        Ok(out)
    }
}

/// The connector chain: a CONNECT tunnel to the pinned address when a proxy
/// applies, else TCP; byte counting on the socket; TLS for `https://`.
/// `tunnel` is the agent's configuration with a proxy that does not resolve
/// targets (see [`PinnedTunnel`]).
pub(crate) fn chain(wire: Arc<AtomicU64>, tunnel: Config) -> impl Connector {
    ().chain(PinnedTunnel { tunnel })
        .chain(TcpConnector::default())
        .chain(Counting(wire))
        .chain(RustlsConnector::default())
}

/// Asks the proxy to `CONNECT` to the address [`Pinned`] checked (ureq's
/// own `resolve_target` writes that address with its port twice, which no
/// proxy accepts). The target is handed to ureq's [`ConnectProxyConnector`]
/// as a URI whose host is the checked address, under `tunnel`, a
/// configuration whose proxy takes its target as given. TLS above the
/// tunnel still verifies the certificate against the URL's own name.
#[derive(Debug)]
pub(crate) struct PinnedTunnel {
    tunnel: Config,
}

impl<In: Transport> Connector<In> for PinnedTunnel {
    type Out = <ConnectProxyConnector as Connector<In>>::Out;

    fn connect(&self, details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        if chained.is_some() {
            return ConnectProxyConnector::default().connect(details, chained);
        }
        let Some(proxy) = details.config.proxy() else {
            return Ok(None);
        };
        if proxy.is_no_proxy(details.uri) {
            return Ok(None);
        }
        let Some(addr) = details.addrs.first() else {
            return Err(ureq::Error::ConnectProxyFailed("no checked address to ask the proxy for".into()));
        };
        let scheme = details.uri.scheme_str().unwrap_or("http");
        let target: Uri =
            format!("{scheme}://{addr}/").parse().map_err(|e| ureq::Error::BadUri(format!("{addr}: {e}")))?;
        let pinned = ConnectionDetails {
            uri: &target,
            addrs: details.addrs.clone(),
            config: &self.tunnel,
            request_level: details.request_level,
            resolver: details.resolver,
            now: details.now,
            timeout: details.timeout,
            current_time: details.current_time.clone(),
            run_connector: details.run_connector.clone(),
            register_shutdown: details.register_shutdown.clone(),
        };
        ConnectProxyConnector::default().connect(&pinned, None)
    }
}

/// Wraps the socket of a direct connection (or of one to a proxy) in a
/// [`Counted`] transport. A tunnel through a proxy was counted when its
/// connection to the proxy was made, so it passes as it is.
#[derive(Debug)]
pub(crate) struct Counting(Arc<AtomicU64>);

impl<In: Transport> Connector<In> for Counting {
    type Out = Either<In, Counted<In>>;

    fn connect(&self, details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        let tunnelled = details.config.proxy().is_some_and(|p| !p.is_no_proxy(details.uri));
        Ok(Some(if tunnelled {
            Either::A(transport)
        } else {
            Either::B(Counted { inner: transport, wire: self.0.clone() })
        }))
    }
}

/// A transport that adds the bytes it sends and receives to a counter.
#[derive(Debug)]
pub(crate) struct Counted<T> {
    inner: T,
    wire: Arc<AtomicU64>,
}

impl<T: Transport> Transport for Counted<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.inner.transmit_output(amount, timeout)?;
        self.wire.fetch_add(amount as u64, Ordering::Relaxed);
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let before = self.inner.buffers().input().len();
        let progress = self.inner.await_input(timeout)?;
        let after = self.inner.buffers().input().len();
        self.wire.fetch_add(after.saturating_sub(before) as u64, Ordering::Relaxed);
        Ok(progress)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}
