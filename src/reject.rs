//! Rejections: the typed [`AuthError`] and the one component that renders it.
//!
//! Every refusal of the crate is an [`AuthError`]. The [`Renderer`] turns it into a response:
//!
//! - **HTTP**: the status of RFC 6750 §3.1 (400 `invalid_request`, 401 `invalid_token` or no
//!   credentials, 403 `insufficient_scope`, 429, 503) with a
//!   `WWW-Authenticate: Bearer realm="…", error="…", error_description="…"` challenge, a small
//!   JSON body (replaceable with [`Renderer::with_body`]) and `Cache-Control: no-store`.
//! - **gRPC** (request `content-type: application/grpc*`): a trailers-only response, HTTP 200
//!   with `grpc-status` UNAUTHENTICATED (16), PERMISSION_DENIED (7), RESOURCE_EXHAUSTED (8)
//!   or UNAVAILABLE (14) and a percent-encoded `grpc-message`.
//!
//! The [`AuthError`] is also put in the response extensions, so outer layers can inspect it.
//!
//! ```
//! use http::{Request, StatusCode, header::WWW_AUTHENTICATE};
//! use tower_bearer::reject::{AuthError, AuthErrorKind, Renderer};
//!
//! let renderer = Renderer::new("example");
//! let request = Request::new(());
//! let err = AuthError::new(AuthErrorKind::Expired);
//! let response = renderer.render::<_, http_body_util::Full<bytes::Bytes>>(&request, err);
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     response.headers()[WWW_AUTHENTICATE],
//!     r#"Bearer realm="example", error="invalid_token", error_description="token expired""#
//! );
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};

use crate::body::FromRejection;
use crate::intern::Text;
use crate::principal::TokenFingerprint;

/// What went wrong, precisely. The wire form (status, `error` code) follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No credentials in any enabled source (401, challenge without `error`).
    MissingCredentials,
    /// More than one credential (two `Authorization` headers, header and query…) (400).
    MultipleCredentials,
    /// A credential that is empty or outside the RFC 6750 `b64token` charset (400).
    MalformedCredentials,
    /// A token longer than the configured cap, refused before any decoding (400).
    TokenTooLarge,
    /// Not a compact JWS: wrong number of parts, bad base64url, bad JSON (401).
    MalformedToken,
    /// The algorithm is unknown, `none`, or not the one the key is for (401).
    AlgorithmNotAllowed,
    /// No configured key matches the token (401).
    UnknownKey,
    /// The signature does not verify (401).
    InvalidSignature,
    /// `exp` has passed (401).
    Expired,
    /// `nbf` is in the future (401).
    NotYetValid,
    /// `iat` is in the future (401).
    IssuedInFuture,
    /// A required claim is absent (401).
    MissingClaim,
    /// A claim has the wrong JSON type (401).
    InvalidClaimType,
    /// `iss` is not the configured issuer (401).
    InvalidIssuer,
    /// `aud` does not contain the configured audience (401).
    InvalidAudience,
    /// The header has a `crit` parameter naming an extension this crate does not implement (401).
    UnsupportedCritical,
    /// The `typ` header is not the one required (RFC 9068 `at+jwt`) (401).
    InvalidTokenType,
    /// `exp − iat` exceeds the configured maximum lifetime, or the token is older than the
    /// maximum age (401).
    LifetimeExceeded,
    /// The token was revoked (401).
    Revoked,
    /// The token is not active: unused for longer than the idle limit, or reported inactive
    /// by introspection (401).
    Inactive,
    /// Any other reason an authenticator refused the token (401).
    InvalidToken,
    /// The token is valid but lacks a scope the resource needs (403).
    InsufficientScope,
    /// The caller is over its rate limit (429).
    RateLimited,
    /// A dependency (key endpoint, introspection, store) is unavailable (503).
    Unavailable,
    /// The request did not arrive over HTTPS and the layer requires it (400
    /// `invalid_request`); see [`TransportPolicy`](crate::network::TransportPolicy).
    InsecureTransport,
    /// A trusted proxy sent a `Forwarded` / `X-Forwarded-*` header that cannot be read (400
    /// `invalid_request`).
    InvalidForwarded,
    /// The client address is outside the ranges allowed for this caller (403, no challenge;
    /// gRPC PERMISSION_DENIED); see [`IpAllowlistLayer`](crate::network::IpAllowlistLayer).
    AddressNotAllowed,
    /// The DPoP proof (RFC 9449) is missing, malformed, badly signed, for another request, too
    /// old, replayed, or its `ath` is not the hash of the token (401,
    /// `error="invalid_dpop_proof"`, `WWW-Authenticate: DPoP`).
    InvalidDpopProof,
    /// The DPoP proof lacks a valid server nonce: retry with the one in the `DPoP-Nonce` header
    /// (401, `error="use_dpop_nonce"`, RFC 9449 §9).
    UseDpopNonce,
    /// The token is bound to a key (`cnf.jkt`) or a certificate (`cnf.x5t#S256`) the request
    /// did not prove possession of, or a DPoP-bound token came with the `Bearer` scheme (401
    /// `invalid_token`).
    KeyBindingMismatch,
    /// The route needs a sender-constrained token (DPoP or mTLS-bound), and a plain bearer
    /// token came; or it takes plain bearer tokens only (401 `invalid_token`).
    SenderConstraintRequired,
}

