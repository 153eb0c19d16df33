//! Opaque access tokens through OAuth 2.0 token introspection (RFC 7662; feature
//! `introspection`).
//!
//! [`Introspection`] is an [`Authenticator`] that asks the authorization server about each
//! token it has not seen recently:
//!
//! - **the request**: `POST` to the introspection endpoint with an
//!   `application/x-www-form-urlencoded` body `token=…&token_type_hint=access_token`, the
//!   resource server authenticating itself with HTTP Basic (RFC 7662 §2.1, RFC 6749 §2.3.1: the
//!   client id and secret are form-urlencoded before base64) or a bearer token;
//! - **strict answers**: only an HTTP 200 whose body is a JSON object (no duplicate members)
//!   counts as an answer; `active` must be the JSON boolean `true` (the string `"true"`, `1` or
//!   a missing member mean inactive: 401 `invalid_token`, [`AuthErrorKind::Inactive`]); `exp`,
//!   when present, must be a number in the future (no leeway: the authorization server said
//!   when the token ends); `nbf` and `iat`, when present, numbers no later than now plus the
//!   leeway (default 60 s); `scope`, `sub`, `client_id`, `username`, `token_type`, `iss` and
//!   `jti` strings; `aud` a string or an array of strings. A configured issuer or audience is
//!   required and compared exactly, as for [`Jwt`](crate::validate::Jwt);
//! - **failures are never a pass**: a non-200 status, a body that is not a JSON object, a body
//!   over the size cap (default 64 KiB), a timeout (default 3 s for the whole call) or a
//!   connection error answer 503 / gRPC `UNAVAILABLE` ([`AuthErrorKind::Unavailable`]), are
//!   logged as a warning with target `tower_bearer::introspection` (with the token's
//!   fingerprint, never the token) and are not cached;
//! - **a bounded cache** (default 100,000 entries) keyed by the SHA-256 digest of the token,
//!   never the token itself: an active token is remembered for at most the configured TTL
//!   (default 60 s) and never past its `exp`, whose passing is also re-checked against the
//!   [`Clock`] on every hit; a refusal is remembered for the negative TTL (default 5 s);
//! - **single-flight**: concurrent requests carrying the same unknown token wait for one
//!   `POST`;
//! - **bounded calls**: at most [`max_in_flight`](IntrospectionBuilder::max_in_flight) calls
//!   (default 32) are under way at once; an unknown token that would need another is refused
//!   at once with 503 rather than queued, so a flood of forged tokens (each a distinct miss)
//!   or an endpoint that stopped answering cannot hammer the endpoint or pile up requests,
//!   while cached tokens keep working.
//!
//! The HTTP client is yours: anything implementing [`HttpClient::post_form`] (feature
//! `reqwest`: `reqwest::Client`, the default, with a 5 s connect timeout).
//!
//! ```no_run
//! # #[cfg(feature = "reqwest")]
//! # fn example() -> Result<(), tower_bearer::ConfigError> {
//! use std::time::Duration;
//! use tower_bearer::BearerAuthLayer;
//! use tower_bearer::introspection::Introspection;
//!
//! let introspection = Introspection::builder("https://login.example.com/oauth2/introspect")
//!     .client(reqwest::Client::new())
//!     .client_basic("orders-api", "s3cret")
//!     .issuer("https://login.example.com")
//!     .audience("api://orders")
//!     .cache_ttl(Duration::from_secs(30))
//!     .build()?;
//! let layer = BearerAuthLayer::new(introspection);
//! # let _ = layer; Ok(()) }
//! ```
//!
//! With a client of your own (here one that answers in memory):
//!
//! ```
//! use tower_bearer::extract::{BearerToken, TokenSource};
//! use tower_bearer::introspection::Introspection;
//! use tower_bearer::jwks::{BoxFuture, FetchError, HttpClient, HttpResponse};
//! use tower_bearer::validate::Authenticator;
//!
//! struct Canned;
//!
//! impl HttpClient for Canned {
//!     fn get<'a>(&'a self, url: &'a str, _: usize) -> BoxFuture<'a, Result<HttpResponse, FetchError>> {
//!         Box::pin(async move { Err(FetchError::new(format!("GET {url}: not used"))) })
//!     }
//!
//!     fn post_form<'a>(
//!         &'a self,
//!         _url: &'a str,
//!         body: String,
//!         _authorization: Option<&'a str>,
//!         _max_body: usize,
//!     ) -> BoxFuture<'a, Result<HttpResponse, FetchError>> {
//!         let active = body.starts_with("token=good&");
//!         let json = if active {
//!             r#"{"active": true, "sub": "alice", "scope": "items:read", "client_id": "web"}"#
//!         } else {
//!             r#"{"active": false}"#
//!         };
//!         Box::pin(async move {
//!             Ok(HttpResponse { status: 200, cache_control: None, body: json.into() })
//!         })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let introspection = Introspection::builder("https://login.example.com/introspect")
//!     .client(Canned)
//!     .client_basic("orders-api", "s3cret")
//!     .build()
//!     .unwrap();
//! let good = BearerToken::new("good", TokenSource::Authorization);
//! let principal = introspection.authenticate(&good).await.unwrap();
//! assert_eq!(principal.subject(), Some("alice"));
//! assert!(principal.scopes().contains("items:read"));
//!
//! let bad = BearerToken::new("bad", TokenSource::Authorization);
//! let err = introspection.authenticate(&bad).await.unwrap_err();
//! assert_eq!(err.to_string(), "token inactive");
//! assert_eq!(introspection.stats().posts, 2);
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::extract::BearerToken;
use crate::jwks::{HttpClient, HttpResponse};
use crate::principal::{Principal, ScopeClaim, TokenFingerprint, numeric_date};
use crate::reject::{AuthError, AuthErrorKind};
use crate::validate::{Authentication, Authenticator};

