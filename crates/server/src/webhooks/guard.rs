//! Endpoints are not a way into the network. An endpoint URL must be https, without credentials
//! or fragment; its host must resolve, at every attempt, only to public addresses, and the
//! connection is made to an address that was checked (see `send`). Refused: loopback, RFC 1918,
//! 100.64/10, 169.254/16, 0.0.0.0/8, `::`, fc00::/7, fe80::/10, multicast, a few more reserved
//! ranges, and the IPv4-mapped (and other IPv4-embedding) IPv6 forms of all of them.
//!
//! `WEBHOOK_ALLOWED_HOSTS` names hosts the operator means to reach on a private network (they
//! may be http and resolve anywhere); `WEBHOOK_ALLOW_PRIVATE=true` lifts the rules for every host
//! (tests and the demo).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

use crate::config::WebhookSettings;

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2000;

/// Which hosts may be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub allow_private: bool,
    /// Lower-case host names (or IP literals) exempt from the address rules.
    pub allowed_hosts: Vec<String>,
}

impl From<&WebhookSettings> for Rules {
    fn from(s: &WebhookSettings) -> Rules {
        Rules { allow_private: s.allow_private, allowed_hosts: s.allowed_hosts.clone() }
    }
}

/// A URL that passed the rules that need no DNS.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: Url,
    pub host: Host<String>,
    pub port: u16,
    pub https: bool,
    /// The address rules do not apply (WEBHOOK_ALLOW_PRIVATE, or a host in WEBHOOK_ALLOWED_HOSTS).
    pub exempt: bool,
}

impl Target {
    /// The host as written in a `Host` header and for TLS (an IPv6 literal without brackets).
    pub fn host_name(&self) -> String {
        match &self.host {
            Host::Domain(d) => d.clone(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        }
    }

    /// The `Host` header: the port only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = match &self.host {
            Host::Ipv6(ip) => format!("[{ip}]"),
            _ => self.host_name(),
        };
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }

    /// Path and query, as sent in the request line.
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_string(),
        }
    }
}

/// Checks what can be checked without DNS: the form, the scheme, and an IP literal host.
pub fn parse(text: &str, rules: &Rules) -> Result<Target, String> {
    let text = text.trim();
    if text.len() > MAX_URL_LEN {
        return Err(format!("the URL is longer than {MAX_URL_LEN} characters"));
    }
    let url = Url::parse(text).map_err(|e| format!("not a valid URL ({e})"))?;
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(format!("the URL must be https:// (got {other}:)")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not carry a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("the URL must not have a #fragment".into());
    }
    let host = url.host().map(|h| h.to_owned()).ok_or("the URL has no host")?;
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let name = match &host {
        Host::Domain(d) => d.to_ascii_lowercase(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    let exempt = rules.allow_private || rules.allowed_hosts.iter().any(|h| h == &name);
    if !https && !exempt {
        return Err(
            "the URL must be https:// (http is allowed only for hosts in WEBHOOK_ALLOWED_HOSTS, or with WEBHOOK_ALLOW_PRIVATE=true)"
                .into(),
        );
    }
    let literal = match &host {
        Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        Host::Domain(_) => None,
    };
    if let (Some(ip), false) = (literal, exempt) {
        if let Some(why) = refused(ip) {
            return Err(format!("{ip} is {why} address: webhooks go to public addresses only"));
        }
    }
    Ok(Target { url, host, port, https, exempt })
}

/// Resolves the host now and checks every address it resolves to: one refused address refuses
/// them all (a name that answers with both a public and a private address is not trusted).
/// Returns the addresses to connect to, in the resolver's order.
pub async fn resolve(target: &Target) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = match &target.host {
        Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), target.port)],
        Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), target.port)],
        Host::Domain(name) => tokio::net::lookup_host((name.as_str(), target.port))
            .await
            .map_err(|e| format!("cannot resolve {name}: {e}"))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("{} resolves to no address", target.host_name()));
    }
    if !target.exempt {
        for a in &addrs {
            if let Some(why) = refused(a.ip()) {
                return Err(format!(
                    "{} resolves to {}, {why} address: webhooks go to public addresses only",
                    target.host_name(),
                    a.ip()
                ));
            }
        }
    }
    Ok(addrs)
}

