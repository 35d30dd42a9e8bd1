//! Who is asking: the client's address, for per-address rate limits.
//!
//! It is the connection's peer address, unless the peer is a trusted proxy
//! (`TRUSTED_PROXIES`; loopback by default, where the all-in-one's web
//! client and a local nginx sit): then `X-Forwarded-For` is read from the
//! right, skipping trusted proxies, and the first address that is not one
//! is the client. A client can put anything at the left of that header, so
//! nothing left of the last untrusted hop is believed.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

/// The header proxies append the address they received a request from to.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address, resolved once per request by the server
/// (`platform::app::serve`) and read by handlers as an extractor. Absent
/// (a router called without the server): the unspecified address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The key a per-address limit counts under: IPv4 addresses as they
    /// are, IPv6 addresses by their /64 network (one subscriber usually
    /// holds a whole /64 and can hop between its addresses at will).
    pub fn limit_key(self) -> IpAddr {
        match self.0 {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let network = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(Ipv6Addr::from(network))
                }
            },
            v4 @ IpAddr::V4(_) => v4,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr(IpAddr::from([0, 0, 0, 0]))))
    }
}

/// One network: an address and how many of its leading bits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("`{text}` is not an IP address or network (e.g. 10.0.0.0/8)");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = canonical(address.parse::<IpAddr>().map_err(|_| invalid())?);
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(invalid)?,
            None => bits,
        };
        Ok(Self { address, prefix })
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as the IPv4 they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`: a
/// comma-separated list of addresses and networks; empty: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[Network]>);

impl Default for TrustedProxies {
    /// Loopback: a proxy on the same machine (the all-in-one's web client,
    /// a local nginx).
    fn default() -> Self {
        DEFAULT_TRUSTED_PROXIES.parse().unwrap_or_else(|_| Self(Arc::new([])))
    }
}

/// The default of `TRUSTED_PROXIES`.
pub const DEFAULT_TRUSTED_PROXIES: &str = "127.0.0.0/8,::1";

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let networks = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Network>, _>>()?;
        Ok(Self(networks.into()))
    }
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return ClientAddr(client);
        }
        let hops = headers
            .get_all(FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            match parse_hop(hop) {
                Some(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                // Garbage: whoever wrote it is the client we know of.
                None => break,
            }
        }
        ClientAddr(client)
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|socket| socket.ip()))
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append(FORWARDED_FOR, value.parse().expect("header value"));
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let proxies = TrustedProxies::default();
        let client = proxies.client(ip("203.0.113.9"), &headers(&["198.51.100.1"]));
        assert_eq!(client, ClientAddr(ip("203.0.113.9")));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let proxies: TrustedProxies = "127.0.0.0/8, 10.0.0.0/8".parse().expect("proxies");
        // The client forged the left entry; the ingress (10.1.2.3) appended
        // the real client; the web client (loopback) appended the ingress.
        let forwarded = headers(&["6.6.6.6, 203.0.113.9", "10.1.2.3"]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &forwarded), ClientAddr(ip("203.0.113.9")));
        // No header: the proxy itself.
        assert_eq!(proxies.client(ip("10.1.2.3"), &HeaderMap::new()), ClientAddr(ip("10.1.2.3")));
        // Garbage stops the walk at the last hop that could be read.
        let garbage = headers(&["203.0.113.9, not-an-ip, 10.1.2.3"]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &garbage), ClientAddr(ip("10.1.2.3")));
        // Ports and IPv6 brackets are read.
        let ported = headers(&["[2001:db8::1]:443"]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &ported), ClientAddr(ip("2001:db8::1")));
    }

    #[test]
    fn no_trusted_proxies_means_the_peer_always() {
        let proxies: TrustedProxies = "".parse().expect("empty");
        assert_eq!(
            proxies.client(ip("127.0.0.1"), &headers(&["203.0.113.9"])),
            ClientAddr(ip("127.0.0.1"))
        );
    }

    #[test]
    fn networks_are_parsed_or_refused_clearly() {
        let proxies: TrustedProxies = "192.168.0.0/16,::1,fd00::/8".parse().expect("proxies");
        assert!(proxies.trusts(ip("192.168.44.3")));
        assert!(proxies.trusts(ip("::ffff:192.168.1.1")), "IPv4-mapped IPv6");
        assert!(proxies.trusts(ip("fd12::7")));
        assert!(!proxies.trusts(ip("192.169.0.1")));
        assert!(!proxies.trusts(ip("::2")));
        let all: TrustedProxies = "0.0.0.0/0".parse().expect("everything");
        assert!(all.trusts(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x", "::1/129"] {
            let error = bad.parse::<TrustedProxies>().expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_network() {
        let a = ClientAddr(ip("2001:db8:1:2:aaaa::1")).limit_key();
        let b = ClientAddr(ip("2001:db8:1:2:bbbb::2")).limit_key();
        let c = ClientAddr(ip("2001:db8:1:3::1")).limit_key();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(ClientAddr(ip("::ffff:1.2.3.4")).limit_key(), ip("1.2.3.4"));
    }
}
