//! The SSRF guard: hookrelay sends requests to URLs that users type in, so it refuses to
//! connect to addresses that are not on the public internet (loopback, private networks,
//! link-local and cloud metadata, carrier-grade NAT, unique-local, multicast, documentation and
//! reserved ranges, and the IPv6 forms that embed any of those IPv4 addresses) unless an
//! operator opens a network with `--allow-network`.
//!
//! The check happens where the connection is made: the HTTP client resolves names through
//! [`GuardedResolver`], which checks *every* address a name resolves to and hands the client
//! only those checked addresses, so what is checked is what is connected to (a name that
//! answers differently a moment later cannot slip past: there is no second lookup). URLs with
//! an IP literal never reach a resolver, so [`AllowList::check_url`] checks them before the
//! request is sent.
//!
//! [`classify`] is pure and has known answers for each range.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unspecified,
    ThisNetwork,
    Loopback,
    Private,
    SharedAddressSpace,
    LinkLocal,
    IetfProtocol,
    Documentation,
    Benchmarking,
    Multicast,
    Broadcast,
    Reserved,
    UniqueLocal,
    SiteLocal,
    LocalNat64,
    Discard,
}

impl Reason {
    /// A short description, as used in refusal messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Reason::Unspecified => "the unspecified address",
            Reason::ThisNetwork => "a \"this network\" address (0.0.0.0/8)",
            Reason::Loopback => "a loopback address",
            Reason::Private => "a private network address (RFC 1918)",
            Reason::SharedAddressSpace => "a carrier-grade NAT address (100.64.0.0/10)",
            Reason::LinkLocal => {
                "a link-local address (where cloud metadata services such as 169.254.169.254 live)"
            }
            Reason::IetfProtocol => "an IETF protocol assignment, not a host on the internet",
            Reason::Documentation => "a documentation-only address",
            Reason::Benchmarking => "a benchmarking address (198.18.0.0/15)",
            Reason::Multicast => "a multicast address",
            Reason::Broadcast => "the broadcast address",
            Reason::Reserved => "a reserved address, not routed on the internet",
            Reason::UniqueLocal => "a unique-local IPv6 address (fc00::/7)",
            Reason::SiteLocal => "a site-local IPv6 address (fec0::/10)",
            Reason::LocalNat64 => "a local-use NAT64 address (64:ff9b:1::/48)",
            Reason::Discard => "a discard-only IPv6 address (100::/64)",
        }
    }
}

/// How an IPv6 address carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:a.b.c.d`
    Mapped,
    /// `::a.b.c.d` (deprecated)
    Compatible,
    /// `::ffff:0:a.b.c.d` (SIIT)
    Translated,
    /// `64:ff9b::a.b.c.d`
    Nat64,
    /// `2002:aabb:ccdd::/48`
    SixToFour,
}

impl Embedding {
    fn describe(&self) -> &'static str {
        match self {
            Embedding::Mapped => "IPv4-mapped",
            Embedding::Compatible => "IPv4-compatible",
            Embedding::Translated => "IPv4-translated",
            Embedding::Nat64 => "NAT64",
            Embedding::SixToFour => "6to4",
        }
    }
}

/// Why an address is refused: its own range, or the IPv4 address it embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub embedded: Option<(Embedding, Ipv4Addr)>,
}