/// The class of a rejection on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// No credentials: 401 with a bare challenge.
    Unauthenticated,
    /// RFC 6750 `invalid_request`: 400.
    InvalidRequest,
    /// RFC 6750 `invalid_token`: 401.
    InvalidToken,
    /// RFC 6750 `insufficient_scope`: 403.
    InsufficientScope,
    /// Too many requests: 429.
    RateLimited,
    /// Service unavailable: 503.
    Unavailable,
    /// Refused for a reason another token would not fix (client address not allowed): 403
    /// without a challenge, `access_denied` in the body, gRPC PERMISSION_DENIED.
    Forbidden,
}

impl AuthErrorKind {
    /// The wire class of this kind.
    pub fn class(self) -> ErrorClass {
        use AuthErrorKind::*;
        match self {
            MissingCredentials => ErrorClass::Unauthenticated,
            MultipleCredentials | MalformedCredentials | TokenTooLarge | InsecureTransport
            | InvalidForwarded => ErrorClass::InvalidRequest,
            AddressNotAllowed => ErrorClass::Forbidden,
            InsufficientScope => ErrorClass::InsufficientScope,
            RateLimited => ErrorClass::RateLimited,
            Unavailable => ErrorClass::Unavailable,
            _ => ErrorClass::InvalidToken,
        }
    }

