//! Which hosts remote reads may reach.
//!
//! An [`Allowlist`] holds entries: `loopback` (127.0.0.0/8, ::1 and the name
//! `localhost`), an IP address, a CIDR block (`10.0.0.0/8`), a host name
//! (`data.example.org`), a domain wildcard (`*.example.org`), or `*` (any
//! public address). The default is loopback only.
//!
//! A URL's host must match an entry. A name is resolved here, once, and the
//! connection goes to an address that was checked, so a name cannot be made
//! to point elsewhere between the check and the connection. Addresses that
//! are never reached unless an IP or CIDR entry names them exactly:
//! link-local (169.254.0.0/16, fe80::/10, where cloud metadata services
//! answer), unspecified (0.0.0.0, ::), multicast and broadcast.

use crate::error::{RemoteError, RemoteResult};
use crate::url::HttpUrl;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Loopback,
    Any,
    Net(IpAddr, u8),
    Name(String),
    Suffix(String),
}

/// The hosts remote reads may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

impl Default for Allowlist {
    fn default() -> Allowlist {
        Allowlist::loopback()
    }
}

impl Allowlist {
    /// Loopback only (the default).
    pub fn loopback() -> Allowlist {
        Allowlist { entries: vec![Entry::Loopback] }
    }

    /// Nothing: every remote read is refused.
    pub fn none() -> Allowlist {
        Allowlist { entries: Vec::new() }
    }

    /// Any address but the never-reached ones (for endpoints the user named).
    pub fn any() -> Allowlist {
        Allowlist { entries: vec![Entry::Loopback, Entry::Any] }
    }

    /// Loopback plus `extra` entries, each as described in the module docs; an
    /// entry `none` clears the list (so `--allow-host none` turns remote reads off).
    pub fn with(extra: &[String]) -> RemoteResult<Allowlist> {
        let mut list = Allowlist::loopback();
        for text in extra.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
            if text.eq_ignore_ascii_case("none") {
                list.entries.clear();
            } else {
                list.entries.push(parse_entry(text)?);
            }
        }
        Ok(list)
    }

    /// True when nothing at all may be reached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks `url`'s host and resolves it: the addresses that may be
    /// connected to, or why none may.
    pub fn resolve(&self, url: &HttpUrl) -> RemoteResult<Vec<SocketAddr>> {
        let host = url.host.as_str();
        let refused = |why: String| {
            RemoteError::NotAllowed(format!(
                "{}: {why}; remote hosts must be on the allowlist (default: loopback only), extend it with --allow-host HOST or MAGICFS_ALLOW_HOSTS",
                url.origin()
            ))
        };
        if self.entries.is_empty() {
            return Err(refused("remote sources are turned off here".into()));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return if self.ip_allowed(ip, false) {
                Ok(vec![SocketAddr::new(ip, url.port)])
            } else {
                Err(refused(format!("the address {ip} is not on the allowlist")))
            };
        }
        // A listed name allows whatever public addresses it resolves to;
        // `localhost` (through `loopback`) allows only loopback addresses.
        let by_name = self.name_allowed(host);
        let localhost = host == "localhost" && self.entries.contains(&Entry::Loopback);
        if !by_name && !localhost && !self.entries.iter().any(|e| matches!(e, Entry::Net(..) | Entry::Any)) {
            return Err(refused(format!("the host {host} is not on the allowlist")));
        }
        let addrs: Vec<SocketAddr> = (host, url.port)
            .to_socket_addrs()
            .map_err(|e| RemoteError::Connect(format!("{}: cannot resolve {host}: {e}", url.origin())))?
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
            Entry::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()) && host.ends_with(&format!(".{s}")),
            Entry::Loopback | Entry::Any | Entry::Net(..) => false,
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

fn parse_entry(text: &str) -> RemoteResult<Entry> {
    let lower = text.to_ascii_lowercase();
    let bad = |why: &str| {
        RemoteError::Config(format!(
            "allowlist entry {text:?}: {why}; give loopback, an address (10.0.0.5), a block (10.0.0.0/8), a host name, *.domain or *"
        ))
    };
    Ok(match lower.as_str() {
        "loopback" | "localhost" => Entry::Loopback,
        "*" => Entry::Any,
        _ => {
            if let Some((addr, bits)) = lower.split_once('/') {
                let ip: IpAddr = addr.parse().map_err(|_| bad("not an IP address before /"))?;
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

    #[test]
    fn default_is_loopback_only() {
        let a = Allowlist::default();
        assert_eq!(a.resolve(&url("http://127.0.0.1:5/")).unwrap(), vec!["127.0.0.1:5".parse().unwrap()]);
        assert!(a.resolve(&url("http://127.9.9.9:5/")).is_ok());
        assert!(a.resolve(&url("http://[::1]:5/")).is_ok());
        assert!(a.resolve(&url("http://localhost:5/")).unwrap().iter().all(|s| s.ip().is_loopback()));
        for off in ["http://10.0.0.1/", "http://169.254.169.254/", "http://example.com/", "http://[fe80::1]/"] {
            let e = a.resolve(&url(off)).unwrap_err();
            assert!(matches!(e, RemoteError::NotAllowed(_)), "{off}");
            assert!(e.to_string().contains("allowlist"), "{e}");
        }
    }

    #[test]
    fn entries_extend_it() {
        let a = Allowlist::with(&["10.0.0.0/8, data.example.org".into()]).unwrap();
        assert!(a.resolve(&url("http://10.1.2.3/")).is_ok());
        assert!(a.resolve(&url("http://11.1.2.3/")).is_err());
        assert!(a.name_allowed("data.example.org") && !a.name_allowed("evil.org"));
        let w = Allowlist::with(&["*.example.org".into()]).unwrap();
        assert!(w.name_allowed("a.example.org") && !w.name_allowed("example.org") && !w.name_allowed("aexample.org"));
        // Link-local is never reached through a name or `*`, only through an exact entry.
        assert!(!Allowlist::any().ip_allowed("169.254.169.254".parse().unwrap(), true));
        assert!(!Allowlist::any().ip_allowed("::ffff:169.254.169.254".parse().unwrap(), true));
        assert!(!Allowlist::any().ip_allowed("fe80::1".parse().unwrap(), true));
        assert!(Allowlist::any().ip_allowed("93.184.216.34".parse().unwrap(), false));
        let exact = Allowlist::with(&["169.254.10.0/24".into()]).unwrap();
        assert!(exact.ip_allowed("169.254.10.7".parse().unwrap(), false));
        let none = Allowlist::with(&["none".into()]).unwrap();
        assert!(none.is_empty() && none.resolve(&url("http://127.0.0.1/")).is_err());
        for bad in ["10.0.0.0/40", "a b", "*.", "1.2.3.4/x"] {
            assert!(Allowlist::with(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
