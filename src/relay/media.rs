//! Fetching an end user's file from the URL a provider's webhook gave: the URL is the sender's
//! as much as the provider's, so it is treated as hostile (server-side request forgery).
//!
//! - only `https`, to a host on the channel's `provider.media_hosts` (any host when empty);
//! - redirects are followed by hand, at most [`MAX_REDIRECTS`], each target checked again;
//! - the host's addresses are checked after DNS resolution, by the client's own resolver
//!   ([`PublicResolver`]), so the address checked is the address connected to: loopback,
//!   private, link-local (cloud metadata at 169.254.169.254), unique-local, CGNAT, multicast and
//!   unspecified addresses are refused; an IP literal in the URL is checked the same way;
//! - no proxy from the environment (it would resolve the name instead);
//! - the type Salesforce is told is sniffed from the bytes ([`sniff`]), not taken from the
//!   server or the webhook;
//! - the URL (pre-signed: a bearer credential) never reaches a log or `last_error`
//!   (`reqwest::Error::without_url`).
//!
//! `relay.allow_private_media_urls` lifts the scheme and address rules, for the sandbox and
//! tests whose emulators listen on 127.0.0.1 over http.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

/// Most redirects followed for one file.
pub const MAX_REDIRECTS: usize = 3;

/// Whether `ip` is an address on the public internet (not loopback, private, link-local,
/// unique-local, shared/CGNAT, documentation, benchmarking, multicast, broadcast or
/// unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (b & 0xfe) == 18) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64 (embeds IPv4)
        }
    }
}

/// Whether `host` matches an entry of an allow-list (`host` exactly, or `*.domain`: any name
/// under the domain, not the domain itself). An empty list allows any host.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.is_empty()
        || allowed.iter().any(|entry| match entry.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            None => host == *entry,
        })
}

/// Checks a URL (the first, or a redirect's target) before it is fetched; the reason it is
/// refused names the host at most, never the path or query.
pub fn check_url(url: &Url, allowed_hosts: &[String], allow_private: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        scheme => return Err(format!("its URL is not https (`{scheme}:`)")),
    }
    let Some(host) = url.host_str() else {
        return Err("its URL has no host".into());
    };
    let name = host.trim_start_matches('[').trim_end_matches(']');
    if !host_allowed(name, allowed_hosts) {
        return Err(format!(
            "its host `{name}` is not on the channel's provider.media_hosts"
        ));
    }
    if let Ok(ip) = name.parse::<IpAddr>()
        && !allow_private
        && !is_public(ip)
    {
        return Err(format!("its host {ip} is not a public address"));
    }
    Ok(())
}

/// Why [`PublicResolver`] refused a name.
#[derive(Debug)]
pub struct NotPublic(pub String);

impl std::fmt::Display for NotPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotPublic {}

/// The [`NotPublic`] refusal somewhere in `error`'s chain of causes, if any.
pub fn not_public(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<NotPublic>() {
            return Some(refused.0.clone());
        }
        cause = e.source();
    }
    None
}

/// A resolver that hands the client only public addresses, and fails when a name has none:
/// the address checked is the one connected to (no window for DNS rebinding).
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(NotPublic(format!(
                    "its host `{host}` resolves to no public address ({} refused)",
                    all.iter()
                        .map(|a| a.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The client that fetches end users' files: no automatic redirects, no proxy, and (unless
/// `allow_private`) the [`PublicResolver`].
pub fn client(timeout: Duration, allow_private: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("byocd/", env!("CARGO_PKG_VERSION")));
    let builder = if allow_private {
        builder
    } else {
        builder.dns_resolver(PublicResolver)
    };
    builder
        .build()
        .expect("a reqwest client with these settings always builds")
}

/// The type of a file by its first bytes, among those Salesforce accepts; `claimed` (the
/// server's or the webhook's type) only picks between types the bytes cannot tell apart
/// (MP4 audio or video, 3GPP audio or video). `None`: not a type Salesforce accepts.
pub fn sniff(bytes: &[u8], claimed: Option<&str>) -> Option<&'static str> {
    let pick = |family: &[&'static str]| -> &'static str {
        claimed
            .and_then(|c| family.iter().find(|f| f.eq_ignore_ascii_case(c)))
            .copied()
            .unwrap_or(family[0])
    };
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.starts_with(b"BM") && bytes.len() > 14 {
        Some("image/bmp")
    } else if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let brand = &bytes[8..12];
        if brand.starts_with(b"3g2") {
            Some(pick(&["video/3gpp2", "audio/3gpp2"]))
        } else if brand.starts_with(b"3gp") {
            Some(pick(&["video/3gpp", "audio/3gpp"]))
        } else if brand == b"M4A " {
            Some("audio/mp4")
        } else {
            Some(pick(&["video/mp4", "audio/mp4"]))
        }
    } else if bytes.starts_with(&[0, 0, 1, 0xba]) || bytes.starts_with(&[0, 0, 1, 0xb3]) {
        Some("video/mpeg")
    } else if bytes.starts_with(b"ID3")
        || (bytes.len() > 1 && bytes[0] == 0xff && bytes[1] & 0xe0 == 0xe0)
    {
        Some("audio/mpeg")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_https_to_an_allowed_public_host() {
        let hosts = vec!["media.example.com".to_owned(), "*.cdn.example".to_owned()];
        let check = |url: &str, private| check_url(&Url::parse(url).unwrap(), &hosts, private);
        assert!(check("https://media.example.com/a.jpg?sig=x", false).is_ok());
        assert!(check("https://eu.cdn.example/a.jpg", false).is_ok());
        assert!(check("https://cdn.example/a.jpg", false).is_err());
        assert!(check("https://evilcdn.example/a.jpg", false).is_err());
        assert!(check("https://media.example.com.evil.test/a.jpg", false).is_err());
        let err = check("http://media.example.com/a.jpg", false).unwrap_err();
        assert!(err.contains("not https"), "{err}");
        let any = |url: &str| check_url(&Url::parse(url).unwrap(), &[], false);
        assert!(any("https://anything.example/x").is_ok());
        for url in [
            "https://127.0.0.1/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://2130706433/x",
        ] {
            assert!(any(url).is_err(), "{url}");
        }
        assert!(check_url(&Url::parse("http://127.0.0.1:9/x").unwrap(), &[], true).is_ok());
        let err = any("https://169.254.169.254/latest?token=SECRET").unwrap_err();
        assert!(!err.contains("SECRET") && !err.contains("latest"), "{err}");
    }

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n....", Some("image/jpeg")),
            Some("image/png")
        );
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0], None), Some("image/jpeg"));
        assert_eq!(
            sniff(b"%PDF-1.7", Some("image/png")),
            Some("application/pdf")
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypmp42\0\0\0\0", Some("audio/mp4")),
            Some("audio/mp4")
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypisom\0\0\0\0", Some("text/html")),
            Some("video/mp4")
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftyp3gp5\0\0\0\0", None),
            Some("video/3gpp")
        );
        assert_eq!(sniff(b"ID3\x04", None), Some("audio/mpeg"));
        assert_eq!(sniff(b"<html><script>", Some("image/png")), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ", Some("image/webp")), None);
        assert_eq!(sniff(&[0x89; 64], Some("image/png")), None);
    }
}