/// The log target of endpoint failures.
const TARGET: &str = "tower_bearer::introspection";

/// `application/x-www-form-urlencoded` (RFC 6749 Appendix B / WHATWG URL): everything but
/// ASCII alphanumerics and `*-._` is percent-encoded; spaces become `+` (see [`form_encode`]).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Form-urlencodes one name or value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, part) in s.split(' ').enumerate() {
        if i > 0 {
            out.push('+');
        }
        out.extend(utf8_percent_encode(part, FORM));
    }
    out
}

/// How the resource server authenticates to the introspection endpoint.
#[derive(Clone, Default)]
enum ClientAuth {
    #[default]
    None,
    Basic {
        id: String,
        secret: String,
    },
    Bearer(String),
}

impl ClientAuth {
    /// The `Authorization` value, if any.
    fn header(&self) -> Result<Option<String>, ConfigError> {
        let value = match self {
            ClientAuth::None => return Ok(None),
            ClientAuth::Basic { id, secret } => {
                if id.is_empty() {
                    return Err(ConfigError::new(
                        "the introspection client id must not be empty",
                    ));
                }
                let pair = format!("{}:{}", form_encode(id), form_encode(secret));
                format!("Basic {}", STANDARD.encode(pair))
            }
            ClientAuth::Bearer(token) => {
                if token.is_empty() {
                    return Err(ConfigError::new(
                        "the introspection bearer token must not be empty",
                    ));
                }
                format!("Bearer {token}")
            }
        };
        if http::HeaderValue::from_str(&value).is_err() {
            // The message must not echo the credential.
            return Err(ConfigError::new(
                "the introspection client credential is not a valid header value",
            ));
        }
        Ok(Some(value))
    }

    fn kind(&self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Basic { .. } => "basic",
            ClientAuth::Bearer(_) => "bearer",
        }
    }
}

/// Builds an [`Introspection`] authenticator; see [`Introspection::builder`].
#[must_use]
pub struct IntrospectionBuilder {
    url: String,
    client: Option<Arc<dyn HttpClient>>,
    auth: ClientAuth,
    issuers: Vec<String>,
    audiences: Vec<String>,
    timeout: Duration,
    max_body: usize,
    cache_ttl: Duration,
    negative_ttl: Duration,
    max_entries: u64,
    max_in_flight: usize,
    leeway: Duration,
    scope_claim: ScopeClaim,
    clock: Arc<dyn Clock>,
}

/// The default of [`IntrospectionBuilder::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;