    /// The `error` code sent in the challenge: the class's RFC 6750 code, except for the DPoP
    /// kinds, which have their own (RFC 9449 §7.1, §9): `invalid_dpop_proof`,
    /// `use_dpop_nonce`.
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            AuthErrorKind::InvalidDpopProof => Some("invalid_dpop_proof"),
            AuthErrorKind::UseDpopNonce => Some("use_dpop_nonce"),
            _ => self.class().error_code(),
        }
    }

    /// A stable snake_case name, used as the `reason` of audit events.
    pub fn as_str(self) -> &'static str {
        use AuthErrorKind::*;
        match self {
            MissingCredentials => "missing_credentials",
            MultipleCredentials => "multiple_credentials",
            MalformedCredentials => "malformed_credentials",
            TokenTooLarge => "token_too_large",
            MalformedToken => "malformed_token",
            AlgorithmNotAllowed => "algorithm_not_allowed",
            UnknownKey => "unknown_key",
            InvalidSignature => "invalid_signature",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            IssuedInFuture => "issued_in_future",
            MissingClaim => "missing_claim",
            InvalidClaimType => "invalid_claim_type",
            InvalidIssuer => "invalid_issuer",
            InvalidAudience => "invalid_audience",
            UnsupportedCritical => "unsupported_crit",
            InvalidTokenType => "invalid_token_type",
            LifetimeExceeded => "lifetime_exceeded",
            Revoked => "revoked",
            Inactive => "inactive",
            InvalidToken => "invalid_token",
            InsufficientScope => "insufficient_scope",
            RateLimited => "rate_limited",
            Unavailable => "unavailable",
            InsecureTransport => "insecure_transport",
            InvalidForwarded => "invalid_forwarded",
            AddressNotAllowed => "address_not_allowed",
            InvalidDpopProof => "invalid_dpop_proof",
            UseDpopNonce => "use_dpop_nonce",
            KeyBindingMismatch => "key_binding_mismatch",
            SenderConstraintRequired => "sender_constraint_required",
        }
    }

    fn default_description(self) -> &'static str {
        use AuthErrorKind::*;
        match self {
            MissingCredentials => "bearer token required",
            MultipleCredentials => "more than one credential",
            MalformedCredentials => "malformed bearer credentials",
            TokenTooLarge => "token too large",
            MalformedToken => "malformed token",
            AlgorithmNotAllowed => "algorithm not allowed",
            UnknownKey => "unknown signing key",
            InvalidSignature => "invalid signature",
            Expired => "token expired",
            NotYetValid => "token not yet valid",
            IssuedInFuture => "token issued in the future",
            MissingClaim => "required claim missing",
            InvalidClaimType => "claim has the wrong type",
            InvalidIssuer => "invalid issuer",
            InvalidAudience => "invalid audience",
            UnsupportedCritical => "unsupported critical header",
            InvalidTokenType => "invalid token type",
            LifetimeExceeded => "token lifetime exceeded",
            Revoked => "token revoked",
            Inactive => "token inactive",
            InvalidToken => "invalid token",
            InsufficientScope => "insufficient scope",
            RateLimited => "rate limit exceeded",
            Unavailable => "authentication temporarily unavailable",
            InsecureTransport => "https required",
            InvalidForwarded => "malformed forwarding header",
            AddressNotAllowed => "client address not allowed",
            InvalidDpopProof => "invalid DPoP proof",
            UseDpopNonce => "DPoP nonce required",
            KeyBindingMismatch => "token not bound to the presented key",
            SenderConstraintRequired => "sender-constrained token required",
        }
    }
}

impl ErrorClass {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorClass::Unauthenticated | ErrorClass::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorClass::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorClass::InsufficientScope | ErrorClass::Forbidden => StatusCode::FORBIDDEN,
            ErrorClass::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 `error` code, where one applies.
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            ErrorClass::InvalidRequest => Some("invalid_request"),
            ErrorClass::InvalidToken => Some("invalid_token"),
            ErrorClass::InsufficientScope => Some("insufficient_scope"),
            _ => None,
        }
    }

    /// The gRPC status code.
    pub fn grpc_code(self) -> u8 {
        match self {
            ErrorClass::Unauthenticated | ErrorClass::InvalidRequest | ErrorClass::InvalidToken => {
                16
            }
            ErrorClass::InsufficientScope | ErrorClass::Forbidden => 7,
            ErrorClass::RateLimited => 8,
            ErrorClass::Unavailable => 14,
        }
    }
}

/// A rejection. Its message is safe to show to a client: it never holds token material.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthError(
    // Boxed: the results every admitted request passes along stay a pointer wide.
    Box<Details>,
);

#[derive(Clone, PartialEq, Eq)]
struct Details {
    kind: AuthErrorKind,
    description: Cow<'static, str>,
    scope: Option<Arc<str>>,
    retry_after: Option<Duration>,
    fingerprint: Option<TokenFingerprint>,
    kid: Option<Box<str>>,
    dpop: bool,
    dpop_nonce: Option<Arc<str>>,
}

impl AuthError {
    /// An error of `kind` with its default description.
    pub fn new(kind: AuthErrorKind) -> Self {
        Self(Box::new(Details {
            kind,
            description: Cow::Borrowed(kind.default_description()),
            scope: None,
            retry_after: None,
            fingerprint: None,
            kid: None,
            dpop: false,
            dpop_nonce: None,
        }))
    }

