//! CIDR networks for webhook source allow-lists (on `ipnet`), and the one rule for every URL
//! byocd calls or hands out ([`check_endpoint_url`]).

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;

use serde::{Serialize, Serializer};

/// The rule for every endpoint in the configuration (Salesforce, Pub/Sub, provider base URLs,
/// `server.public_base_url`) and for the file URLs byocd hands to a provider: an absolute
/// `https://` URL with a host, or `http://` to a loopback host only (`127.0.0.0/8`, `::1`,
/// `localhost`: the sandbox and tests). `config check` and the send-time check both use it, so
/// what one accepts the other does too.
///
/// The message names no URL (a hosted file URL carries a signature): callers say which one.
pub fn check_endpoint_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("is not a URL: {e}"))?;
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err("must be an https:// URL with a host".to_owned());
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(host) => Ok(()),
        "http" => Err(
            "must use https:// (plain http:// is allowed only to a loopback host: \
             127.0.0.0/8, ::1 or localhost)"
                .to_owned(),
        ),
        other => Err(format!(
            "must be an https:// URL with a host, not `{other}:`"
        )),
    }
}

/// `localhost`, or an IPv4 or IPv6 loopback address (`host_str` writes IPv6 in brackets).
fn is_loopback_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An IP network such as `203.0.113.0/24` or `2001:db8::/32`; a bare address means that one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork(IpNet);

impl IpNetwork {
    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.0.network()
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

impl FromStr for IpNetwork {
    type Err = String;

    /// Parsed here (not by `IpNet::from_str`) for messages that say what is wrong, and to refuse
    /// host bits after the prefix (`ipnet` would keep them) rather than guess the network.
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            format!("`{text}` is not a network: `{addr_text}` is not an IP address")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix =
            match prefix_text {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                    format!("`{text}` is not a network: prefix must be 0 to {max}")
                })?,
            };
        let net = IpNet::new(addr, prefix)
            .map_err(|_| format!("`{text}` is not a network: prefix must be 0 to {max}"))?;
        if net.trunc() != net {
            return Err(format!(
                "`{text}` has host bits set after the /{prefix} prefix; write the network address"
            ));
        }
        Ok(Self(net))
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.network(), self.0.prefix_len())
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let net: IpNetwork = "203.0.113.0/24".parse().unwrap();
        assert!(net.contains("203.0.113.7".parse().unwrap()));
        assert!(net.contains("::ffff:203.0.113.7".parse().unwrap()));
        assert!(!net.contains("203.0.114.1".parse().unwrap()));
        let host: IpNetwork = "192.0.2.1".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.1/32");
        let v6: IpNetwork = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        for ok in [
            "https://example.com",
            "https://example.com:7443/x?y=1",
            "https://10.0.0.1",
            "http://127.0.0.1:8080/x",
            "http://127.1.2.3",
            "http://[::1]:7001",
            "http://localhost",
            "http://LOCALHOST:9/a",
        ] {
            assert_eq!(check_endpoint_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("http://example.com", "must use https://"),
            ("http://10.0.0.1", "must use https://"),
            ("http://[::2]", "must use https://"),
            ("http://localhost.example.com", "must use https://"),
            ("http://128.0.0.1", "must use https://"),
            ("ftp://example.com", "not `ftp:`"),
            ("file:///etc/passwd", "with a host"),
            ("example.com", "is not a URL"),
        ] {
            let message = check_endpoint_url(bad).unwrap_err();
            assert!(message.contains(why), "{bad}: {message}");
        }
    }

    #[test]
    fn explains_bad_networks() {
        assert!(
            "10.0.0.0/33"
                .parse::<IpNetwork>()
                .unwrap_err()
                .contains("prefix must be 0 to 32")
        );
        assert!(
            "10.0.0.1/8"
                .parse::<IpNetwork>()
                .unwrap_err()
                .contains("host bits")
        );
        assert!(
            "example.com/8"
                .parse::<IpNetwork>()
                .unwrap_err()
                .contains("not an IP address")
        );
    }
}