impl Refusal {
    fn direct(reason: Reason) -> Refusal {
        Refusal {
            reason,
            embedded: None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.embedded {
            None => f.write_str(self.reason.describe()),
            Some((how, v4)) => write!(
                f,
                "an {} form of {v4}, which is {}",
                how.describe(),
                self.reason.describe()
            ),
        }
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(segments: [u16; 8], len: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
}

/// IPv4 ranges that are not globally reachable (IANA special-purpose registry), most specific
/// first where they overlap.
const V4_RANGES: &[(Ipv4Net, Reason)] = &[
    (v4(0, 0, 0, 0, 32), Reason::Unspecified),
    (v4(0, 0, 0, 0, 8), Reason::ThisNetwork),
    (v4(10, 0, 0, 0, 8), Reason::Private),
    (v4(100, 64, 0, 0, 10), Reason::SharedAddressSpace),
    (v4(127, 0, 0, 0, 8), Reason::Loopback),
    (v4(169, 254, 0, 0, 16), Reason::LinkLocal),
    (v4(172, 16, 0, 0, 12), Reason::Private),
    (v4(192, 0, 0, 0, 24), Reason::IetfProtocol),
    (v4(192, 0, 2, 0, 24), Reason::Documentation),
    // The deprecated 6to4 relay anycast prefix.
    (v4(192, 88, 99, 0, 24), Reason::Reserved),
    (v4(192, 168, 0, 0, 16), Reason::Private),
    (v4(198, 18, 0, 0, 15), Reason::Benchmarking),
    (v4(198, 51, 100, 0, 24), Reason::Documentation),
    (v4(203, 0, 113, 0, 24), Reason::Documentation),
    (v4(224, 0, 0, 0, 4), Reason::Multicast),
    (v4(255, 255, 255, 255, 32), Reason::Broadcast),
    (v4(240, 0, 0, 0, 4), Reason::Reserved),
];

/// IPv6 ranges inside or beside global unicast that are not globally reachable.
const V6_RANGES: &[(Ipv6Net, Reason)] = &[
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), Reason::LocalNat64),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), Reason::Discard),
    (
        v6([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48),
        Reason::Benchmarking,
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        Reason::Documentation,
    ),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), Reason::IetfProtocol),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), Reason::Documentation),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), Reason::UniqueLocal),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), Reason::LinkLocal),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), Reason::SiteLocal),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), Reason::Multicast),
];

/// Global unicast: every other IPv6 address is reserved.
const V6_GLOBAL: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);
const NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);
const TRANSLATED: Ipv6Net = v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96);
const COMPATIBLE: Ipv6Net = v6([0, 0, 0, 0, 0, 0, 0, 0], 96);

fn classify_v4(ip: Ipv4Addr) -> Option<Reason> {
    V4_RANGES
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, reason)| *reason)
}

/// The IPv4 address an IPv6 address embeds, and how.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<(Embedding, Ipv4Addr)> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from(bits as u32);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some((Embedding::Mapped, v4));
    }
    if NAT64.contains(&ip) {
        return Some((Embedding::Nat64, low));
    }
    if TRANSLATED.contains(&ip) {
        return Some((Embedding::Translated, low));
    }
    if SIX_TO_FOUR.contains(&ip) {
        return Some((Embedding::SixToFour, Ipv4Addr::from((bits >> 80) as u32)));
    }
    // :: and ::1 are themselves, not IPv4-compatible forms of 0.0.0.0 and 0.0.0.1.
    if COMPATIBLE.contains(&ip) && bits > 1 {
        return Some((Embedding::Compatible, low));
    }
    None
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if ip.is_unspecified() {
        return Some(Refusal::direct(Reason::Unspecified));
    }
    if ip.is_loopback() {
        return Some(Refusal::direct(Reason::Loopback));
    }
    if let Some((how, v4)) = embedded_v4(ip) {
        if let Some(reason) = classify_v4(v4) {
            return Some(Refusal {
                reason,
                embedded: Some((how, v4)),
            });
        }
        // Mapped, NAT64 and 6to4 forms of a public address reach that address; the
        // deprecated compatible and translated forms are not routed on the internet.
        return match how {
            Embedding::Mapped | Embedding::Nat64 | Embedding::SixToFour => None,
            Embedding::Compatible | Embedding::Translated => {
                Some(Refusal::direct(Reason::Reserved))
            }
        };
    }
    if let Some((_, reason)) = V6_RANGES.iter().find(|(net, _)| net.contains(&ip)) {
        return Some(Refusal::direct(*reason));
    }
    if !V6_GLOBAL.contains(&ip) {
        return Some(Refusal::direct(Reason::Reserved));
    }
    None
}

/// Why `ip` is not a public internet address, or `None` when it is.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(Refusal::direct),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Errors in guard settings.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GuardError {
    #[error(
        "{0:?} is not a network: give a CIDR such as 10.0.0.0/8 or fd00::/8, \
         or a single address"
    )]
    BadNetwork(String),
    #[error(
        "--allow-network {0} opens {1}, which turns the address guard off (loopback, your \
         private networks and cloud metadata at 169.254.169.254 become reachable): name the \
         networks your receivers are on, or add --allow-any-network \
         (HOOKRELAY_ALLOW_ANY_NETWORK=true) if you really mean every address"
    )]
    AnyNetwork(IpNet, &'static str),
}