    /// Records the fingerprint of the refused token, for the audit log (never sent to the
    /// client).
    #[must_use]
    pub fn with_context(mut self, fingerprint: TokenFingerprint) -> Self {
        self.0.fingerprint.get_or_insert(fingerprint);
        self
    }

    /// Records the key id the refused token named, for the audit log (never sent to the
    /// client). It is chosen by whoever sent the token: control characters (line breaks,
    /// escapes), Unicode line and paragraph separators and bidirectional controls are kept
    /// out of the log as U+FFFD.
    #[must_use]
    pub fn with_kid(mut self, kid: &str) -> Self {
        let unsafe_in_logs = |c: char| {
            c.is_control()
                || matches!(
                    c,
                    '\u{2028}'
                        | '\u{2029}'
                        | '\u{200e}'
                        | '\u{200f}'
                        | '\u{202a}'..='\u{202e}'
                        | '\u{2066}'..='\u{2069}'
                )
        };
        self.0.kid = Some(
            kid.chars()
                .map(|c| if unsafe_in_logs(c) { '\u{fffd}' } else { c })
                .collect(),
        );
        self
    }

    /// Marks the error as one of the `DPoP` authentication scheme (RFC 9449 §7.1): the
    /// challenge is then `WWW-Authenticate: DPoP …` instead of `Bearer …`.
    #[must_use]
    pub fn with_dpop_challenge(mut self) -> Self {
        self.0.dpop = true;
        self
    }

    /// Whether the challenge uses the `DPoP` scheme.
    pub fn is_dpop_challenge(&self) -> bool {
        self.0.dpop
    }

    /// Attaches a server nonce, sent in the `DPoP-Nonce` response header (RFC 9449 §9).
    /// Nonces are opaque server values, never token material.
    #[must_use]
    pub fn with_dpop_nonce(mut self, nonce: impl Into<Arc<str>>) -> Self {
        self.0.dpop_nonce = Some(nonce.into());
        self
    }

    /// The server nonce sent with this rejection, if any.
    pub fn dpop_nonce(&self) -> Option<&str> {
        self.0.dpop_nonce.as_deref()
    }

    /// The fingerprint of the refused token, when it was far enough parsed to have one.
    pub fn fingerprint(&self) -> Option<TokenFingerprint> {
        self.0.fingerprint
    }

    /// The key id the refused token named, if recorded.
    pub fn kid(&self) -> Option<&str> {
        self.0.kid.as_deref()
    }

    /// Replaces the description. It is sent to the client in `error_description`, so it must
    /// never contain token material; characters outside printable ASCII, `"` and `\` are
    /// dropped (RFC 6750 §3).
    #[must_use]
    pub fn with_description(mut self, description: impl Into<Cow<'static, str>>) -> Self {
        self.0.description = sanitize(description.into());
        self
    }

    /// A 403 `insufficient_scope` naming the scopes the resource needs (space-delimited; the
    /// `scope` attribute is left out when empty).
    pub fn insufficient_scope(required: impl Into<Arc<str>>) -> Self {
        let required: Arc<str> = required.into();
        let clean = sanitize(Cow::Owned(required.to_string()));
        let mut err = Self::new(AuthErrorKind::InsufficientScope);
        if !clean.is_empty() {
            err.0.description = Cow::Owned(format!("insufficient scope: requires {clean}"));
            err.0.scope = Some(Arc::from(clean.as_ref()));
        }
        err
    }

    /// A 429 telling the client to come back after `retry_after`.
    pub fn rate_limited(retry_after: Duration) -> Self {
        let mut err = Self::new(AuthErrorKind::RateLimited);
        err.0.retry_after = Some(retry_after);
        err
    }

    /// A 401 `invalid_token` with a custom description.
    pub fn invalid_token(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::InvalidToken).with_description(description)
    }

    /// What went wrong.
    pub fn kind(&self) -> AuthErrorKind {
        self.0.kind
    }

    /// The wire class.
    pub fn class(&self) -> ErrorClass {
        self.0.kind.class()
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.class().status()
    }

    /// The short, client-safe description.
    pub fn description(&self) -> &str {
        &self.0.description
    }

    /// The scopes required, for `insufficient_scope`.
    pub fn required_scope(&self) -> Option<&str> {
        self.0.scope.as_deref()
    }

    /// The retry delay, for rate limits.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }
}

