//! Which hosts requests may reach.
//!
//! An [`Allowlist`] holds entries: `loopback` (127.0.0.0/8, ::1 and the name
//! `localhost`), `private` (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
//! 100.64.0.0/10, fc00::/7), an IP address, a CIDR block (`10.0.0.0/8`), a
//! host name (`data.example.org`), a domain wildcard (`*.example.org`), or
//! `*` (any public address).
//!
//! A URL's host must match an entry. A name is resolved here, once, and the
//! connection goes to an address that was checked (through a proxy too: the
//! proxy is asked to connect to that address), so a name cannot be made to
//! point elsewhere between the check and the connection. A name or `*`
//! reaches public addresses only: loopback and private addresses are reached
//! only when `loopback`, `private`, an address or a block names them, and
//! link-local (169.254.0.0/16, fe80::/10, where cloud metadata services
//! answer), unspecified, multicast and broadcast addresses only when an
//! address or block names them exactly.

use crate::error::{NetError, NetResult};
use crate::url::HttpUrl;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Loopback,
    Private,
    Any,
    Net(IpAddr, u8),
    Name(String),
    Suffix(String),
}

/// The hosts requests may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

/// What a refusal says about widening the list.
const HOW: &str = "extend it with --allow-host HOST or MAGICFS_ALLOW_HOSTS (loopback and private addresses are reached only when named: an address, a block, `loopback` or `private`)";

impl Allowlist {
    /// Loopback only.
    pub fn loopback() -> Allowlist {
        Allowlist { entries: vec![Entry::Loopback] }
    }

    /// Nothing: every request is refused.
    pub fn none() -> Allowlist {
        Allowlist { entries: Vec::new() }
    }

    /// Every address but link-local, unspecified, multicast and broadcast:
    /// for hosts the user named (peers, endpoints, a language-model server).
    pub fn any() -> Allowlist {
        Allowlist { entries: vec![Entry::Loopback, Entry::Private, Entry::Any] }
    }

    /// Exactly `entries`, each as described in the module docs (items may be
    /// separated by commas); `none` clears what came before.
    pub fn parse(entries: &[String]) -> NetResult<Allowlist> {
        Allowlist::none().extended(entries)
    }

    /// Loopback plus `extra` entries (`none` clears the list).
    pub fn with(extra: &[String]) -> NetResult<Allowlist> {
        Allowlist::loopback().extended(extra)
    }

    fn extended(mut self, extra: &[String]) -> NetResult<Allowlist> {
        for text in extra.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
            if text.eq_ignore_ascii_case("none") {
                self.entries.clear();
            } else {
                let entry = parse_entry(text)?;
                if !self.entries.contains(&entry) {
                    self.entries.push(entry);
                }
            }
        }
        Ok(self)
    }

    /// True when nothing at all may be reached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks `url`'s host and resolves it: the addresses that may be
    /// connected to, or why none may.
    pub fn resolve(&self, url: &HttpUrl) -> NetResult<Vec<SocketAddr>> {
        self.resolve_host(&url.host(), url.port(), &url.origin())
    }

    /// [`Allowlist::resolve`] for a host and port; `origin` names them in errors.
    pub fn resolve_host(&self, host: &str, port: u16, origin: &str) -> NetResult<Vec<SocketAddr>> {
        let refused = |why: String| NetError::NotAllowed(format!("{origin}: {why}; {HOW}"));
        if self.entries.is_empty() {
            return Err(NetError::NotAllowed(format!(
                "{origin}: the allowlist is empty, so remote sources are turned off here; name the hosts to read with --allow-host HOST or MAGICFS_ALLOW_HOSTS"
            )));
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return if self.ip_allowed(ip, false) {
                Ok(vec![SocketAddr::new(ip, port)])
            } else {
                Err(refused(format!("the address {ip} is not on the allowlist")))
            };
        }
        let host = host.to_ascii_lowercase();
        // A listed name allows the public addresses it resolves to;
        // `localhost` (through `loopback`) allows loopback addresses.
        let by_name = self.name_allowed(&host);
        let localhost = host == "localhost" && self.entries.contains(&Entry::Loopback);
        let by_address = self.entries.iter().any(|e| matches!(e, Entry::Net(..) | Entry::Any | Entry::Private));
        if !by_name && !localhost && !by_address {
            return Err(refused(format!("the host {host} is not on the allowlist")));
        }
        let addrs: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| NetError::Connect(format!("{origin}: cannot resolve {host}: {e}")))?
            .collect();
        let ok: Vec<SocketAddr> = addrs.iter().copied().filter(|a| self.ip_allowed(a.ip(), by_name)).collect();
        if ok.is_empty() {
            let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            return Err(refused(format!("{host} resolves to {}, which is not allowed", shown.join(", "))));
        }
        Ok(ok)
    }

    fn name_allowed(&self, host: &str) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Name(n) => n == host,
            Entry::Suffix(s) => host.len() > s.len() && host.ends_with(&format!(".{s}")),
            Entry::Loopback | Entry::Private | Entry::Any | Entry::Net(..) => false,
        })
    }

    /// Whether `ip` may be reached; `by_name` when its host name was allowed.
    fn ip_allowed(&self, ip: IpAddr, by_name: bool) -> bool {
        let ip = canonical(ip);
        if self.entries.iter().any(|e| matches!(e, Entry::Net(net, bits) if in_net(ip, *net, *bits))) {
            return true;
        }
        if never_reached(ip) {
            return false;
        }
        if ip.is_loopback() {
            return self.entries.contains(&Entry::Loopback);
        }
        if is_private(ip) {
            return self.entries.contains(&Entry::Private);
        }
        by_name || self.entries.contains(&Entry::Any)
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Link-local, unspecified, multicast and broadcast addresses.
fn never_reached(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6.is_unspecified() || v6.is_multicast(),
    }
}

