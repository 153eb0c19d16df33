use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::FORWARDED;
use http::{Extensions, HeaderMap, HeaderName, Request};

use super::cidr::{Cidr, parse_all};
use crate::error::ConfigError;
use crate::reject::{AuthError, AuthErrorKind};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The address of the TCP peer of a request, for servers that do not record it in a form this
/// crate knows: insert it in the request extensions once per connection.
///
/// [`PeerAddr::from_extensions`] also finds axum's `ConnectInfo<SocketAddr>` (feature `axum`,
/// with `into_make_service_with_connect_info::<SocketAddr>()`) and tonic's `TcpConnectInfo`
/// (feature `tonic`, set by `tonic::transport::Server` for plain TCP connections).
///
/// ```
/// use http::Request;
/// use tower_bearer::network::PeerAddr;
///
/// let mut req = Request::new(());
/// req.extensions_mut().insert(PeerAddr("192.0.2.7:50123".parse().unwrap()));
/// assert_eq!(PeerAddr::from_extensions(req.extensions()).unwrap().port(), 50123);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

impl PeerAddr {
    /// The peer address recorded in `extensions`: a [`PeerAddr`], else axum's
    /// `ConnectInfo<SocketAddr>` (feature `axum`), else tonic's `TcpConnectInfo` (feature
    /// `tonic`). `None` when the server recorded none: such a peer is never a trusted proxy.
    pub fn from_extensions(extensions: &Extensions) -> Option<SocketAddr> {
        if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
            return Some(*addr);
        }
        #[cfg(feature = "axum")]
        if let Some(axum::extract::ConnectInfo(addr)) =
            extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(*addr);
        }
        #[cfg(feature = "tonic")]
        if let Some(addr) = extensions
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
        {
            return Some(addr);
        }
        None
    }
}

/// The scheme a request arrived with.
///
/// As a request extension it states the scheme of the *connection*: a server that terminates
/// TLS inserts `Scheme::Https` for every request of a TLS connection (for instance with
/// `axum::Extension(Scheme::Https)` on the router served by the TLS listener). A request
/// without it came over plain HTTP as far as this crate knows. The scheme of the request URI
/// (an absolute-form target, or the HTTP/2 `:scheme` pseudo-header) is never used: the client
/// chooses it freely, whatever the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP (or `ws`).
    Http,
    /// HTTP over TLS (or `wss`).
    Https,
}

impl Scheme {
    /// `https`/`wss` → [`Scheme::Https`], `http`/`ws` → [`Scheme::Http`] (any case); `None`
    /// for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("https") || text.eq_ignore_ascii_case("wss") {
            Some(Self::Https)
        } else if text.eq_ignore_ascii_case("http") || text.eq_ignore_ascii_case("ws") {
            Some(Self::Http)
        } else {
            None
        }
    }
}

/// Which forwarding header the trusted proxies write. Only that one is read: a proxy passes
/// the others through from the client unchanged, so they prove nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (client address, one entry appended per hop) and `X-Forwarded-Proto`
    /// (scheme): nginx, HAProxy, Envoy, Traefik, cloud load balancers. The default.
    #[default]
    XForwarded,
    /// RFC 7239 `Forwarded: for=…;proto=…`, one element per hop.
    Forwarded,
}

/// The proxies whose forwarding headers are believed, as a list of CIDR ranges, and the
/// header they write.
///
/// A request is judged on its TCP peer ([`PeerAddr::from_extensions`]). When that peer is in
/// the list, the forwarding header is read from the right (the entry the nearest proxy
/// appended) towards the left, skipping entries that are themselves trusted proxies; the
/// first entry that is not is the client, and its scheme is the one its proxy recorded. When
/// the peer is not in the list, or unknown, its forwarding headers are ignored: anyone can
/// send them. A trusted proxy that sends a malformed header gets a 400 rather than a guess.
///
/// Memory is fixed by configuration: the ranges live in one shared slice, and resolving a
/// request allocates only for the parsed header entries.
///
/// ```
/// use http::Request;
/// use tower_bearer::network::{PeerAddr, Scheme, TrustedProxies};
///
/// let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
/// let mut req = Request::builder()
///     .header("x-forwarded-for", "203.0.113.9, 10.1.1.1")
///     .header("x-forwarded-proto", "https")
///     .body(())
///     .unwrap();
/// req.extensions_mut().insert(PeerAddr("10.2.2.2:40000".parse().unwrap()));
/// let client = proxies.resolve(&req).unwrap();
/// assert_eq!(client.addr(), Some("203.0.113.9".parse().unwrap()));
/// assert_eq!(client.scheme(), Some(Scheme::Https));
///
/// // The same headers from a peer that is not a trusted proxy are ignored.
/// req.extensions_mut().insert(PeerAddr("198.51.100.1:40000".parse().unwrap()));
/// let client = proxies.resolve(&req).unwrap();
/// assert_eq!(client.addr(), Some("198.51.100.1".parse().unwrap()));
/// assert_eq!(client.scheme(), Some(Scheme::Http));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    ranges: Arc<[Cidr]>,
    header: ForwardedHeader,
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedProxies")
            .field("ranges", &self.ranges)
            .field("header", &self.header)
            .finish()
    }
}