impl From<AuthErrorKind> for AuthError {
    fn from(kind: AuthErrorKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Debug for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("AuthError");
        d.field("kind", &self.0.kind)
            .field("description", &self.0.description);
        if let Some(scope) = &self.0.scope {
            d.field("scope", scope);
        }
        if let Some(retry) = &self.0.retry_after {
            d.field("retry_after", retry);
        }
        if let Some(fp) = &self.0.fingerprint {
            d.field("fingerprint", fp);
        }
        if let Some(kid) = &self.0.kid {
            d.field("kid", kid);
        }
        if self.0.dpop {
            d.field("dpop", &true);
        }
        d.finish()
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.description)
    }
}

impl std::error::Error for AuthError {}

/// Keeps only what RFC 6750 allows in `error_description` / `scope`:
/// `%x20-21 / %x23-5B / %x5D-7E`.
fn sanitize(s: Cow<'static, str>) -> Cow<'static, str> {
    let ok = |c: char| matches!(c, '\x20'..='\x7e') && c != '"' && c != '\\';
    if s.chars().all(ok) {
        s
    } else {
        Cow::Owned(s.chars().filter(|c| ok(*c)).collect())
    }
}

/// Escapes a string for use inside an RFC 9110 `quoted-string`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' | '\x20'..='\x7e' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
    out
}

/// A replacement body for HTTP rejections, as produced by a [`Renderer::with_body`] function.
#[derive(Debug, Clone)]
pub struct RejectionBody {
    /// The `Content-Type` of the body.
    pub content_type: HeaderValue,
    /// The body bytes.
    pub body: Bytes,
}

type BodyFn = dyn Fn(&AuthError) -> RejectionBody + Send + Sync;

/// Renders [`AuthError`]s as HTTP or gRPC responses; one per layer.
#[derive(Clone)]
pub struct Renderer {
    /// Interned: cloned into every request's extensions, where an `Arc` would be a reference
    /// count written by every thread.
    realm: Text,
    body: Option<Arc<BodyFn>>,
    /// The `algs` of `DPoP` challenges, when the layer accepts DPoP (RFC 9449 §7.1).
    dpop_algs: Option<Arc<str>>,
    /// Renders exactly as the default one does (kept, not compared per request).
    default: bool,
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("realm", &self.realm)
            .field("custom_body", &self.body.is_some())
            .field("dpop_algs", &self.dpop_algs)
            .finish()
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new("api")
    }
}

/// In a refusal's response extensions: rendered with the default renderer by a layer that
/// had no other (see [`Renderer::inside`]), for the bearer layer around it to render again
/// in its own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DefaultRendered;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec): everything outside
/// printable ASCII, plus `%` itself.
const GRPC_MESSAGE_SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

impl Renderer {
    /// Whether this renders exactly as [`Renderer::default`] does.
    pub(crate) fn is_default(&self) -> bool {
        self.default
    }

    /// `self`, with [`is_default`](Self::is_default) brought up to date.
    fn settled(mut self) -> Self {
        self.default = &*self.realm == "api" && self.body.is_none() && self.dpop_algs.is_none();
        self
    }

    /// Makes `self` the renderer of the guards inside the layer. Through the request
    /// extensions only when it offers DPoP (the sender guard's error depends on it): any
    /// other refusal a guard inside renders with the default renderer is marked
    /// ([`DefaultRendered`]) and rendered again by the layer on its way out
    /// ([`rerender`](Self::rerender)), which costs nothing per admitted request where an
    /// extension costs an allocation. An outer layer's renderer is taken out.
    pub(crate) fn install<B>(&self, req: &mut http::Request<B>) {
        if self.offers_dpop() {
            req.extensions_mut().insert(self.clone());
        } else if req.extensions().get::<Renderer>().is_some() {
            req.extensions_mut().remove::<Renderer>();
        }
    }