/// Addresses of private networks: RFC 1918, shared address space
/// (100.64.0.0/10) and unique local IPv6 (fc00::/7).
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || in_net(ip, IpAddr::V4([100, 64, 0, 0].into()), 10),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits.min(32))) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits.min(128))) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn parse_entry(text: &str) -> NetResult<Entry> {
    let lower = text.to_ascii_lowercase();
    let bad = |why: &str| {
        NetError::Config(format!(
            "allowlist entry {text:?}: {why}; give loopback, private, an address (10.0.0.5), a block (10.0.0.0/8), a host name, *.domain or *"
        ))
    };
    Ok(match lower.as_str() {
        "loopback" | "localhost" => Entry::Loopback,
        "private" => Entry::Private,
        "*" => Entry::Any,
        _ => {
            if let Some((addr, bits)) = lower.split_once('/') {
                let ip: IpAddr =
                    addr.trim_matches(['[', ']']).parse().map_err(|_| bad("not an IP address before /"))?;
                let bits: u8 = bits.parse().map_err(|_| bad("the prefix length is not a number"))?;
                if bits > if ip.is_ipv4() { 32 } else { 128 } {
                    return Err(bad("the prefix length is too long"));
                }
                Entry::Net(ip, bits)
            } else if let Ok(ip) = lower.trim_matches(['[', ']']).parse::<IpAddr>() {
                Entry::Net(ip, if ip.is_ipv4() { 32 } else { 128 })
            } else if let Some(domain) = lower.strip_prefix("*.") {
                if domain.is_empty() || !valid_name(domain) {
                    return Err(bad("not a domain after *."));
                }
                Entry::Suffix(domain.to_string())
            } else if valid_name(&lower) {
                Entry::Name(lower)
            } else {
                return Err(bad("not a host name"));
            }
        }
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> HttpUrl {
        HttpUrl::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_list() {
        let a = Allowlist::loopback();
        assert_eq!(a.resolve(&url("http://127.0.0.1:5/")).unwrap(), vec!["127.0.0.1:5".parse().unwrap()]);
        assert!(a.resolve(&url("http://127.9.9.9:5/")).is_ok());
        assert!(a.resolve(&url("http://[::1]:5/")).is_ok());
        assert!(a.resolve(&url("https://localhost:5/")).unwrap().iter().all(|s| s.ip().is_loopback()));
        for off in ["http://10.0.0.1/", "http://169.254.169.254/", "http://example.com/", "http://[fe80::1]/"] {
            let e = a.resolve(&url(off)).unwrap_err();
            assert!(matches!(e, NetError::NotAllowed(_)), "{off}");
            assert!(e.to_string().contains("allowlist"), "{e}");
        }
    }

    #[test]
    fn empty_list_refuses_everything() {
        let none = Allowlist::parse(&[]).unwrap();
        assert!(none.is_empty());
        let e = none.resolve(&url("http://127.0.0.1:9/")).unwrap_err();
        assert!(e.to_string().contains("turned off"), "{e}");
        assert!(Allowlist::with(&["none".into()]).unwrap().is_empty());
    }

    #[test]
    fn loopback_and_private_only_when_named() {
        let star = Allowlist::parse(&["*".into()]).unwrap();
        assert!(star.ip_allowed(ip("93.184.216.34"), false));
        for hidden in ["127.0.0.1", "::1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "100.64.0.1", "fd00::1"] {
            assert!(!star.ip_allowed(ip(hidden), false), "{hidden}");
            assert!(!star.ip_allowed(ip(hidden), true), "{hidden} through a name");
        }
        let named = Allowlist::parse(&["10.0.0.0/8, private, loopback".into()]).unwrap();
        assert!(named.ip_allowed(ip("10.1.2.3"), false) && named.ip_allowed(ip("192.168.0.7"), false));
        assert!(named.ip_allowed(ip("127.0.0.1"), false) && !named.ip_allowed(ip("8.8.8.8"), false));
        let one = Allowlist::parse(&["127.0.0.1".into()]).unwrap();
        assert!(one.resolve(&url("http://127.0.0.1:7/")).is_ok());
        assert!(one.resolve(&url("http://127.0.0.2:7/")).is_err());
        assert!(Allowlist::any().ip_allowed(ip("10.9.9.9"), false));
    }

    #[test]
    fn names_and_never_reached_addresses() {
        let a = Allowlist::with(&["10.0.0.0/8, data.example.org".into()]).unwrap();
        assert!(a.resolve(&url("http://10.1.2.3/")).is_ok());
        assert!(a.resolve(&url("http://11.1.2.3/")).is_err());
        assert!(a.name_allowed("data.example.org") && !a.name_allowed("evil.org"));
        let w = Allowlist::with(&["*.example.org".into()]).unwrap();
        assert!(w.name_allowed("a.example.org") && !w.name_allowed("example.org") && !w.name_allowed("aexample.org"));
        // Link-local is never reached through a name or `*`, only through an exact entry.
        assert!(!Allowlist::any().ip_allowed(ip("169.254.169.254"), true));
        assert!(!Allowlist::any().ip_allowed(ip("::ffff:169.254.169.254"), true));
        assert!(!Allowlist::any().ip_allowed(ip("fe80::1"), true));
        assert!(!Allowlist::any().ip_allowed(ip("0.0.0.0"), true));
        let exact = Allowlist::with(&["169.254.10.0/24".into()]).unwrap();
        assert!(exact.ip_allowed(ip("169.254.10.7"), false));
        for bad in ["10.0.0.0/40", "a b", "*.", "1.2.3.4/x"] {
            assert!(Allowlist::with(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