impl TrustedProxies {
    /// No trusted proxy: forwarding headers are always ignored (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// The proxies in `ranges` (CIDR ranges or single addresses), writing `X-Forwarded-*`.
    pub fn new<I>(ranges: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Ok(Self::from_cidrs(parse_all(ranges)?))
    }

    /// The proxies in already parsed `ranges`, writing `X-Forwarded-*`.
    pub fn from_cidrs(ranges: impl IntoIterator<Item = Cidr>) -> Self {
        Self {
            ranges: ranges.into_iter().collect(),
            header: ForwardedHeader::default(),
        }
    }

    /// Reads `header` instead of `X-Forwarded-*`.
    #[must_use]
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Whether `addr` is a trusted proxy.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(addr))
    }

    /// The trusted ranges.
    pub fn ranges(&self) -> &[Cidr] {
        &self.ranges
    }

    /// The effective client address and scheme of `req`; an `invalid_request` error
    /// ([`AuthErrorKind::InvalidForwarded`]) when a trusted proxy sent a forwarding header
    /// this crate cannot read.
    pub fn resolve<B>(&self, req: &Request<B>) -> Result<ClientInfo, AuthError> {
        let peer = PeerAddr::from_extensions(req.extensions()).map(|a| a.ip().to_canonical());
        let connection = req
            .extensions()
            .get::<Scheme>()
            .copied()
            .unwrap_or(Scheme::Http);
        let direct = ClientInfo {
            addr: peer,
            scheme: Some(connection),
            forwarded: false,
        };
        let Some(peer) = peer.filter(|p| self.contains(*p)) else {
            return Ok(direct);
        };
        let hops = match self.header {
            ForwardedHeader::XForwarded => x_forwarded(req.headers()),
            ForwardedHeader::Forwarded => forwarded(req.headers()),
        }
        .map_err(|reason| {
            AuthError::new(AuthErrorKind::InvalidForwarded)
                .with_description(format!("malformed forwarding header: {reason}"))
        })?;
        let Some(hops) = hops else {
            return Ok(ClientInfo {
                addr: Some(peer),
                ..direct
            });
        };
        if hops.entries.is_empty() {
            // A scheme without a client address (`X-Forwarded-Proto` alone): the client is
            // the proxy's own peer, unknown to us.
            return Ok(ClientInfo {
                addr: None,
                scheme: hops.lone_proto.or(Some(connection)),
                forwarded: true,
            });
        }
        let mut chosen = &hops.entries[0];
        for hop in hops.entries.iter().rev() {
            chosen = hop;
            match hop.addr {
                Some(addr) if self.contains(addr) => continue,
                _ => break,
            }
        }
        Ok(ClientInfo {
            addr: chosen.addr,
            scheme: chosen.proto,
            forwarded: true,
        })
    }
}

/// Who sent a request, as far as the [`TrustedProxies`] allow telling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    addr: Option<IpAddr>,
    scheme: Option<Scheme>,
    forwarded: bool,
}

impl ClientInfo {
    /// The client address: the TCP peer, or the one a trusted proxy forwarded. `None` when the
    /// server recorded no peer address, or the proxy forwarded `unknown` or an obfuscated
    /// identifier. IPv4-mapped IPv6 addresses are given as IPv4.
    pub fn addr(&self) -> Option<IpAddr> {
        self.addr
    }

    /// The scheme the client used: the connection's ([`Scheme`] extension, plain HTTP when
    /// absent), or the one a trusted proxy forwarded. `None` when a trusted proxy forwarded the
    /// request without saying which scheme the client used.
    pub fn scheme(&self) -> Option<Scheme> {
        self.scheme
    }