/// Why `ip` may not be reached, as "a … address" without the article's noun; `None` when public.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        (0, _) => "a this-network (0.0.0.0/8)",
        (127, _) => "a loopback",
        (10, _) => "a private (RFC 1918)",
        (172, 16..=31) => "a private (RFC 1918)",
        (192, 168) => "a private (RFC 1918)",
        (100, 64..=127) => "a shared (100.64.0.0/10, carrier-grade NAT)",
        (169, 254) => "a link-local",
        (192, 0) if c == 0 => "an IETF protocol (192.0.0.0/24)",
        (198, 18..=19) => "a benchmarking (198.18.0.0/15)",
        (224..=239, _) => "a multicast",
        (240..=255, _) => "a reserved or broadcast",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("the unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("a loopback");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4).map(|_| "an IPv4-mapped non-public");
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s[0] {
        // ::/96, IPv4-compatible (deprecated): nothing public lives there.
        0 if s[1..6].iter().all(|&x| x == 0) => Some("an IPv4-compatible"),
        // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address; 64:ff9b:1::/48 is local-use.
        0x64 if s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) => {
            refused_v4(embedded(s[6], s[7])).map(|_| "a NAT64 form of a non-public")
        }
        0x64 if s[1] == 0xff9b && s[2] == 1 => Some("a local-use NAT64"),
        // 6to4 (2002::/16) embeds the IPv4 address in bits 16..48.
        0x2002 => refused_v4(embedded(s[1], s[2])).map(|_| "a 6to4 form of a non-public"),
        // Teredo (2001:0::/32) tunnels to an obfuscated IPv4 address.
        0x2001 if s[1] == 0 => Some("a Teredo"),
        // 100::/64, the discard prefix.
        0x100 if s[1..4].iter().all(|&x| x == 0) => Some("a discard-only (100::/64)"),
        x if x & 0xfe00 == 0xfc00 => Some("a unique local (fc00::/7)"),
        x if x & 0xffc0 == 0xfe80 => Some("a link-local (fe80::/10)"),
        x if x & 0xffc0 == 0xfec0 => Some("a site-local (fec0::/10)"),
        x if x & 0xff00 == 0xff00 => Some("a multicast"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> Rules {
        Rules::default()
    }

    #[test]
    fn refuses_every_named_range_and_its_mapped_forms() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2002:7f00:1::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(refused(ip).is_some(), "{ip} must be refused");
        }
        for ip in ["1.1.1.1", "93.184.215.14", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "64:ff9b::101:101"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(refused(ip), None, "{ip} is public");
        }
    }

    #[test]
    fn urls_must_be_https_without_credentials_and_not_a_private_literal() {
        let ok = parse("https://hooks.example.com/mascot?x=1", &strict()).unwrap();
        assert_eq!(
            (ok.port, ok.path_and_query().as_str(), ok.host_header().as_str()),
            (443, "/mascot?x=1", "hooks.example.com")
        );
        for (url, expect) in [
            ("http://hooks.example.com/", "https"),
            ("ftp://hooks.example.com/", "https"),
            ("https://user:pw@hooks.example.com/", "user name or password"),
            ("https://hooks.example.com/#x", "fragment"),
            ("https://127.0.0.1/", "loopback"),
            ("https://10.0.0.1/", "private"),
            ("https://169.254.169.254/latest/meta-data/", "link-local"),
            // Other spellings of 127.0.0.1 are parsed as what they are.
            ("https://2130706433/", "loopback"),
            ("https://0x7f.1/", "loopback"),
            ("https://[::ffff:7f00:1]/", "IPv4-mapped"),
            ("https://[::1]:8443/", "loopback"),
            ("not a url", "not a valid URL"),
        ] {
            let err = parse(url, &strict()).unwrap_err();
            assert!(err.contains(expect), "{url}: {err}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(parse(&long, &strict()).is_err());
    }

    #[test]
    fn allowed_hosts_and_allow_private_lift_the_rules() {
        let rules =
            Rules { allow_private: false, allowed_hosts: vec!["generator.railway.internal".into(), "10.0.0.7".into()] };
        let t = parse("http://Generator.railway.internal:8080/hook", &rules).unwrap();
        assert!(t.exempt && !t.https);
        assert_eq!(t.host_header(), "generator.railway.internal:8080");
        assert!(parse("https://10.0.0.7/", &rules).unwrap().exempt);
        assert!(parse("https://10.0.0.8/", &rules).is_err());
        let open = Rules { allow_private: true, allowed_hosts: vec![] };
        assert!(parse("http://127.0.0.1:9/", &open).unwrap().exempt);
        assert_eq!(parse("http://[::1]:9/", &open).unwrap().host_header(), "[::1]:9");
    }

    #[tokio::test]
    async fn a_name_is_refused_when_any_of_its_addresses_is() {
        let t = parse("https://localhost/", &strict()).unwrap();
        let err = resolve(&t).await.unwrap_err();
        assert!(err.contains("localhost resolves to") && err.contains("loopback"), "{err}");
        let open = Rules { allow_private: true, allowed_hosts: vec![] };
        let addrs = resolve(&parse("https://localhost:9/", &open).unwrap()).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9), "{addrs:?}");
    }
}