impl fmt::Debug for IntrospectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionBuilder")
            .field("url", &self.url)
            .field("client", &self.client.as_ref().map(|_| "custom"))
            .field("client_auth", &self.auth.kind())
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .field("cache_ttl", &self.cache_ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("max_entries", &self.max_entries)
            .field("max_in_flight", &self.max_in_flight)
            .field("leeway", &self.leeway)
            .field("scope_claim", &self.scope_claim)
            .field("clock", &self.clock)
            .finish()
    }
}

impl IntrospectionBuilder {
    /// The HTTP client for every introspection call (required unless feature `reqwest` is on,
    /// which defaults to a `reqwest::Client` with a 5 s connect timeout). It must implement
    /// [`HttpClient::post_form`].
    pub fn client(mut self, client: impl HttpClient) -> Self {
        self.client = Some(Arc::new(client));
        self
    }

    /// Authenticates to the endpoint with HTTP Basic (RFC 7662 §2.1, RFC 6749 §2.3.1): the
    /// id and secret are form-urlencoded, joined by `:` and base64-encoded. Replaces
    /// [`client_bearer`](Self::client_bearer).
    pub fn client_basic(mut self, client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.auth = ClientAuth::Basic {
            id: client_id.into(),
            secret: secret.into(),
        };
        self
    }

    /// Authenticates to the endpoint with `Authorization: Bearer token`. Replaces
    /// [`client_basic`](Self::client_basic).
    pub fn client_bearer(mut self, token: impl Into<String>) -> Self {
        self.auth = ClientAuth::Bearer(token.into());
        self
    }

    /// Requires `iss` to equal `issuer` (exact string comparison). May be called more than once
    /// to accept several issuers.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Requires `aud` (a string or an array of strings) to contain `audience`. May be called
    /// more than once: any one matches. Without one, `aud` is only type-checked.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The limit on one whole introspection call, connection included (default 3 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest response body accepted (default 64 KiB).
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body = max;
        self
    }

    /// How long an active token is remembered (default 60 s); never past its `exp`. Zero
    /// disables the positive cache.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How long a refusal (inactive, expired, wrong audience…) is remembered (default 5 s).
    /// Endpoint failures are never remembered. Zero disables the negative cache.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The most tokens the cache holds (default 100,000); the least useful are evicted first.
    pub fn max_cache_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }

    /// The most introspection calls under way at once (default [`DEFAULT_MAX_IN_FLIGHT`]).
    /// A token that is not in the cache and would need one more call is refused at once with
    /// 503 / gRPC `UNAVAILABLE` ([`AuthErrorKind::Unavailable`], not cached), never queued:
    /// a flood of forged opaque tokens, or an endpoint that has stopped answering, costs the
    /// endpoint at most this many calls at a time and this service no pile of waiting
    /// requests. Tokens in the cache, and requests joining a call already under way for their
    /// token, are not affected. Counted in [`IntrospectionStats::shed`].
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// Clock-skew allowance for `nbf` and `iat` (default 60 s). `exp` gets none.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Reads scopes from the claim at a dot-separated path (e.g. `permissions`,
    /// `realm_access.roles`) instead of `scope` / `scp`.
    pub fn scope_claim(mut self, path: &str) -> Self {
        self.scope_claim = ScopeClaim::path(path);
        self
    }

    /// The clock for `exp`, `nbf` and `iat` (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the authenticator; fails on a configuration mistake (a URL that is not
    /// http(s), no HTTP client, an empty issuer, audience or client id, a zero timeout, body
    /// cap or `max_in_flight`). Nothing is fetched.
    pub fn build(self) -> Result<Introspection, ConfigError> {
        check_url(&self.url)?;
        if self.max_in_flight == 0 {
            return Err(ConfigError::new(
                "max_in_flight must allow at least one introspection call",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "the introspection timeout must not be zero",
            ));
        }
        if self.max_body == 0 {
            return Err(ConfigError::new(
                "the introspection body cap must not be zero",
            ));
        }
        if self
            .issuers
            .iter()
            .chain(&self.audiences)
            .any(String::is_empty)
        {
            return Err(ConfigError::new("issuer and audience must not be empty"));
        }
        let authorization = self.auth.header()?;
        let client = match self.client {
            Some(c) => c,
            None => default_client()?,
        };
        let cache = moka::future::Cache::builder()
            .max_capacity(self.max_entries)
            .expire_after(EntryExpiry {
                positive: self.cache_ttl,
                negative: self.negative_ttl,
                clock: self.clock.clone(),
            })
            .build();
        Ok(Introspection {
            inner: Arc::new(Inner {
                url: self.url,
                client,
                auth_kind: self.auth.kind(),
                authorization,
                issuers: self.issuers,
                audiences: self.audiences,
                timeout: self.timeout,
                max_body: self.max_body,
                leeway: self.leeway.as_secs_f64(),
                scope_claim: self.scope_claim,
                clock: self.clock,
                cache,
                posts: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                shed: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
                max_in_flight: self.max_in_flight,
            }),
        })
    }
}

