//! The `egress` section of an instance config: which web hosts the host may fetch from on the
//! agent's behalf, which credentials it adds for which host, and the caps on what a request may
//! cost. Pure data and decisions; the fetching itself lives in the daemon.
//!
//! A missing section, or one whose `allow` is empty, means no web access at all: nothing here
//! ever reads as "everything" unless `"*"` is written.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::domain::field_error::FieldError;
use crate::domain::sizes::{is_env_var_name, parse_size};

/// The most entries `allow` and `credentials` may each hold.
const MAX_ENTRIES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressPolicy {
    /// Host patterns: `docs.rs`, `*.wikipedia.org`, `127.0.0.1:8080`, `[::1]:8080`, `*`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Headers the host adds, from its own environment, to requests for one exact host.
    #[serde(default)]
    pub credentials: Vec<Credential>,
    #[serde(default)]
    pub limits: EgressLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub host: String,
    pub header: String,
    /// The NAME of the host environment variable holding the value; never the value.
    pub value_env: String,
}

/// What one request, and an instance's requests together, may cost. Every field is optional
/// in the file and has a default that suits reading documentation pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressLimits {
    /// The most body bytes read from one response (`"1m"`, `"256k"`); the rest is cut.
    pub response_bytes: String,
    /// How long one request may take in all, redirects included (`"30s"`).
    pub timeout: String,
    /// How many redirects one request may follow, each checked again.
    pub redirects: u32,
    pub requests_per_minute: u32,
    /// Per UTC day.
    pub requests_per_day: u32,
}

impl Default for EgressLimits {
    fn default() -> Self {
        Self {
            response_bytes: "1m".into(),
            timeout: "30s".into(),
            redirects: 5,
            requests_per_minute: 20,
            requests_per_day: 500,
        }
    }
}

impl EgressLimits {
    pub fn response_bytes(&self) -> u64 {
        parse_size(&self.response_bytes).expect("validated")
    }

    pub fn timeout(&self) -> Duration {
        humantime::parse_duration(&self.timeout).expect("validated")
    }

    fn validate(&self) -> Result<(), FieldError> {
        match parse_size(&self.response_bytes) {
            Some(n) if (1024..=(64 << 20)).contains(&n) => {}
            _ => {
                return Err(FieldError::new(
                    "egress.limits.response_bytes",
                    format!(
                        "expected a size from 1k to 64m like \"1m\", got {:?}",
                        self.response_bytes
                    ),
                ))
            }
        }
        match humantime::parse_duration(&self.timeout) {
            Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(600) => {}
            _ => {
                return Err(FieldError::new(
                    "egress.limits.timeout",
                    format!(
                        "expected a duration from 1s to 10m like \"30s\", got {:?}",
                        self.timeout
                    ),
                ))
            }
        }
        if self.redirects > 20 {
            return Err(FieldError::new(
                "egress.limits.redirects",
                format!("expected 0 to 20 redirects, got {}", self.redirects),
            ));
        }
        if !(1..=10_000).contains(&self.requests_per_minute) {
            return Err(FieldError::new(
                "egress.limits.requests_per_minute",
                format!(
                    "expected 1 to 10000 requests, got {}",
                    self.requests_per_minute
                ),
            ));
        }
        if !(1..=10_000_000).contains(&self.requests_per_day) {
            return Err(FieldError::new(
                "egress.limits.requests_per_day",
                format!(
                    "expected 1 to 10000000 requests, got {}",
                    self.requests_per_day
                ),
            ));
        }
        Ok(())
    }
}

/// One parsed `allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    pub host: HostMatch,
    /// `None`: the scheme's default port (80 for http, 443 for https) only.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `*`: every host.
    Any,
    /// `*.example.org`: every name below `example.org`, not `example.org` itself.
    Suffix(String),
    /// A name or an address, written out in full.
    Exact(String),
}

impl HostPattern {
    /// Parses `host`, `host:port`, `*.suffix`, `[v6]:port` or `*`. Names are compared in
    /// lower case without a trailing dot; international names must be written in their
    /// `xn--` form so that what is listed is what is compared.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let (host, port) = split_host_port(entry)?;
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host).to_string();
        if host.is_empty() || entry.starts_with("*.") && !host.starts_with("*.") {
            return Err(format!("expected a host after \"*.\", got {entry:?}"));
        }
        let matcher = if host == "*" {
            HostMatch::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            check_name(suffix)?;
            HostMatch::Suffix(suffix.to_string())
        } else if host.parse::<IpAddr>().is_ok() {
            HostMatch::Exact(host)
        } else {
            check_name(&host)?;
            HostMatch::Exact(host)
        };
        Ok(Self {
            host: matcher,
            port,
        })
    }

    fn matches_host(&self, host: &str) -> bool {
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Suffix(s) => host.len() > s.len() + 1 && host.ends_with(&format!(".{s}")),
            HostMatch::Exact(h) => h == host,
        }
    }

    fn matches_port(&self, port: u16, default_port: u16) -> bool {
        self.port.unwrap_or(default_port) == port
    }
}