    /// The renderer a layer behind a bearer layer refuses with: its own (`configured`),
    /// else the bearer layer's from the request extensions, else the default, in which case
    /// the refusal is marked for the bearer layer to render again (see [`install`]).
    ///
    /// [`install`]: Self::install
    pub(crate) fn inside<'r, ReqBody>(
        configured: Option<&'r Renderer>,
        req: &'r Request<ReqBody>,
    ) -> (Cow<'r, Renderer>, bool) {
        match configured.or_else(|| req.extensions().get::<Renderer>()) {
            Some(r) => (Cow::Borrowed(r), false),
            None => (Cow::Owned(Renderer::default()), true),
        }
    }

    /// Renders `err` for a layer or a handler behind a bearer layer, in that layer's renderer:
    /// the default one, marked so that the bearer layer renders the refusal again in its own
    /// on the way out (or the layer's own, when it put it in the request extensions: it does
    /// when it offers DPoP). The crate's guards answer this way; so can yours.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use http_body_util::Full;
    /// use bytes::Bytes;
    /// use tower_bearer::reject::{AuthError, AuthErrorKind, Renderer};
    ///
    /// let req = Request::new(());
    /// let res: Response<Full<Bytes>> =
    ///     Renderer::render_inside(&req, AuthError::new(AuthErrorKind::InsufficientScope));
    /// assert_eq!(res.status(), 403);
    /// ```
    pub fn render_inside<ReqBody, B: FromRejection>(
        req: &Request<ReqBody>,
        err: AuthError,
    ) -> Response<B> {
        let (renderer, by_default) = Self::inside(None, req);
        let mut res = renderer.render(req, err);
        if by_default {
            Self::mark_default(&mut res);
        }
        res
    }

    /// Marks `res`, a refusal rendered with the default renderer by a layer that had none
    /// (see [`inside`](Self::inside)), for the bearer layer around it.
    pub(crate) fn mark_default<B>(res: &mut Response<B>) {
        res.extensions_mut().insert(DefaultRendered);
    }

    /// On the bearer layer's way out: a refusal from inside that was rendered with the default
    /// renderer ([`DefaultRendered`]) is claimed (so no outer layer renders it again) and,
    /// when `renderer` is given (the layer's, when not the default), rendered again with it.
    /// The refusal's other fields (rate-limit fields, anything a layer inside added) stay.
    #[inline]
    pub(crate) fn rerender<B: FromRejection>(renderer: Option<&Renderer>, res: &mut Response<B>) {
        // Every admitted response passes here: most have no extensions at all.
        if res.extensions().get::<DefaultRendered>().is_some() {
            Self::rerender_marked(renderer, res);
        }
    }

    fn rerender_marked<B: FromRejection>(renderer: Option<&Renderer>, res: &mut Response<B>) {
        res.extensions_mut().remove::<DefaultRendered>();
        let (Some(renderer), Some(err)) = (renderer, res.extensions().get::<AuthError>().cloned())
        else {
            return;
        };
        let grpc = res.headers().contains_key(GRPC_STATUS);
        let (fresh, body) = if grpc {
            renderer.render_grpc::<B>(err)
        } else {
            renderer.render_http::<B>(err)
        }
        .into_parts();
        let headers = res.headers_mut();
        // The body changes: its length is the new body's.
        headers.remove(http::header::CONTENT_LENGTH);
        for name in fresh.headers.keys() {
            headers.remove(name);
        }
        for (name, value) in &fresh.headers {
            headers.append(name, value.clone());
        }
        *res.status_mut() = fresh.status;
        *res.body_mut() = body;
    }

    /// A renderer whose challenges name `realm`.
    pub fn new(realm: impl Into<String>) -> Self {
        Self {
            realm: Text::new(&realm.into()),
            body: None,
            dpop_algs: None,
            default: false,
        }
        .settled()
    }

    /// The same renderer with another realm.
    #[must_use]
    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Text::new(&realm.into());
        self.settled()
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Replaces the body of HTTP rejections (status and headers stay as they are), e.g. with
    /// `application/problem+json`.
    #[must_use]
    pub fn with_body<F>(mut self, f: F) -> Self
    where
        F: Fn(&AuthError) -> RejectionBody + Send + Sync + 'static,
    {
        self.body = Some(Arc::new(f));
        self.settled()
    }

    /// Names the algorithms of the `algs` parameter of `DPoP` challenges (space-separated);
    /// set by the bearer layer when it accepts DPoP proofs.
    #[must_use]
    pub(crate) fn with_dpop_algs(mut self, algs: Option<Arc<str>>) -> Self {
        self.dpop_algs = algs;
        self.settled()
    }

    /// Whether the layer that set this renderer accepts DPoP proofs.
    pub(crate) fn offers_dpop(&self) -> bool {
        self.dpop_algs.is_some()
    }

    /// The `WWW-Authenticate` value for `err`: RFC 6750 §3 (`Bearer …`), or RFC 9449 §7.1
    /// (`DPoP …`, with `algs` when the layer accepts DPoP) for an error of the DPoP scheme.
    pub fn challenge(&self, err: &AuthError) -> String {
        let scheme = if err.0.dpop { "DPoP" } else { "Bearer" };
        let mut out = format!("{scheme} realm={}", quote(&self.realm));
        if let Some(code) = err.kind().error_code() {
            out.push_str(", error=\"");
            out.push_str(code);
            out.push('"');
            if !err.0.description.is_empty() {
                out.push_str(", error_description=\"");
                out.push_str(&err.0.description);
                out.push('"');
            }
        }
        if let Some(scope) = &err.0.scope {
            out.push_str(", scope=\"");
            out.push_str(scope);
            out.push('"');
        }
        if err.0.dpop {
            self.push_algs(&mut out);
        }
        out
    }

    /// A bare `DPoP realm="…", algs="…"` challenge, offered beside the `Bearer` one when a
    /// request carries no credentials and the layer accepts DPoP.
    fn bare_dpop_challenge(&self) -> Option<String> {
        self.dpop_algs.as_ref()?;
        let mut out = format!("DPoP realm={}", quote(&self.realm));
        self.push_algs(&mut out);
        Some(out)
    }

    fn push_algs(&self, out: &mut String) {
        if let Some(algs) = &self.dpop_algs {
            out.push_str(", algs=");
            out.push_str(&quote(algs));
        }
    }

    /// Whether `req` is a gRPC call (`content-type: application/grpc` or `application/grpc+…`).
    pub fn is_grpc<B>(req: &Request<B>) -> bool {
        req.headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
    }

    /// Renders `err` for `req`: a gRPC trailers-only response for gRPC calls, an RFC 6750
    /// response otherwise. The error is stored in the response extensions.
    pub fn render<ReqBody, B: FromRejection>(
        &self,
        req: &Request<ReqBody>,
        err: AuthError,
    ) -> Response<B> {
        if Self::is_grpc(req) {
            self.render_grpc(err)
        } else {
            self.render_http(err)
        }
    }

    /// Renders `err` as an HTTP response.
    pub fn render_http<B: FromRejection>(&self, err: AuthError) -> Response<B> {
        let class = err.class();
        let (content_type, body) = match &self.body {
            Some(f) => {
                let b = f(&err);
                (b.content_type, b.body)
            }
            None => (
                HeaderValue::from_static("application/json"),
                default_body(&err),
            ),
        };
        let mut res = Response::new(B::from_rejection(body));
        *res.status_mut() = class.status();
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, content_type);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(
            class,
            ErrorClass::Unauthenticated
                | ErrorClass::InvalidRequest
                | ErrorClass::InvalidToken
                | ErrorClass::InsufficientScope
        ) && let Ok(v) = HeaderValue::try_from(self.challenge(&err))
        {
            headers.insert(WWW_AUTHENTICATE, v);
            if class == ErrorClass::Unauthenticated
                && !err.0.dpop
                && let Some(dpop) = self.bare_dpop_challenge()
                && let Ok(v) = HeaderValue::try_from(dpop)
            {
                headers.append(WWW_AUTHENTICATE, v);
            }
        }
        insert_dpop_nonce(headers, &err);
        if let Some(retry) = err.0.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(retry)));
        }
        res.extensions_mut().insert(err);
        res
    }

    /// Renders `err` as a gRPC trailers-only response.
    pub fn render_grpc<B: FromRejection>(&self, err: AuthError) -> Response<B> {
        let class = err.class();
        let mut res = Response::new(B::from_rejection(Bytes::new()));
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(class.grpc_code())));
        let encoded =
            percent_encoding::utf8_percent_encode(&err.0.description, GRPC_MESSAGE_SET).to_string();
        if let Ok(v) = HeaderValue::try_from(encoded) {
            headers.insert(GRPC_MESSAGE, v);
        }
        insert_dpop_nonce(headers, &err);
        if let Some(retry) = err.0.retry_after {
            headers.insert(
                HeaderName::from_static("retry-after"),
                HeaderValue::from(retry_after_secs(retry)),
            );
        }
        res.extensions_mut().insert(err);
        res
    }
}