use crate::claims;
use crate::json::StrictObject;
use crate::jwks::default_client;

fn check_url(url: &str) -> Result<(), ConfigError> {
    crate::jwks::check_url(url)
        .map_err(|_| ConfigError::new(format!("not an http(s) introspection URL: {url:?}")))
}

type Entry = Result<Principal, AuthError>;

/// Per-entry lifetimes: refusals live `negative`, principals `min(positive, exp − now)`.
struct EntryExpiry {
    positive: Duration,
    negative: Duration,
    clock: Arc<dyn Clock>,
}

impl moka::Expiry<[u8; 32], Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Entry,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(match value {
            Err(_) => self.negative,
            Ok(principal) => match principal.claim("exp").and_then(numeric_date) {
                None => self.positive,
                Some(exp) => {
                    let left = exp - self.clock.unix_seconds();
                    let left = Duration::try_from_secs_f64(left.max(0.0)).unwrap_or(Duration::MAX);
                    left.min(self.positive)
                }
            },
        })
    }
}

struct Inner {
    url: String,
    client: Arc<dyn HttpClient>,
    auth_kind: &'static str,
    /// The `Authorization` value: a secret, never printed.
    authorization: Option<String>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    timeout: Duration,
    max_body: usize,
    leeway: f64,
    scope_claim: ScopeClaim,
    clock: Arc<dyn Clock>,
    cache: moka::future::Cache<[u8; 32], Entry>,
    posts: AtomicU64,
    failures: AtomicU64,
    shed: AtomicU64,
    /// Calls under way, at most `max_in_flight`.
    in_flight: AtomicUsize,
    max_in_flight: usize,
}

/// One call's place among the `max_in_flight`, given back when the call ends or is dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Authenticates opaque tokens with an RFC 7662 introspection endpoint, caching the answers.
/// Cheap to clone (one `Arc`). See the [module docs](self).
#[derive(Clone)]
pub struct Introspection {
    inner: Arc<Inner>,
}

impl fmt::Debug for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("Introspection")
            .field("url", &i.url)
            .field("client_auth", &i.auth_kind)
            .field("issuers", &i.issuers)
            .field("audiences", &i.audiences)
            .field("timeout", &i.timeout)
            .field("cached", &i.cache.entry_count())
            .finish_non_exhaustive()
    }
}

/// Counters of an [`Introspection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntrospectionStats {
    /// Introspection requests sent (cache misses; one per token however many requests wait).
    pub posts: u64,
    /// Those that failed: error status, unusable body, timeout, connection error.
    pub failures: u64,
    /// Tokens refused without a call because `max_in_flight` calls were under way.
    pub shed: u64,
    /// Tokens in the cache (approximate: expired entries are removed lazily).
    pub cached: u64,
}