/// Splits `host[:port]`, where an IPv6 address with a port is written `[addr]:port`.
fn split_host_port(entry: &str) -> Result<(&str, Option<u16>), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("expected a port from 1 to 65535 after the colon, got {p:?}"))
    };
    if let Some(rest) = entry.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or("expected a closing ] after the IPv6 address")?;
        addr.parse::<Ipv6Addr>()
            .map_err(|_| format!("expected an IPv6 address inside [ ], got {addr:?}"))?;
        return match after {
            "" => Ok((addr, None)),
            p => match p.strip_prefix(':') {
                Some(p) => Ok((addr, Some(parse_port(p)?))),
                None => Err("expected :port after the ]".into()),
            },
        };
    }
    if entry.parse::<Ipv6Addr>().is_ok() {
        return Ok((entry, None));
    }
    match entry.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((entry, None)),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "expected a host name like \"docs.rs\", \"*.wikipedia.org\" or \"127.0.0.1:8080\" \
             (international names in their xn-- form), got {name:?}"
        ));
    }
    Ok(())
}

/// What an address is, for the refusal of everything that is not the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Loopback,
    Private,
    LinkLocal,
    /// Shared address space, 100.64.0.0/10 (carrier-grade NAT).
    Cgnat,
    Multicast,
    /// A cloud provider's instance metadata service.
    Metadata,
    Unspecified,
    /// Broadcast, documentation, benchmarking and reserved ranges.
    Reserved,
}

impl AddressClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Cgnat => "shared (CGNAT)",
            AddressClass::Multicast => "multicast",
            AddressClass::Metadata => "cloud metadata",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Reserved => "reserved",
        }
    }
}

const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if ip == METADATA_V4 {
        AddressClass::Metadata
    } else if a == 0 {
        // 0.0.0.0/8 "this network": 0.0.0.0 reaches the local host on Linux.
        AddressClass::Unspecified
    } else if a == 127 {
        AddressClass::Loopback
    } else if a == 10 || (a == 172 && (16..32).contains(&b)) || (a == 192 && b == 168) {
        AddressClass::Private
    } else if a == 169 && b == 254 {
        AddressClass::LinkLocal
    } else if a == 100 && (64..128).contains(&b) {
        AddressClass::Cgnat
    } else if (224..240).contains(&a) {
        AddressClass::Multicast
    } else if a >= 240
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || (a == 192 && b == 88 && c == 99)
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    // An IPv4 address carried in IPv6 reaches that IPv4 host: judge the IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        // Deprecated IPv4-compatible form (::a.b.c.d).
        return classify_v4(ip.to_ipv4().expect("six zero segments"));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64: the gateway forwards to the embedded IPv4 address.
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return classify_v4(Ipv4Addr::new(a, b, c, d));
    }
    if ip == METADATA_V6 {
        AddressClass::Metadata
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        // Unique local (fc00::/7) and the deprecated site-local (fec0::/10).
        AddressClass::Private
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if s[0] & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if s[0] == 0x2001 && s[1] == 0x0db8 || s[0] == 0x2002 || s[0] & 0xe000 != 0x2000 {
        // Documentation, 6to4 (which embeds any IPv4 address) and everything outside the
        // global unicast range 2000::/3.
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

/// Why a request was not made. The text is what the agent (and the operator) reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this instance has no web access (no egress.allow in its config)")]
    NoPolicy,
    #[error("only http:// and https:// URLs can be fetched, not {0}:")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("{0} is not in this instance's egress.allow list")]
    NotListed(String),
    #[error(
        "{host} resolves to {addr}, a {} address, which is only reached when {host}:{port} \
         is listed exactly in egress.allow",
        class.as_str()
    )]
    Address {
        host: String,
        port: u16,
        addr: IpAddr,
        class: AddressClass,
    },
}

impl Refusal {
    /// A short, stable word for records and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::NoPolicy => "no_policy",
            Refusal::Scheme(_) => "scheme",
            Refusal::NoHost => "no_host",
            Refusal::NotListed(_) => "not_listed",
            Refusal::Address { .. } => "address",
        }
    }
}