/// The widest networks `--allow-network` opens on its own: no private range is wider than a
/// /8 (IPv4) or a /7 (IPv6, unique-local), so a wider one can only mean "everything".
const WIDEST_V4: u8 = 8;
const WIDEST_V6: u8 = 7;

/// Refuses networks wider than any non-public range, unless `any` (`--allow-any-network`)
/// says every address is really meant.
pub fn check_breadth(nets: &[IpNet], any: bool) -> Result<(), GuardError> {
    if any {
        return Ok(());
    }
    let too_wide = nets.iter().find(|net| match net {
        IpNet::V4(v4) => v4.prefix_len() < WIDEST_V4,
        IpNet::V6(v6) => v6.prefix_len() < WIDEST_V6,
    });
    match too_wide {
        Some(net) if net.prefix_len() == 0 => Err(GuardError::AnyNetwork(*net, "every address")),
        Some(net) => Err(GuardError::AnyNetwork(
            *net,
            "more than any private network spans",
        )),
        None => Ok(()),
    }
}

/// A refused connection: which host, which address, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The host as the URL gave it (a name, or the address itself).
    pub host: String,
    pub addr: IpAddr,
    pub refusal: Refusal,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let literal = self.host.trim_matches(['[', ']']).parse::<IpAddr>() == Ok(self.addr);
        if literal {
            write!(f, "refused {}: it is {}", self.addr, self.refusal)?;
        } else {
            write!(
                f,
                "refused {}: it resolves to {}, {}",
                self.host, self.addr, self.refusal
            )?;
        }
        write!(
            f,
            "; hookrelay does not send to non-public addresses: if this receiver is meant to be \
             reached, allow its network with --allow-network {} (or HOOKRELAY_ALLOW_NETWORKS)",
            IpNet::from(self.addr)
        )
    }
}

impl std::error::Error for Blocked {}

/// Networks an operator opened with `--allow-network`; everything public is always allowed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

impl AllowList {
    /// An allow list of these networks.
    pub fn new(nets: Vec<IpNet>) -> AllowList {
        AllowList { nets }
    }

    /// Loopback only (127.0.0.0/8 and ::1/128): for the demo and tests, whose receivers run
    /// on this machine.
    pub fn loopback() -> AllowList {
        AllowList::new(vec![
            IpNet::V4(v4(127, 0, 0, 0, 8)),
            IpNet::V6(v6([0, 0, 0, 0, 0, 0, 0, 1], 128)),
        ])
    }

    /// The networks opened.
    pub fn networks(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether an operator opened a network holding `ip` (or the IPv4 address it embeds).
    pub fn opens(&self, ip: IpAddr) -> bool {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(|(_, v4)| IpAddr::V4(v4)),
            IpAddr::V4(_) => None,
        };
        self.nets
            .iter()
            .any(|net| net.contains(&ip) || embedded.is_some_and(|e| net.contains(&e)))
    }

    /// Refuses `ip` unless it is public or in an opened network.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Blocked> {
        match classify(ip) {
            Some(refusal) if !self.opens(ip) => Err(Blocked {
                host: host.to_string(),
                addr: ip,
                refusal,
            }),
            _ => Ok(()),
        }
    }

    /// Checks a URL whose host is an IP literal (names are checked when resolved).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Blocked> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            // A name that parses as an address would be connected to directly: check it too.
            Some(url::Host::Domain(name)) => match name.parse() {
                Ok(ip) => ip,
                Err(_) => return Ok(()),
            },
            None => return Ok(()),
        };
        self.check(url.host_str().unwrap_or_default(), ip)
    }
}

/// Parses an `--allow-network` value: a CIDR, or a single address (a /32 or /128). Host bits
/// are cleared, so `10.1.2.3/8` opens 10.0.0.0/8.
pub fn parse_network(text: &str) -> Result<IpNet, GuardError> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| GuardError::BadNetwork(text.to_string()))
}

/// The HTTP client's resolver: resolves with the system resolver, refuses the name if any
/// of its addresses is refused, and otherwise returns exactly the addresses it checked, which
/// are the ones the client connects to.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow: Arc<AllowList>,
}

impl GuardedResolver {
    pub fn new(allow: AllowList) -> GuardedResolver {
        GuardedResolver {
            allow: Arc::new(allow),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                allow.check(&host, addr.ip())?;
            }
            let checked: Addrs = Box::new(addrs.into_iter());
            Ok(checked)
        })
    }
}

#[cfg(test)]
mod tests;