    /// Whether the answer comes from a trusted proxy's forwarding header.
    pub fn is_forwarded(&self) -> bool {
        self.forwarded
    }
}

/// Whether `headers` carry any forwarding header (trusted or not).
pub(crate) fn has_forwarding_headers(headers: &HeaderMap) -> bool {
    [&FORWARDED, &X_FORWARDED_FOR, &X_FORWARDED_PROTO, &X_REAL_IP]
        .into_iter()
        .any(|h| headers.contains_key(h))
}

/// One hop of a forwarding chain: the address that connected to a proxy, and the scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hop {
    addr: Option<IpAddr>,
    proto: Option<Scheme>,
}

/// The parsed chain, left (the original client) to right (the nearest proxy's peer).
#[derive(Debug, Default, PartialEq, Eq)]
struct Hops {
    entries: Vec<Hop>,
    /// A scheme stated without any address (`X-Forwarded-Proto` alone).
    lone_proto: Option<Scheme>,
}

/// Every comma-separated element of every `name` header, trimmed, empty ones skipped;
/// `Ok(None)` when the header is absent.
fn list_elements(headers: &HeaderMap, name: &HeaderName) -> Result<Option<Vec<String>>, String> {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for value in values {
        let text = value
            .to_str()
            .map_err(|_| format!("{name} is not visible ASCII"))?;
        out.extend(
            text.split(',')
                .map(|e| e.trim_matches([' ', '\t']))
                .filter(|e| !e.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(Some(out))
}

/// `X-Forwarded-For` and `X-Forwarded-Proto`. The scheme of an address is the
/// `X-Forwarded-Proto` entry at the same position when both lists have the same length, the
/// only entry when there is one, and unknown when there is none; any other count is an error.
fn x_forwarded(headers: &HeaderMap) -> Result<Option<Hops>, String> {
    let addrs = list_elements(headers, &X_FORWARDED_FOR)?;
    let protos = list_elements(headers, &X_FORWARDED_PROTO)?;
    if addrs.is_none() && protos.is_none() {
        return Ok(None);
    }
    let protos = protos
        .unwrap_or_default()
        .iter()
        .map(|p| Scheme::parse(p).ok_or_else(|| format!("unknown scheme {:?}", clip(p))))
        .collect::<Result<Vec<_>, _>>()?;
    let addrs = addrs
        .unwrap_or_default()
        .iter()
        .map(|a| parse_xff_entry(a))
        .collect::<Result<Vec<_>, _>>()?;
    let lone = match protos.as_slice() {
        [] => None,
        [one] => Some(*one),
        _ if protos.len() == addrs.len() => None,
        _ => {
            return Err(format!(
                "{} X-Forwarded-Proto entries for {} X-Forwarded-For entries",
                protos.len(),
                addrs.len()
            ));
        }
    };
    let aligned = protos.len() == addrs.len();
    let entries = addrs
        .into_iter()
        .enumerate()
        .map(|(i, addr)| Hop {
            addr,
            proto: if aligned { Some(protos[i]) } else { lone },
        })
        .collect();
    Ok(Some(Hops {
        entries,
        lone_proto: lone,
    }))
}

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address, optionally `[v6]`, `v4:port` or
/// `[v6]:port` (some load balancers add the port), or `unknown`.
fn parse_xff_entry(entry: &str) -> Result<Option<IpAddr>, String> {
    if entry.eq_ignore_ascii_case("unknown") {
        return Ok(None);
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(Some(ip.to_canonical()));
    }
    if let Ok(sock) = entry.parse::<SocketAddr>() {
        return Ok(Some(sock.ip().to_canonical()));
    }
    if let Some(inner) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']'))
        && let Ok(ip) = inner.parse::<std::net::Ipv6Addr>()
    {
        return Ok(Some(IpAddr::V6(ip).to_canonical()));
    }
    Err(format!("bad X-Forwarded-For entry {:?}", clip(entry)))
}

/// RFC 7239 `Forwarded`: one hop per element, from its `for` and `proto` parameters.
fn forwarded(headers: &HeaderMap) -> Result<Option<Hops>, String> {
    let mut values = headers.get_all(FORWARDED).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let mut entries = Vec::new();
    for value in values {
        let text = value
            .to_str()
            .map_err(|_| "Forwarded is not visible ASCII".to_owned())?;
        for element in parse_forwarded(text)? {
            let mut hop = Hop {
                addr: None,
                proto: None,
            };
            for (name, value) in element {
                match name.as_str() {
                    "for" => hop.addr = parse_node(&value)?,
                    "proto" => {
                        hop.proto = Some(Scheme::parse(&value).ok_or_else(|| {
                            format!("unknown scheme {:?} in Forwarded", clip(&value))
                        })?);
                    }
                    _ => {}
                }
            }
            entries.push(hop);
        }
    }
    Ok(Some(Hops {
        entries,
        lone_proto: None,
    }))
}

/// The elements of one `Forwarded` value, each a list of (lower-case name, unquoted value).
/// Empty list elements are skipped (RFC 9110 §5.6.1); a parameter twice in one element is an
/// error (RFC 7239 §4).
fn parse_forwarded(text: &str) -> Result<Vec<Vec<(String, String)>>, String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut elements = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    let skip_ows = |i: &mut usize| {
        while *i < bytes.len() && matches!(bytes[*i], b' ' | b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ows(&mut i);
        if i == bytes.len() {
            break;
        }
        match bytes[i] {
            b',' => {
                if !current.is_empty() {
                    elements.push(std::mem::take(&mut current));
                }
                i += 1;
                continue;
            }
            b';' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        if i == start || i == bytes.len() || bytes[i] != b'=' {
            return Err("Forwarded: expected name=value".to_owned());
        }
        let name = text[start..i].to_ascii_lowercase();
        i += 1;
        let value = if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
            let mut value = String::new();
            loop {
                match bytes.get(i) {
                    None => return Err("Forwarded: unterminated quoted string".to_owned()),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let Some(&c) = bytes.get(i + 1) else {
                            return Err("Forwarded: unterminated quoted string".to_owned());
                        };
                        value.push(char::from(c));
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(char::from(c));
                        i += 1;
                    }
                }
            }
            value
        } else {
            let start = i;
            while i < bytes.len() && is_tchar(bytes[i]) {
                i += 1;
            }
            if i == start {
                return Err(format!("Forwarded: empty value for {name}"));
            }
            text[start..i].to_owned()
        };
        if current.iter().any(|(n, _)| *n == name) {
            return Err(format!("Forwarded: {name} twice in one element"));
        }
        current.push((name, value));
        skip_ows(&mut i);
        match bytes.get(i) {
            None | Some(b',' | b';') => {}
            Some(_) => return Err("Forwarded: expected ; or , after a value".to_owned()),
        }
    }
    if !current.is_empty() {
        elements.push(current);
    }
    Ok(elements)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 7239 §6 `node`: `IPv4[:port]`, `"[IPv6][:port]"`, `unknown` or an obfuscated `_name`
/// (the last two give no address).
fn parse_node(node: &str) -> Result<Option<IpAddr>, String> {
    let bad = || format!("bad Forwarded node {:?}", clip(node));
    let (name, port) = if let Some(rest) = node.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        let ip = v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        if let Some(p) = port
            && !valid_port(p)
        {
            return Err(bad());
        }
        return Ok(Some(IpAddr::V6(ip).to_canonical()));
    } else {
        match node.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (node, None),
        }
    };
    if let Some(p) = port
        && !valid_port(p)
    {
        return Err(bad());
    }
    if name.eq_ignore_ascii_case("unknown") || is_obfuscated(name) {
        return Ok(None);
    }
    name.parse::<std::net::Ipv4Addr>()
        .map(|ip| Some(IpAddr::V4(ip)))
        .map_err(|_| bad())
}