/// A URL's host and port as the policy compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower case, no trailing dot, IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl EgressPolicy {
    /// True when the policy lets anything through.
    pub fn is_enabled(&self) -> bool {
        !self.allow.is_empty()
    }

    pub fn patterns(&self) -> Vec<HostPattern> {
        self.allow
            .iter()
            .map(|e| HostPattern::parse(e).expect("validated"))
            .collect()
    }

    /// True when `"*"` is listed: every public host may be reached.
    pub fn allows_everything(&self) -> bool {
        self.patterns().iter().any(|p| p.host == HostMatch::Any)
    }

    /// The first check, before any name is resolved: scheme and listed host.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<Target, Refusal> {
        if !self.is_enabled() {
            return Err(Refusal::NoPolicy);
        }
        let default_port = match url.scheme() {
            "http" => 80,
            "https" => 443,
            other => return Err(Refusal::Scheme(other.to_string())),
        };
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
            _ => return Err(Refusal::NoHost),
        };
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host).to_string();
        let port = url.port().unwrap_or(default_port);
        let listed = self
            .patterns()
            .iter()
            .any(|p| p.matches_host(&host) && p.matches_port(port, default_port));
        if !listed {
            let shown = match url.port() {
                Some(p) => format!("{}:{p}", url.host_str().unwrap_or(&host)),
                None => url.host_str().unwrap_or(&host).to_string(),
            };
            return Err(Refusal::NotListed(shown));
        }
        Ok(Target { host, port })
    }

    /// The second check, on every address the host name resolved to: anything that is not
    /// the public internet is refused unless this exact host (no wildcard) and port are
    /// listed. All must pass, so a name cannot mix a public address with a private one.
    pub fn check_addresses(
        &self,
        target: &Target,
        default_port: u16,
        addrs: &[IpAddr],
    ) -> Result<(), Refusal> {
        let exactly_listed = self.patterns().iter().any(|p| {
            p.host == HostMatch::Exact(target.host.clone())
                && p.matches_port(target.port, default_port)
        });
        for &addr in addrs {
            let class = classify(addr);
            if class != AddressClass::Public && !exactly_listed {
                return Err(Refusal::Address {
                    host: target.host.clone(),
                    port: target.port,
                    addr,
                    class,
                });
            }
        }
        Ok(())
    }

    /// The credentials to add for a request to `host` (exact match only).
    pub fn credentials_for<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Credential> {
        self.credentials
            .iter()
            .filter(move |c| c.host.to_ascii_lowercase() == host)
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if self.allow.len() > MAX_ENTRIES {
            return Err(FieldError::new(
                "egress.allow",
                format!("expected at most {MAX_ENTRIES} entries"),
            ));
        }
        let mut patterns = Vec::new();
        for (i, entry) in self.allow.iter().enumerate() {
            let p = HostPattern::parse(entry)
                .map_err(|m| FieldError::new(format!("egress.allow[{i}]"), m))?;
            patterns.push(p);
        }
        if self.credentials.len() > MAX_ENTRIES {
            return Err(FieldError::new(
                "egress.credentials",
                format!("expected at most {MAX_ENTRIES} entries"),
            ));
        }
        for (i, c) in self.credentials.iter().enumerate() {
            let at = |field: &str| format!("egress.credentials[{i}].{field}");
            let host = c.host.to_ascii_lowercase();
            let exact = HostPattern::parse(&host)
                .ok()
                .filter(|p| matches!(p.host, HostMatch::Exact(_)) && p.port.is_none());
            let Some(HostPattern {
                host: HostMatch::Exact(host),
                ..
            }) = exact
            else {
                return Err(FieldError::new(
                    at("host"),
                    format!(
                        "expected one exact host name without a port or wildcard, got {:?}",
                        c.host
                    ),
                ));
            };
            if !patterns.iter().any(|p| p.matches_host(&host)) {
                return Err(FieldError::new(
                    at("host"),
                    format!(
                        "{host} is not in egress.allow, so this credential would never be used"
                    ),
                ));
            }
            let token = !c.header.is_empty()
                && c.header.len() <= 64
                && c.header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let reserved = ["host", "content-length", "transfer-encoding", "connection"]
                .contains(&c.header.to_ascii_lowercase().as_str());
            if !token || reserved {
                return Err(FieldError::new(
                    at("header"),
                    format!(
                        "expected an HTTP header name like \"Authorization\" (not Host, \
                         Content-Length, Transfer-Encoding or Connection), got {:?}",
                        c.header
                    ),
                ));
            }
            if !is_env_var_name(&c.value_env) {
                return Err(FieldError::new(
                    at("value_env"),
                    "expected the NAME of a host environment variable (like GH_TOKEN: capital \
                     letters, digits and underscores), never the value itself",
                ));
            }
        }
        self.limits.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> EgressPolicy {
        EgressPolicy {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            credentials: vec![],
            limits: EgressLimits::default(),
        }
    }

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn patterns_parse() {
        let p = HostPattern::parse("Docs.RS.").unwrap();
        assert_eq!(p.host, HostMatch::Exact("docs.rs".into()));
        assert_eq!(p.port, None);
        let p = HostPattern::parse("*.wikipedia.org").unwrap();
        assert_eq!(p.host, HostMatch::Suffix("wikipedia.org".into()));
        let p = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert_eq!(
            (p.host, p.port),
            (HostMatch::Exact("127.0.0.1".into()), Some(8080))
        );
        let p = HostPattern::parse("[::1]:8443").unwrap();
        assert_eq!(
            (p.host, p.port),
            (HostMatch::Exact("::1".into()), Some(8443))
        );
        assert_eq!(HostPattern::parse("::1").unwrap().port, None);
        assert_eq!(HostPattern::parse("*").unwrap().host, HostMatch::Any);
        for bad in [
            "",
            "a b",
            "*.",
            "exa*mple.com",
            "host:0",
            "host:99999",
            "[::1",
            "[nope]:80",
            "bücher.de",
            "-x.com",
            "http://docs.rs",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listed_hosts_and_ports() {
        let p = policy(&["docs.rs", "*.wikipedia.org", "127.0.0.1:8080"]);
        assert!(p.check_url(&url("https://docs.rs/x")).is_ok());
        assert!(p.check_url(&url("http://DOCS.rs./x")).is_ok());
        assert!(p.check_url(&url("https://en.wikipedia.org/")).is_ok());
        assert!(p.check_url(&url("http://127.0.0.1:8080/")).is_ok());
        for refused in [
            "https://wikipedia.org/",
            "https://evilwikipedia.org/",
            "https://docs.rs:8443/",
            "https://docs.rs.evil.com/",
            "http://127.0.0.1/",
            "http://127.0.0.1:8081/",
        ] {
            assert!(
                matches!(p.check_url(&url(refused)), Err(Refusal::NotListed(_))),
                "{refused}"
            );
        }
        assert_eq!(
            p.check_url(&url("ftp://docs.rs/")).unwrap_err(),
            Refusal::Scheme("ftp".into())
        );
        assert!(matches!(
            p.check_url(&url("file:///etc/passwd")),
            Err(Refusal::Scheme(_))
        ));
    }

    #[test]
    fn no_list_means_no_web_and_star_must_be_written() {
        assert_eq!(
            policy(&[]).check_url(&url("https://docs.rs/")).unwrap_err(),
            Refusal::NoPolicy
        );
        let star = policy(&["*"]);
        assert!(star.allows_everything());
        assert!(star.check_url(&url("https://anything.example/")).is_ok());
        assert!(!policy(&["docs.rs"]).allows_everything());
    }

    #[test]
    fn address_classes() {
        let cases: &[(&str, AddressClass)] = &[
            ("93.184.216.34", AddressClass::Public),
            ("2606:4700::1111", AddressClass::Public),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.8.9.10", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("169.254.1.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("100.64.0.1", AddressClass::Cgnat),
            ("100.127.255.255", AddressClass::Cgnat),
            ("224.0.0.1", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("169.254.169.254", AddressClass::Metadata),
            ("fd00:ec2::254", AddressClass::Metadata),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("255.255.255.255", AddressClass::Reserved),
            ("192.0.2.1", AddressClass::Reserved),
            ("2001:db8::1", AddressClass::Reserved),
            ("2002:7f00:1::", AddressClass::Reserved),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:169.254.169.254", AddressClass::Metadata),
            ("::ffff:8.8.8.8", AddressClass::Public),
            ("::10.0.0.1", AddressClass::Private),
            ("64:ff9b::a00:1", AddressClass::Private),
        ];
        for (addr, class) in cases {
            assert_eq!(classify(addr.parse().unwrap()), *class, "{addr}");
        }
        assert_eq!(
            classify("172.32.0.1".parse().unwrap()),
            AddressClass::Public
        );
        assert_eq!(
            classify("100.128.0.1".parse().unwrap()),
            AddressClass::Public
        );
    }

    #[test]
    fn private_addresses_need_the_exact_host_and_port() {
        let lo = |s: &str| -> Vec<IpAddr> { vec![s.parse().unwrap()] };
        // A wildcard never opens a private address: a public name pointed at 127.0.0.1.
        let p = policy(&["*.example.com", "*"]);
        let t = p.check_url(&url("https://evil.example.com/")).unwrap();
        let e = p.check_addresses(&t, 443, &lo("127.0.0.1")).unwrap_err();
        assert_eq!(e.kind(), "address");
        assert!(e.to_string().contains("loopback"), "{e}");
        // Every address must pass, not just the first.
        let mixed: Vec<IpAddr> = vec!["8.8.8.8".parse().unwrap(), "10.0.0.5".parse().unwrap()];
        assert!(p.check_addresses(&t, 443, &mixed).is_err());
        assert!(p.check_addresses(&t, 443, &lo("8.8.8.8")).is_ok());
        // Listed exactly, with its port: reached.
        let p = policy(&["127.0.0.1:8080", "intranet.lan"]);
        let t = p.check_url(&url("http://127.0.0.1:8080/")).unwrap();
        assert!(p.check_addresses(&t, 80, &lo("127.0.0.1")).is_ok());
        let t = p.check_url(&url("https://intranet.lan/")).unwrap();
        assert!(p.check_addresses(&t, 443, &lo("192.168.1.9")).is_ok());
        // The metadata service is refused like any other unlisted address.
        let p = policy(&["metadata.example"]);
        let t = Target {
            host: "other.example".into(),
            port: 80,
        };
        let e = p
            .check_addresses(&t, 80, &lo("169.254.169.254"))
            .unwrap_err();
        assert!(e.to_string().contains("cloud metadata"), "{e}");
    }

    fn parse(json: &str) -> Result<EgressPolicy, FieldError> {
        let p: EgressPolicy =
            serde_json::from_str(json).map_err(|e| FieldError::new("x", e.to_string()))?;
        p.validate().map(|()| p)
    }

    #[test]
    fn credentials_and_limits_are_validated() {
        let ok = parse(
            r#"{"allow": ["api.github.com"], "credentials": [{"host": "api.github.com", "header": "Authorization", "value_env": "GH_TOKEN"}]}"#,
        )
        .unwrap();
        assert_eq!(ok.credentials_for("api.github.com").count(), 1);
        assert_eq!(ok.credentials_for("github.com").count(), 0);
        assert_eq!(ok.limits, EgressLimits::default());
        assert_eq!(ok.limits.response_bytes(), 1 << 20);
        assert_eq!(ok.limits.timeout(), Duration::from_secs(30));
        let cases = [
            (r#"{"allow": ["docs.rs", "no spaces"]}"#, "egress.allow[1]"),
            (
                r#"{"allow": ["docs.rs"], "credentials": [{"host": "api.github.com", "header": "X", "value_env": "T"}]}"#,
                "egress.credentials[0].host",
            ),
            (
                r#"{"allow": ["*.github.com"], "credentials": [{"host": "*.github.com", "header": "X", "value_env": "T"}]}"#,
                "egress.credentials[0].host",
            ),
            (
                r#"{"allow": ["a.com"], "credentials": [{"host": "a.com", "header": "Bad Header", "value_env": "T"}]}"#,
                "egress.credentials[0].header",
            ),
            (
                r#"{"allow": ["a.com"], "credentials": [{"host": "a.com", "header": "Host", "value_env": "T"}]}"#,
                "egress.credentials[0].header",
            ),
            (
                r#"{"allow": ["a.com"], "credentials": [{"host": "a.com", "header": "X-Key", "value_env": "ghp_secret"}]}"#,
                "egress.credentials[0].value_env",
            ),
            (
                r#"{"allow": ["a.com"], "limits": {"response_bytes": "1g"}}"#,
                "egress.limits.response_bytes",
            ),
            (
                r#"{"allow": ["a.com"], "limits": {"timeout": "0s"}}"#,
                "egress.limits.timeout",
            ),
            (
                r#"{"allow": ["a.com"], "limits": {"redirects": 50}}"#,
                "egress.limits.redirects",
            ),
            (
                r#"{"allow": ["a.com"], "limits": {"requests_per_minute": 0}}"#,
                "egress.limits.requests_per_minute",
            ),
            (
                r#"{"allow": ["a.com"], "limits": {"requests_per_day": 0}}"#,
                "egress.limits.requests_per_day",
            ),
        ];
        for (json, path) in cases {
            assert_eq!(parse(json).unwrap_err().path, path, "{json}");
        }
    }
}