impl Introspection {
    /// Starts a builder for the introspection endpoint at `url` (`http` or `https`; use
    /// `https` outside tests, RFC 7662 §4).
    pub fn builder(url: impl Into<String>) -> IntrospectionBuilder {
        IntrospectionBuilder {
            url: url.into(),
            client: None,
            auth: ClientAuth::None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            timeout: Duration::from_secs(3),
            max_body: 64 * 1024,
            cache_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            max_entries: 100_000,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            leeway: Duration::from_secs(60),
            scope_claim: ScopeClaim::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The introspection endpoint.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Verifies `token`: from the cache, or by asking the endpoint (joining a call in flight
    /// for the same token).
    pub async fn introspect(&self, token: &str) -> Result<Principal, AuthError> {
        self.inner.authenticate(token).await
    }

    /// Forgets every cached answer.
    pub fn clear_cache(&self) {
        self.inner.cache.invalidate_all();
    }

    /// Request, failure and cache counters.
    pub fn stats(&self) -> IntrospectionStats {
        IntrospectionStats {
            posts: self.inner.posts.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
            shed: self.inner.shed.load(Ordering::Relaxed),
            cached: self.inner.cache.entry_count(),
        }
    }
}

impl Authenticator for Introspection {
    fn authenticate(&self, token: &BearerToken) -> Authentication {
        let inner = self.inner.clone();
        let token: Box<str> = token.as_str().into();
        Authentication::pending(async move { inner.authenticate(&token).await })
    }
}

fn claim_err(kind: AuthErrorKind, what: &'static str) -> AuthError {
    AuthError::new(kind).with_description(what)
}

/// Why a response is not an answer (logged; never contains the body or the token).
type Failure = String;

impl Inner {
    async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let fingerprint = TokenFingerprint::of_bytes(token.as_bytes());
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let entry = self
            .cache
            .try_get_with(key, self.call(token, fingerprint))
            .await
            .map_err(|e| (*e).clone())?;
        let principal = entry?;
        // A cached answer may outlive `exp` on the configured clock: check it on every use.
        if let Some(exp) = principal.claim("exp").and_then(numeric_date)
            && self.clock.unix_seconds() >= exp
        {
            return Err(AuthError::new(AuthErrorKind::Expired).with_context(fingerprint));
        }
        Ok(principal)
    }

    /// One introspection call. `Err` is an endpoint failure (not cached); `Ok` holds the
    /// answer, a principal or a refusal (cached).
    async fn call(&self, token: &str, fingerprint: TokenFingerprint) -> Result<Entry, AuthError> {
        let Some(_slot) = self.slot() else {
            self.shed.fetch_add(1, Ordering::Relaxed);
            // This module's own line is at debug (under a flood it is every request, and
            // `shed` counts them); the audit log records the refusal as any other.
            tracing::debug!(
                target: TARGET,
                %fingerprint,
                max_in_flight = self.max_in_flight,
                "introspection busy: token refused without a call"
            );
            return Err(AuthError::new(AuthErrorKind::Unavailable)
                .with_description("introspection busy")
                .with_context(fingerprint));
        };
        self.posts.fetch_add(1, Ordering::Relaxed);
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let post = self.client.post_form(
            &self.url,
            body,
            self.authorization.as_deref(),
            self.max_body,
        );
        let answer = match tokio::time::timeout(self.timeout, post).await {
            Err(_) => Err(format!(
                "POST {}: timed out after {:?}",
                self.url, self.timeout
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(res)) => self.parse(res),
        };
        match answer {
            Ok(claims) => {
                let entry = self
                    .check(claims, fingerprint)
                    .map_err(|e| e.with_context(fingerprint));
                if let Err(e) = &entry {
                    tracing::debug!(target: TARGET, %fingerprint, reason = %e, "token refused by introspection");
                }
                Ok(entry)
            }
            Err(reason) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: TARGET,
                    url = %self.url,
                    error = %reason,
                    %fingerprint,
                    "token introspection failed"
                );
                Err(AuthError::new(AuthErrorKind::Unavailable).with_context(fingerprint))
            }
        }
    }

    /// A place for one more call, if fewer than `max_in_flight` are under way.
    fn slot(&self) -> Option<Slot<'_>> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(&self.in_flight))
    }

    /// Status 200 and a JSON object, or why not.
    fn parse(&self, res: HttpResponse) -> Result<Map<String, Value>, Failure> {
        if res.status != 200 {
            return Err(format!("POST {}: status {}", self.url, res.status));
        }
        if res.body.len() > self.max_body {
            return Err(format!(
                "POST {}: body larger than {} bytes",
                self.url, self.max_body
            ));
        }
        serde_json::from_slice::<StrictObject>(&res.body)
            .map(|o| o.0)
            .map_err(|_| {
                format!(
                    "POST {}: the response is not a JSON object without duplicate members",
                    self.url
                )
            })
    }

