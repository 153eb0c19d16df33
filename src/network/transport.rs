use std::net::IpAddr;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderName, HeaderValue, Request, Uri};

use super::forwarded::{ClientInfo, Scheme, TrustedProxies, has_forwarding_headers};
use crate::extract::{Extractor, TokenSource};
use crate::reject::{AuthError, AuthErrorKind};

const DPOP: HeaderName = HeaderName::from_static("dpop");

/// Where bearer credentials may arrive from: an option of
/// [`BearerAuthLayer::transport`](crate::BearerAuthLayer::transport), checked before any token
/// is read.
///
/// [`TransportPolicy::https_only`] refuses a request that did not reach the service over
/// HTTPS with 400 `invalid_request` ([`AuthErrorKind::InsecureTransport`]; gRPC
/// UNAUTHENTICATED), whether or not it carries a token: a token sent over plain HTTP must be
/// considered disclosed, and the client should learn that before it sends one. The scheme is
/// the connection's (a [`Scheme`] extension the TLS-terminating server inserts; plain HTTP
/// without it) or, when the TCP peer is one of the [`TrustedProxies`], the one the proxy
/// forwarded. Requests from a loopback client are let through by default (they never crossed
/// a network), unless an untrusted loopback peer sent forwarding headers: then it is a proxy on
/// the same host relaying someone else, and it should be listed as a trusted proxy.
///
/// Without this option (the default of the layer) the scheme is not checked: the layer cannot
/// see where TLS ends, and guessing would reject every request of a service behind a
/// TLS-terminating proxy that is not configured as trusted.
///
/// ```
/// use http::{Request, StatusCode};
/// use tower_bearer::network::{PeerAddr, Scheme, TransportPolicy, TrustedProxies};
///
/// let policy = TransportPolicy::https_only()
///     .trusted_proxies(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
///
/// // Plain HTTP from a remote client: refused.
/// let mut req = Request::new(());
/// req.extensions_mut().insert(PeerAddr("203.0.113.9:50000".parse().unwrap()));
/// assert_eq!(policy.check(&req).unwrap_err().status(), StatusCode::BAD_REQUEST);
///
/// // The same connection over TLS: accepted.
/// req.extensions_mut().insert(Scheme::Https);
/// assert!(policy.check(&req).is_ok());
///
/// // Through the trusted proxy, which terminated TLS.
/// let mut req = Request::builder().header("x-forwarded-proto", "https").body(()).unwrap();
/// req.extensions_mut().insert(PeerAddr("10.0.0.2:50000".parse().unwrap()));
/// assert!(policy.check(&req).is_ok());
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct TransportPolicy {
    proxies: TrustedProxies,
    allow_loopback: bool,
}

impl TransportPolicy {
    /// Only HTTPS (loopback clients excepted, see [`TransportPolicy::allow_loopback`]), with no
    /// trusted proxy.
    pub fn https_only() -> Self {
        Self {
            proxies: TrustedProxies::none(),
            allow_loopback: true,
        }
    }

    /// Believes the forwarding headers of these proxies.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Whether plain HTTP is accepted from a loopback client (`127.0.0.0/8`, `::1`); on by
    /// default. Turn it off when a proxy on the same host forwards without forwarding headers.
    pub fn allow_loopback(mut self, allow: bool) -> Self {
        self.allow_loopback = allow;
        self
    }

    /// The trusted proxies.
    pub fn proxies(&self) -> &TrustedProxies {
        &self.proxies
    }

    /// Decides `req`: the resolved client, or the rejection (`InsecureTransport`, or
    /// `InvalidForwarded` when a trusted proxy sent a malformed forwarding header).
    pub fn check<B>(&self, req: &Request<B>) -> Result<ClientInfo, AuthError> {
        let client = self.proxies.resolve(req)?;
        if client.scheme() == Some(Scheme::Https) {
            return Ok(client);
        }
        // Only a direct loopback peer that relays nobody: a loopback address forwarded by a
        // proxy (or spoofed left of trusted hops) says nothing about the client's transport.
        let local = client.addr().is_some_and(is_loopback)
            && !client.is_forwarded()
            && !has_forwarding_headers(req.headers());
        if self.allow_loopback && local {
            return Ok(client);
        }
        let description = if client.scheme().is_none() {
            "https required: the proxy did not forward the scheme"
        } else {
            "https required"
        };
        Err(AuthError::new(AuthErrorKind::InsecureTransport).with_description(description))
    }
}