/// The `DPoP-Nonce` response header (RFC 9449 §8).
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

fn insert_dpop_nonce(headers: &mut http::HeaderMap, err: &AuthError) {
    if let Some(nonce) = &err.0.dpop_nonce
        && let Ok(v) = HeaderValue::try_from(&**nonce)
    {
        headers.insert(DPOP_NONCE, v);
    }
}

/// Whole seconds, rounded up, at least 1 for any non-zero delay.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs();
    if d.subsec_nanos() > 0 { secs + 1 } else { secs }
}

fn default_body(err: &AuthError) -> Bytes {
    let code = err.kind().error_code().unwrap_or(match err.class() {
        ErrorClass::RateLimited => "rate_limited",
        ErrorClass::Unavailable => "temporarily_unavailable",
        ErrorClass::Forbidden => "access_denied",
        _ => "unauthorized",
    });
    // `description` is sanitized printable ASCII without `"` or `\`, so it needs no escaping.
    Bytes::from(format!(
        r#"{{"error":"{code}","error_description":"{}"}}"#,
        err.0.description
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_sanitized() {
        let err = AuthError::invalid_token("bad \"token\" \\ é\n");
        assert_eq!(err.description(), "bad token  ");
    }

    #[test]
    fn key_ids_keep_control_characters_out_of_logs() {
        let err = AuthError::new(AuthErrorKind::UnknownKey)
            .with_kid("k1\r\n2026-01-01 INFO forged line\u{1b}[31m");
        assert_eq!(
            err.kid(),
            Some("k1\u{fffd}\u{fffd}2026-01-01 INFO forged line\u{fffd}[31m")
        );
        assert_eq!(
            err.clone().with_kid("a\u{2028}b\u{202e}c\u{2066}").kid(),
            Some("a\u{fffd}b\u{fffd}c\u{fffd}")
        );
        assert_eq!(err.with_kid("rsa-1 é").kid(), Some("rsa-1 é"));
    }

    #[test]
    fn realm_is_quoted() {
        let r = Renderer::new("a\"b\\c");
        let c = r.challenge(&AuthError::new(AuthErrorKind::MissingCredentials));
        assert_eq!(c, r#"Bearer realm="a\"b\\c""#);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn every_kind_maps_to_a_class_and_code() {
        use AuthErrorKind::*;
        for (kind, status, grpc) in [
            (MissingCredentials, 401, 16),
            (MultipleCredentials, 400, 16),
            (Expired, 401, 16),
            (InsufficientScope, 403, 7),
            (RateLimited, 429, 8),
            (Unavailable, 503, 14),
        ] {
            assert_eq!(kind.class().status().as_u16(), status, "{kind:?}");
            assert_eq!(kind.class().grpc_code(), grpc, "{kind:?}");
        }
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        let r = Renderer::default();
        let res: Response<crate::body::AuthBody<http_body_util::Empty<Bytes>>> =
            r.render_grpc(AuthError::invalid_token("100% bad"));
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "16");
        assert_eq!(res.headers()["grpc-message"], "100%25 bad");
    }
}