    /// The answer for an introspection response.
    fn check(
        &self,
        claims: Map<String, Value>,
        fingerprint: TokenFingerprint,
    ) -> Result<Principal, AuthError> {
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Err(AuthError::new(AuthErrorKind::Inactive));
        }
        for (name, what) in [
            ("scope", "invalid scope claim"),
            ("sub", "invalid sub claim"),
            ("client_id", "invalid client_id claim"),
            ("username", "invalid username claim"),
            ("token_type", "invalid token_type claim"),
            ("iss", "invalid iss claim"),
            ("jti", "invalid jti claim"),
        ] {
            if claims.get(name).is_some_and(|v| !v.is_string()) {
                return Err(claim_err(AuthErrorKind::InvalidClaimType, what));
            }
        }

        let now = self.clock.unix_seconds();
        if let Some(exp) = claims::time_claim(&claims, "exp")?
            && now >= exp
        {
            return Err(AuthError::new(AuthErrorKind::Expired));
        }
        claims::check_not_before(&claims, now, self.leeway)?;
        claims::check_issuer(&claims, &self.issuers)?;
        // No audience configured: `aud` is only type-checked (the server asked about its own
        // token, RFC 7662 §2.2).
        claims::check_audience(claims.get("aud"), &self.audiences, true)?;

        Principal::from_claims_with(claims, fingerprint, &self.scope_claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("abc-._*XYZ09"), "abc-._*XYZ09");
        assert_eq!(form_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(form_encode("p@ss:w rd~%"), "p%40ss%3Aw+rd%7E%25");
        assert_eq!(form_encode("é"), "%C3%A9");
    }

    #[test]
    fn basic_credentials_are_form_encoded_before_base64() {
        let auth = ClientAuth::Basic {
            id: "rs client".into(),
            secret: "p@ss:word".into(),
        };
        let expected = format!("Basic {}", STANDARD.encode("rs+client:p%40ss%3Aword"));
        assert_eq!(auth.header().unwrap(), Some(expected));
        let auth = ClientAuth::Basic {
            id: String::new(),
            secret: "x".into(),
        };
        assert!(auth.header().is_err());
        let auth = ClientAuth::Bearer("bad\ntoken".into());
        let err = auth.header().unwrap_err();
        assert!(!err.to_string().contains("bad"));
    }

    #[test]
    fn urls_must_be_http() {
        assert!(check_url("https://as.example/introspect").is_ok());
        assert!(check_url("http://127.0.0.1:8080/i").is_ok());
        assert!(check_url("ftp://as.example/i").is_err());
        assert!(check_url("as.example/i").is_err());
    }

    #[test]
    fn duplicate_members_are_refused() {
        assert!(serde_json::from_str::<StrictObject>(r#"{"active":false,"active":true}"#).is_err());
        assert!(serde_json::from_str::<StrictObject>("[true]").is_err());
        assert!(serde_json::from_str::<StrictObject>(r#"{"active":true}"#).is_ok());
    }

    #[test]
    fn debug_shows_no_secret() {
        let b = Introspection::builder("https://as.example/i")
            .client_basic("id", "very-secret-value")
            .client(Arc::new(NoClient));
        assert!(!format!("{b:?}").contains("very-secret-value"));
        let i = b.build().unwrap();
        let text = format!("{i:?}");
        assert!(!text.contains("very-secret-value"));
        assert!(!text.contains(&STANDARD.encode("id:very-secret-value")));
        let i = Introspection::builder("https://as.example/i")
            .client_bearer("bearer-secret")
            .client(NoClient)
            .build()
            .unwrap();
        assert!(!format!("{i:?}").contains("bearer-secret"));
    }

    struct NoClient;

    impl HttpClient for NoClient {
        fn get<'a>(
            &'a self,
            url: &'a str,
            _max_body: usize,
        ) -> crate::jwks::BoxFuture<'a, Result<HttpResponse, crate::jwks::FetchError>> {
            Box::pin(async move { Err(crate::jwks::FetchError::new(format!("GET {url}"))) })
        }
    }
}