fn is_loopback(addr: IpAddr) -> bool {
    addr.to_canonical().is_loopback()
}

/// Marks the credential headers of `req` sensitive (so HTTP/2 and HTTP/3 encoders never index
/// them), and with `strip` removes the credential the extractor read (`source`) so the inner
/// service never sees it.
pub(crate) fn protect_credentials<B>(
    req: &mut Request<B>,
    extractor: &Extractor,
    strip: bool,
    source: TokenSource,
) {
    let custom = extractor.header_name();
    let cookie = extractor.cookie_name();
    let headers = req.headers_mut();
    // Runs on every request: one pass over the fields (every value of each credential
    // header), no hashing and no allocation.
    for (name, value) in headers.iter_mut() {
        if name == AUTHORIZATION
            || name == DPOP
            || (cookie.is_some() && name == COOKIE)
            || custom.is_some_and(|custom| name == custom)
        {
            value.set_sensitive(true);
        }
    }
    if !strip {
        return;
    }
    headers.remove(AUTHORIZATION);
    match source {
        TokenSource::Header => {
            if let Some(name) = custom {
                headers.remove(name);
            }
        }
        TokenSource::Cookie => {
            if let Some(name) = cookie {
                strip_cookie(headers, name);
            }
        }
        TokenSource::Query => strip_query(req.uri_mut()),
        _ => {}
    }
}

/// Removes the cookie `name` from every `Cookie` header, dropping headers left empty.
fn strip_cookie(headers: &mut http::HeaderMap, name: &str) {
    let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    headers.remove(COOKIE);
    for value in values {
        let kept: Vec<&[u8]> = value
            .as_bytes()
            .split(|b| *b == b';')
            .map(trim_ows)
            .filter(|pair| {
                !pair.is_empty()
                    && pair
                        .iter()
                        .position(|b| *b == b'=')
                        .is_none_or(|eq| &pair[..eq] != name.as_bytes())
            })
            .collect();
        if kept.is_empty() {
            continue;
        }
        if let Ok(mut v) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
            v.set_sensitive(true);
            headers.append(COOKIE, v);
        }
    }
}

/// Removes every `access_token` parameter from the query of `uri`.
fn strip_query(uri: &mut Uri) {
    let Some(query) = uri.query() else { return };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| p.split_once('=').map_or(*p, |(k, _)| k) != "access_token")
        .collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(new) = Uri::from_parts(parts) {
        *uri = new;
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::PeerAddr;

    fn req(peer: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut r = b.body(()).unwrap();
        r.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        r
    }

    #[test]
    fn loopback_exemption() {
        let p = TransportPolicy::https_only();
        assert!(p.check(&req("127.0.0.1:1", &[])).is_ok());
        assert!(p.check(&req("[::1]:1", &[])).is_ok());
        assert!(p.check(&req("[::ffff:127.0.0.1]:1", &[])).is_ok());
        // A same-host proxy relaying someone else is not a local client.
        let relayed = req("127.0.0.1:1", &[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            p.check(&relayed).unwrap_err().kind(),
            AuthErrorKind::InsecureTransport
        );
        let strict = TransportPolicy::https_only().allow_loopback(false);
        assert!(strict.check(&req("127.0.0.1:1", &[])).is_err());
        // Unknown peer: not local.
        assert!(p.check(&Request::new(())).is_err());
    }

    #[test]
    fn strips_only_the_credential_cookie() {
        let mut h = http::HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; at=secret; b=2"));
        h.append(COOKIE, HeaderValue::from_static("at=secret"));
        strip_cookie(&mut h, "at");
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2"]);
        assert!(all[0].is_sensitive());
    }

    #[test]
    fn strips_the_query_token() {
        let mut uri: Uri = "/r?a=1&access_token=secret&b=2".parse().unwrap();
        strip_query(&mut uri);
        assert_eq!(uri, "/r?a=1&b=2");
        let mut uri: Uri = "http://h/r?access_token=secret".parse().unwrap();
        strip_query(&mut uri);
        assert_eq!(uri, "http://h/r");
    }
}
