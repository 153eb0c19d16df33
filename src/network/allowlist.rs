use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::cidr::{Cidr, parse_all};
use super::forwarded::TrustedProxies;
use crate::audit;
use crate::body::FromRejection;
use crate::error::ConfigError;
pub use crate::guard::ResponseFuture;
use crate::principal::Principal;
use crate::reject::{AuthError, AuthErrorKind, Renderer};

/// Claim value → the ranges of its rule.
type ClaimRules = HashMap<Box<str>, Box<[Cidr]>>;

/// The rules of an [`IpAllowlistLayer`], fixed at build time.
#[derive(Default)]
struct Rules {
    clients: HashMap<Box<str>, Box<[Cidr]>>,
    /// Claim name → claim value → ranges.
    claims: HashMap<Box<str>, ClaimRules>,
    /// Ranges for principals no rule names; `None`: they pass.
    unlisted: Option<Box<[Cidr]>>,
    proxies: TrustedProxies,
}

impl fmt::Debug for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rules")
            .field("clients", &self.clients)
            .field("claims", &self.claims)
            .field("unlisted", &self.unlisted)
            .field("proxies", &self.proxies)
            .finish()
    }
}

impl Rules {
    /// The range lists that apply to `principal`: its client id's, and one per claim rule its
    /// claims match; the unlisted ranges when none does. Empty: the principal is unrestricted.
    fn applicable<'a>(&'a self, principal: &Principal) -> Vec<&'a [Cidr]> {
        let mut out: Vec<&[Cidr]> = Vec::new();
        if let Some(ranges) = principal.client_id().and_then(|c| self.clients.get(c)) {
            out.push(ranges);
        }
        for (claim, values) in &self.claims {
            // Strings match by value, numbers and booleans by their JSON text (`42`, `true`),
            // so a rule for "42" is not dodged by a numeric claim.
            let scalar = |v: &Value| match v {
                Value::String(s) => values.get(s.as_str()),
                Value::Number(_) | Value::Bool(_) => values.get(v.to_string().as_str()),
                _ => None,
            };
            match principal.claim(claim) {
                Some(Value::Array(items)) => {
                    out.extend(items.iter().filter_map(scalar).map(|r| &**r))
                }
                Some(v) => out.extend(scalar(v).map(|r| &**r)),
                None => {}
            }
        }
        if out.is_empty()
            && let Some(unlisted) = &self.unlisted
        {
            out.push(unlisted);
        }
        out
    }
}

/// Builds an [`IpAllowlistLayer`]; see there.
#[derive(Debug, Default)]
#[must_use]
pub struct IpAllowlistBuilder {
    rules: Rules,
    errors: Vec<ConfigError>,
}

impl IpAllowlistBuilder {
    fn ranges<I>(&mut self, what: &str, ranges: I) -> Option<Box<[Cidr]>>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        match parse_all(ranges) {
            Ok(r) => Some(r),
            Err(e) => {
                self.errors.push(ConfigError::new(format!("{what}: {e}")));
                None
            }
        }
    }

    /// Requests of the client `client_id` (the token's `client_id`, or `azp`) must come from
    /// `ranges` (CIDR ranges or single addresses; an empty list denies every address).
    pub fn client<I>(mut self, client_id: &str, ranges: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let what = format!("client {client_id:?}");
        if let Some(r) = self.ranges(&what, ranges)
            && self.rules.clients.insert(client_id.into(), r).is_some()
        {
            self.errors
                .push(ConfigError::new(format!("{what} configured twice")));
        }
        self
    }

    /// Requests whose token has the claim `claim` equal to `value` (a string claim, or an array
    /// of strings containing it) must come from `ranges`.
    pub fn claim<I>(mut self, claim: &str, value: &str, ranges: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let what = format!("claim {claim:?} = {value:?}");
        if let Some(r) = self.ranges(&what, ranges)
            && self
                .rules
                .claims
                .entry(claim.into())
                .or_default()
                .insert(value.into(), r)
                .is_some()
        {
            self.errors
                .push(ConfigError::new(format!("{what} configured twice")));
        }
        self
    }

    /// Principals that no rule names must come from `ranges` (by default they pass).
    pub fn unlisted<I>(mut self, ranges: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        if let Some(r) = self.ranges("unlisted principals", ranges) {
            self.rules.unlisted = Some(r);
        }
        self
    }

    /// Principals that no rule names are denied.
    pub fn deny_unlisted(mut self) -> Self {
        self.rules.unlisted = Some(Box::new([]));
        self
    }

    /// Judges the client address through these proxies (see [`TrustedProxies`]); by default
    /// the TCP peer is the client.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.rules.proxies = proxies;
        self
    }

    /// The layer, or the first configuration mistake (a bad range, a rule given twice).
    pub fn build(self) -> Result<IpAllowlistLayer, ConfigError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        Ok(IpAllowlistLayer {
            rules: Arc::new(self.rules),
            renderer: None,
        })
    }
}