/// `node-port = port / obfport`.
fn valid_port(p: &str) -> bool {
    (!p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok())
        || is_obfuscated(p)
}

/// `"_" 1*( ALPHA / DIGIT / "." / "_" / "-" )`.
fn is_obfuscated(s: &str) -> bool {
    s.len() > 1
        && s.starts_with('_')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// At most 64 characters of client input, for an error description.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn hop(addr: Option<&str>, proto: Option<Scheme>) -> Hop {
        Hop {
            addr: addr.map(ip),
            proto,
        }
    }

    #[test]
    fn forwarded_examples_of_rfc_7239() {
        let h = headers(&[(
            "forwarded",
            r#"for="_gazonk", For="[2001:db8:cafe::17]:4711", for=192.0.2.60;proto=http;by=203.0.113.43, for=198.51.100.17;proto=HTTPS"#,
        )]);
        let hops = forwarded(&h).unwrap().unwrap();
        assert_eq!(
            hops.entries,
            vec![
                hop(None, None),
                hop(Some("2001:db8:cafe::17"), None),
                hop(Some("192.0.2.60"), Some(Scheme::Http)),
                hop(Some("198.51.100.17"), Some(Scheme::Https)),
            ]
        );
    }

    #[test]
    fn forwarded_several_header_lines_and_empty_elements() {
        let h = headers(&[
            ("forwarded", "for=192.0.2.1;proto=https,, "),
            ("forwarded", r#"for="10.0.0.1:8080""#),
            ("forwarded", "for=unknown"),
        ]);
        let hops = forwarded(&h).unwrap().unwrap();
        assert_eq!(
            hops.entries,
            vec![
                hop(Some("192.0.2.1"), Some(Scheme::Https)),
                hop(Some("10.0.0.1"), None),
                hop(None, None),
            ]
        );
        assert_eq!(forwarded(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn forwarded_quoted_values_may_hold_separators() {
        let elems = parse_forwarded(r#"for="[::1]";ext="a,b;c\"d", for=10.0.0.1"#).unwrap();
        assert_eq!(elems.len(), 2);
        assert_eq!(elems[0][1], ("ext".to_owned(), "a,b;c\"d".to_owned()));
    }

    #[test]
    fn malformed_forwarded_is_an_error() {
        for bad in [
            "for",
            "for=",
            "=1.2.3.4",
            "for=1.2.3.4 proto=https",
            r#"for="1.2.3.4"#,
            "for=1.2.3.4;for=5.6.7.8",
            "for=[2001:db8::1]",
            r#"for="2001:db8::1""#,
            r#"for="[2001:db8::1"]"#,
            r#"for="[2001:db8::1]x""#,
            "for=1.2.3.4:99999",
            "for=1.2.3.4:",
            "for=example.com",
            "for=1.2.3",
            "for=1.2.3.4;proto=gopher",
            "for=_",
        ] {
            let h = headers(&[("forwarded", bad)]);
            assert!(forwarded(&h).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn x_forwarded_alignment() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
            ("x-forwarded-proto", "https, http"),
        ]);
        let hops = x_forwarded(&h).unwrap().unwrap();
        assert_eq!(
            hops.entries,
            vec![
                hop(Some("203.0.113.9"), Some(Scheme::Https)),
                hop(Some("10.0.0.1"), Some(Scheme::Http)),
            ]
        );
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            (
                "x-forwarded-for",
                "10.0.0.1:4431, [2001:db8::2]:80, [2001:db8::3], 2001:db8::4",
            ),
            ("x-forwarded-proto", "HTTPS"),
        ]);
        let hops = x_forwarded(&h).unwrap().unwrap();
        assert_eq!(hops.entries.len(), 5);
        assert!(hops.entries.iter().all(|h| h.proto == Some(Scheme::Https)));
        assert_eq!(hops.entries[1].addr, Some(ip("10.0.0.1")));
        assert_eq!(hops.entries[4].addr, Some(ip("2001:db8::4")));
        let h = headers(&[("x-forwarded-for", "unknown, ::ffff:192.0.2.1")]);
        let hops = x_forwarded(&h).unwrap().unwrap();
        assert_eq!(
            hops.entries,
            vec![hop(None, None), hop(Some("192.0.2.1"), None)]
        );
        let h = headers(&[("x-forwarded-proto", "https")]);
        let hops = x_forwarded(&h).unwrap().unwrap();
        assert_eq!(hops.entries, vec![]);
        assert_eq!(hops.lone_proto, Some(Scheme::Https));
        assert_eq!(x_forwarded(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn malformed_x_forwarded_is_an_error() {
        for (xff, xfp) in [
            ("not-an-ip", "https"),
            ("1.2.3.4:", "https"),
            ("1.2.3.4/8", "https"),
            ("1.2.3.4", "gopher"),
            ("1.2.3.4, 5.6.7.8, 9.9.9.9", "https, http"),
            ("[1.2.3.4]", "https"),
        ] {
            let h = headers(&[("x-forwarded-for", xff), ("x-forwarded-proto", xfp)]);
            assert!(x_forwarded(&h).is_err(), "{xff:?} {xfp:?}");
        }
        let h = headers(&[("x-forwarded-proto", "https, http")]);
        assert!(x_forwarded(&h).is_err());
    }

    #[test]
    fn error_descriptions_clip_client_input() {
        let long = "x".repeat(500);
        let err = parse_xff_entry(&long).unwrap_err();
        assert!(err.len() < 120, "{err}");
    }
}