/// Applies [`IpAllowlist`]: per-client IP allowlists, judged after authentication.
///
/// Rules map a client id (the token's `client_id`, or `azp`) or a claim value to the CIDR
/// ranges its requests must come from. Every rule that applies to a principal must allow the
/// client address; a principal no rule names passes, unless
/// [`unlisted`](IpAllowlistBuilder::unlisted) or
/// [`deny_unlisted`](IpAllowlistBuilder::deny_unlisted) says otherwise. The client address is
/// the TCP peer ([`PeerAddr::from_extensions`](super::PeerAddr::from_extensions)), or the one a
/// [trusted proxy](IpAllowlistBuilder::trusted_proxies) forwarded, judged exactly as
/// [`TransportPolicy`](super::TransportPolicy) judges it. A request whose address cannot be
/// known (the server records no peer address, the proxy forwarded `unknown`) fails every rule.
///
/// Put it *after* (inside) [`BearerAuthLayer`](crate::BearerAuthLayer), like a
/// [`ScopeGuardLayer`](crate::scope::ScopeGuardLayer). A request outside its ranges gets a 403
/// with `{"error":"access_denied"}` and no `WWW-Authenticate` challenge (another token would
/// not help; RFC 6750 has no code for this, and `insufficient_scope` would be a lie), gRPC
/// PERMISSION_DENIED ([`AuthErrorKind::AddressNotAllowed`]); a request without a
/// [`Principal`] gets a 401. Memory is fixed by the configuration.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_bearer::BearerAuthLayer;
/// use tower_bearer::keys::{Algorithm, Key};
/// use tower_bearer::network::{IpAllowlistLayer, TrustedProxies};
/// use tower_bearer::validate::Jwt;
///
/// let allowlist = IpAllowlistLayer::builder()
///     .client("billing-batch", ["10.20.0.0/16", "2001:db8:20::/48"])
///     .claim("tenant", "acme", ["192.0.2.0/24"])
///     .trusted_proxies(TrustedProxies::new(["10.0.0.1"]).unwrap())
///     .build()
///     .unwrap();
/// let jwt = Jwt::builder()
///     .key(Key::hmac(b"0123456789abcdef0123456789abcdef", Algorithm::HS256).unwrap())
///     .audience("api")
///     .build()
///     .unwrap();
/// let app: Router = Router::new()
///     .route("/invoices", get(|| async { "ok" }))
///     .layer(allowlist)
///     .layer(BearerAuthLayer::new(jwt));
/// // Serve with `app.into_make_service_with_connect_info::<std::net::SocketAddr>()` so the
/// // peer address is known.
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct IpAllowlistLayer {
    rules: Arc<Rules>,
    renderer: Option<Renderer>,
}

impl IpAllowlistLayer {
    /// An empty rule set, to fill in.
    pub fn builder() -> IpAllowlistBuilder {
        IpAllowlistBuilder::default()
    }

    /// Renders rejections with `renderer`; by default the one of the bearer layer in front
    /// (see [`Renderer::render_inside`]).
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.renderer = Some(renderer);
        self
    }

    /// Whether `principal` may call from `addr` (`None`: an unknown address).
    pub fn allows(&self, principal: &Principal, addr: Option<IpAddr>) -> bool {
        permits(&self.rules.applicable(principal), addr)
    }

    /// Decides `req`: `Ok` to let it through, `Err` with the rejection (and the caller).
    fn check<B>(&self, req: &Request<B>) -> Result<(), (Option<Principal>, AuthError)> {
        let Some(principal) = req.extensions().get::<Principal>() else {
            return Err((None, AuthErrorKind::MissingCredentials.into()));
        };
        let applicable = self.rules.applicable(principal);
        if applicable.is_empty() {
            return Ok(());
        }
        let refuse = |err: AuthError| (Some(principal.clone()), err);
        let client = self.rules.proxies.resolve(req).map_err(refuse)?;
        if permits(&applicable, client.addr()) {
            Ok(())
        } else {
            Err(refuse(AuthErrorKind::AddressNotAllowed.into()))
        }
    }
}

/// Whether `addr` is in one of the ranges of every list (an unknown address is in none).
fn permits(applicable: &[&[Cidr]], addr: Option<IpAddr>) -> bool {
    applicable
        .iter()
        .all(|ranges| addr.is_some_and(|a| ranges.iter().any(|r| r.contains(a))))
}

impl<S> Layer<S> for IpAllowlistLayer {
    type Service = IpAllowlist<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IpAllowlist {
            inner,
            layer: self.clone(),
        }
    }
}

/// Lets a request through only when its client address is allowed for its [`Principal`];
/// see [`IpAllowlistLayer`].
#[derive(Clone, Debug)]
pub struct IpAllowlist<S> {
    inner: S,
    layer: IpAllowlistLayer,
}

impl<S> IpAllowlist<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for IpAllowlist<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: FromRejection,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.layer.check(&req) {
            // Decided here: the instance `poll_ready` made ready is called here, so nothing
            // is cloned (the future never calls the inner service).
            Ok(()) => ResponseFuture::calling(self.inner.call(req)),
            Err((principal, err)) => {
                // Decided at once, as a scope guard does: no latency to report.
                audit::denied(principal.as_ref(), &err, audit::Started::NONE);
                ResponseFuture::rejected(self.layer.renderer.as_ref(), &req, err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::TokenFingerprint;
    use serde_json::json;

    fn principal(claims: Value) -> Principal {
        Principal::from_claims(
            claims.as_object().unwrap().clone(),
            TokenFingerprint::of_bytes(b"t"),
        )
        .unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn rules_by_client_and_claim() {
        let layer = IpAllowlistLayer::builder()
            .client("batch", ["10.0.0.0/8"])
            .claim("tenant", "acme", ["10.1.0.0/16", "2001:db8::/32"])
            .claim("groups", "ops", ["10.1.2.0/24"])
            .build()
            .unwrap();
        let batch = principal(json!({"client_id": "batch"}));
        assert!(layer.allows(&batch, ip("10.200.0.1")));
        assert!(!layer.allows(&batch, ip("192.0.2.1")));
        assert!(!layer.allows(&batch, None));
        let azp = principal(json!({"azp": "batch"}));
        assert!(!layer.allows(&azp, ip("192.0.2.1")));
        // Both rules apply: the address must satisfy each.
        let both = principal(json!({"client_id": "batch", "tenant": "acme"}));
        assert!(layer.allows(&both, ip("10.1.9.9")));
        assert!(!layer.allows(&both, ip("10.2.0.1")));
        assert!(!layer.allows(&both, ip("2001:db8::1")));
        let ops = principal(json!({"groups": ["dev", "ops"]}));
        assert!(layer.allows(&ops, ip("10.1.2.3")));
        assert!(!layer.allows(&ops, ip("10.1.3.3")));
        // No rule: unrestricted; a non-string claim matches nothing.
        let other = principal(json!({"client_id": "web", "tenant": 7}));
        assert!(layer.allows(&other, ip("203.0.113.1")));
        assert!(layer.allows(&other, None));
    }

    #[test]
    fn unlisted_principals() {
        let layer = IpAllowlistLayer::builder()
            .client("batch", ["10.0.0.0/8"])
            .unlisted(["192.0.2.0/24"])
            .build()
            .unwrap();
        let web = principal(json!({"client_id": "web"}));
        assert!(layer.allows(&web, ip("192.0.2.10")));
        assert!(!layer.allows(&web, ip("10.0.0.1")));
        let batch = principal(json!({"client_id": "batch"}));
        assert!(layer.allows(&batch, ip("10.0.0.1")));
        let deny = IpAllowlistLayer::builder().deny_unlisted().build().unwrap();
        assert!(!deny.allows(&web, ip("127.0.0.1")));
        let empty = IpAllowlistLayer::builder()
            .client("batch", Vec::<String>::new())
            .build()
            .unwrap();
        assert!(!empty.allows(&batch, ip("10.0.0.1")));
    }

    #[test]
    fn configuration_mistakes() {
        let e = IpAllowlistLayer::builder()
            .client("batch", ["10.0.0.1/8"])
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("client \"batch\""), "{e}");
        assert!(
            IpAllowlistLayer::builder()
                .client("a", ["10.0.0.0/8"])
                .client("a", ["10.0.0.0/8"])
                .build()
                .is_err()
        );
        assert!(
            IpAllowlistLayer::builder()
                .claim("t", "x", ["::/0"])
                .claim("t", "x", ["::/0"])
                .build()
                .is_err()
        );
        assert!(
            IpAllowlistLayer::builder()
                .unlisted(["nope"])
                .build()
                .is_err()
        );
    }
}
