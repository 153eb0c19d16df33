//! JWT access tokens (RFC 7519 / 7515 / 8725 / 9068) verified with local keys.
//!
//! [`Jwt`] accepts compact JWS tokens only and checks, in this order: three base64url parts
//! (unpadded, canonical); a header that is a JSON object without duplicate members, with a
//! string `alg`, no `crit` (no extension is implemented, so every `crit` is refused per
//! RFC 7515 §4.1.11) and no `enc`; a key chosen by the [`KeySet`] rules whose algorithm
//! equals `alg`; the signature; then the claims, against the configured [`Clock`]:
//!
//! - `exp` required and numeric; refused when `now ≥ exp + leeway` (default leeway 60 s);
//! - `nbf` and `iat`, when present, numeric; refused when later than `now + leeway`;
//! - `iss` required and equal to the configured issuer, when one is configured;
//! - `aud` required and (a string or an array of strings) containing the configured audience;
//!   with no audience configured a token carrying `aud` is refused (RFC 7519 §4.1.3) unless
//!   [`JwtBuilder::any_audience`] was chosen;
//! - optionally: a maximum lifetime (`exp − iat`), the RFC 9068 `typ` of `at+jwt`, and extra
//!   required claims.
//!
//! `jku`, `x5u`, `jwk` and `x5c` headers are never used. Time is read from the authenticator's
//! [`Clock`], not from `jsonwebtoken`, so tests can move it.
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::keys::{Algorithm, Key};
//! use tower_bearer::validate::Jwt;
//!
//! let jwt = Jwt::builder()
//!     .key(Key::hmac(b"0123456789abcdef0123456789abcdef", Algorithm::HS256).unwrap())
//!     .issuer("https://issuer.example")
//!     .audience("api://orders")
//!     .leeway(Duration::from_secs(30))
//!     .build()
//!     .unwrap();
//! let err = jwt.verify("not.a.jwt").unwrap_err();
//! assert_eq!(err.to_string(), "malformed token");
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cache::{CacheStats, DEFAULT_CACHE_ENTRIES, TokenCache};
use crate::claims;
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::extract::BearerToken;
use crate::json::{JoseHeader, Member};
use crate::keys::{Algorithm, Key, KeyLookupError, KeySet};
use crate::principal::{Principal, ScopeClaim, TokenFingerprint, numeric_date};
use crate::reject::{AuthError, AuthErrorKind};
use crate::validate::{Authentication, Authenticator};

/// Builds a [`Jwt`] authenticator.
#[derive(Debug)]
#[must_use]
pub struct JwtBuilder {
    keys: KeySet,
    #[cfg(feature = "jwks")]
    remote: Option<crate::jwks::RemoteJwks>,
    key_errors: Vec<ConfigError>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    any_audience: bool,
    leeway: Duration,
    max_lifetime: Option<Duration>,
    require_at_jwt: bool,
    required_claims: Vec<String>,
    scope_claim: ScopeClaim,
    clock: Arc<dyn Clock>,
    cache_entries: u64,
}

/// Verifies JWT access tokens with a static [`KeySet`]. See the [module docs](self).
#[derive(Clone)]
pub struct Jwt {
    inner: Arc<Inner>,
}

/// Where the verification keys come from.
enum KeySource {
    Static(KeySet),
    #[cfg(feature = "jwks")]
    Remote(crate::jwks::RemoteJwks),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Static(set) => set.fmt(f),
            #[cfg(feature = "jwks")]
            KeySource::Remote(r) => r.fmt(f),
        }
    }
}

struct Inner {
    keys: KeySource,
    issuers: Vec<String>,
    audiences: Vec<String>,
    any_audience: bool,
    leeway: f64,
    max_lifetime: Option<f64>,
    require_at_jwt: bool,
    required_claims: Vec<String>,
    scope_claim: ScopeClaim,
    clock: Arc<dyn Clock>,
    cache: Option<TokenCache>,
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("keys", &self.inner.keys)
            .field("issuers", &self.inner.issuers)
            .field("audiences", &self.inner.audiences)
            .field("leeway", &self.inner.leeway)
            .finish_non_exhaustive()
    }
}

impl Default for JwtBuilder {
    fn default() -> Self {
        Self {
            keys: KeySet::new(),
            #[cfg(feature = "jwks")]
            remote: None,
            key_errors: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            any_audience: false,
            leeway: Duration::from_secs(60),
            max_lifetime: None,
            require_at_jwt: false,
            required_claims: Vec::new(),
            scope_claim: ScopeClaim::default(),
            clock: Arc::new(SystemClock),
            cache_entries: DEFAULT_CACHE_ENTRIES,
        }
    }
}

impl JwtBuilder {
    /// Adds a verification key.
    pub fn key(mut self, key: Key) -> Self {
        if let Err(e) = self.keys.push(key) {
            self.key_errors.push(e);
        }
        self
    }

    /// Adds every key of a set.
    pub fn keys(mut self, keys: KeySet) -> Self {
        for key in keys.iter() {
            if let Err(e) = self.keys.push(key.clone()) {
                self.key_errors.push(e);
            }
        }
        self
    }

    /// Takes the keys from a remote JWK Set (feature `jwks`), refreshed on unknown `kid`s.
    /// A set built by OIDC discovery pins `iss` to the discovered issuer.
    #[cfg(feature = "jwks")]
    pub fn jwks(mut self, remote: crate::jwks::RemoteJwks) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Requires `iss` to equal `issuer` (exact string comparison). May be called more than once
    /// to accept several issuers.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Requires `aud` to contain `audience`. May be called more than once: any one matches.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepts tokens whatever their `aud`, when no audience is configured. Without this, a
    /// token carrying `aud` is refused when no audience is configured (RFC 7519 §4.1.3).
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Clock-skew allowance for `exp`, `nbf` and `iat` (default 60 s; zero is allowed).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Refuses tokens whose `exp − iat` exceeds `max` (and then requires `iat`).
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// Requires the RFC 9068 header `typ` of `at+jwt` (or `application/at+jwt`).
    pub fn require_at_jwt(mut self) -> Self {
        self.require_at_jwt = true;
        self
    }

    /// Requires a claim to be present (e.g. `sub`, `jti`).
    pub fn require_claim(mut self, name: impl Into<String>) -> Self {
        self.required_claims.push(name.into());
        self
    }

    /// Reads scopes from the claim at a dot-separated path (e.g. `permissions`,
    /// `realm_access.roles`) instead of `scope` / `scp`.
    pub fn scope_claim(mut self, path: &str) -> Self {
        self.scope_claim = ScopeClaim::path(path);
        self
    }

    /// The size of the verified-token cache (default 10,000 tokens; see
    /// [`crate::cache`]); 0 turns it off.
    pub fn cache_entries(mut self, entries: u64) -> Self {
        self.cache_entries = entries;
        self
    }

    /// The clock for time-based claims (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the authenticator; fails on a configuration mistake (no keys, duplicate key ids,
    /// an empty issuer or audience).
    pub fn build(mut self) -> Result<Jwt, ConfigError> {
        if let Some(e) = self.key_errors.first() {
            return Err(e.clone());
        }
        let keys = self.key_source()?;
        if self
            .issuers
            .iter()
            .chain(&self.audiences)
            .any(String::is_empty)
        {
            return Err(ConfigError::new("issuer and audience must not be empty"));
        }
        install_crypto_provider();
        Ok(Jwt {
            inner: Arc::new(Inner {
                keys,
                issuers: self.issuers,
                audiences: self.audiences,
                any_audience: self.any_audience,
                leeway: self.leeway.as_secs_f64(),
                max_lifetime: self.max_lifetime.map(|d| d.as_secs_f64()),
                require_at_jwt: self.require_at_jwt,
                required_claims: self.required_claims,
                scope_claim: self.scope_claim,
                cache: (self.cache_entries > 0)
                    .then(|| TokenCache::new(self.cache_entries, self.clock.clone())),
                clock: self.clock,
            }),
        })
    }
}

impl JwtBuilder {
    fn key_source(&mut self) -> Result<KeySource, ConfigError> {
        #[cfg(feature = "jwks")]
        if let Some(remote) = self.remote.take() {
            if !self.keys.is_empty() {
                return Err(ConfigError::new(
                    "use either static keys or a remote JWK Set, not both",
                ));
            }
            if let Some(iss) = remote.issuer() {
                if self.issuers.is_empty() {
                    self.issuers.push(iss.to_owned());
                } else if self.issuers.iter().any(|i| i != iss) {
                    return Err(ConfigError::new(format!(
                        "the configured issuer differs from the discovered issuer {iss:?}"
                    )));
                }
            }
            return Ok(KeySource::Remote(remote));
        }
        if self.keys.is_empty() {
            return Err(ConfigError::new(
                "a JWT authenticator needs at least one key",
            ));
        }
        Ok(KeySource::Static(std::mem::take(&mut self.keys)))
    }
}

/// With both crypto features on, `jsonwebtoken` cannot pick a backend by itself: prefer aws-lc.
fn install_crypto_provider() {
    #[cfg(all(feature = "aws-lc-rs", feature = "rust-crypto"))]
    {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    }
}

fn err(kind: AuthErrorKind) -> AuthError {
    AuthError::new(kind)
}

fn claim_err(kind: AuthErrorKind, what: &'static str) -> AuthError {
    AuthError::new(kind).with_description(what)
}

fn is_b64url(part: &[u8]) -> bool {
    part.iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// A base64url part, decoded strictly onto the stack when it fits.
fn decode_b64<'b>(
    part: &[u8],
    buf: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], AuthError> {
    crate::json::decode_b64(part, buf, heap).ok_or_else(|| err(AuthErrorKind::MalformedToken))
}

fn decode_object(part: &[u8]) -> Result<Map<String, Value>, AuthError> {
    crate::json::decode_object(part).ok_or_else(|| err(AuthErrorKind::MalformedToken))
}

/// Keeps attacker-chosen strings short in logs.
fn short(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Jwt {
    /// Starts a builder.
    pub fn builder() -> JwtBuilder {
        JwtBuilder::default()
    }

    /// The issuers this authenticator requires (empty: any).
    pub fn issuers(&self) -> Vec<&str> {
        self.inner.issuers.iter().map(String::as_str).collect()
    }

    /// Verifies a compact JWS with the keys at hand and returns the principal it proves.
    /// With a remote key set this never fetches: an unknown `kid` is refused, and with no set
    /// ever loaded the error is [`AuthErrorKind::Unavailable`]. The layer, through
    /// [`Authenticator`], refreshes the set on unknown `kid`s.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        match &self.inner.keys {
            KeySource::Static(set) => self.verify_with(token, set),
            #[cfg(feature = "jwks")]
            KeySource::Remote(r) => match r.current() {
                Some(set) => self.verify_with(token, &set),
                None => Err(err(AuthErrorKind::Unavailable)),
            },
        }
    }

    /// The cache's hit and miss counts (`None` when the cache is off).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.inner.cache.as_ref().map(TokenCache::stats)
    }

    fn verify_with(&self, token: &str, keys: &KeySet) -> Result<Principal, AuthError> {
        let Some(cache) = &self.inner.cache else {
            return self.verify_uncached(token, keys);
        };
        let key = cache.key(token.as_bytes());
        if let Some(principal) = cache.get(key, token.as_bytes(), keys.id()) {
            return Ok(principal);
        }
        let principal = self.verify_uncached(token, keys)?;
        // `exp` is required and numeric, so verified tokens always have it.
        if let Some(exp) = principal.claim("exp").and_then(numeric_date) {
            let valid_until = exp + self.inner.leeway;
            cache.insert(key, token, principal.clone(), valid_until, keys.id());
        }
        Ok(principal)
    }

    fn verify_uncached(&self, token: &str, keys: &KeySet) -> Result<Principal, AuthError> {
        let bytes = token.as_bytes();
        let mut parts = bytes.split(|b| *b == b'.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err(AuthErrorKind::MalformedToken));
        };
        if h.is_empty()
            || p.is_empty()
            || s.is_empty()
            || !is_b64url(h)
            || !is_b64url(p)
            || !is_b64url(s)
        {
            return Err(err(AuthErrorKind::MalformedToken));
        }
        let signing_input = &bytes[..h.len() + 1 + p.len()];
        // The fingerprint (a SHA-256) is computed for a refusal's log line, or when something
        // asks the principal for it, not for every verification.
        self.verify_parts(keys, h, p, s, signing_input)
            .map_err(|e| e.with_context(TokenFingerprint::of_signing_input(signing_input)))
    }

    fn verify_parts(
        &self,
        keys: &KeySet,
        h: &[u8],
        p: &[u8],
        s: &[u8],
        signing_input: &[u8],
    ) -> Result<Principal, AuthError> {
        let inner = &*self.inner;
        // Headers are short: decoded on the stack, read without building a map.
        let mut buf = [0u8; 512];
        let mut heap = Vec::new();
        let header = decode_b64(h, &mut buf, &mut heap)?;
        let header = serde_json::from_slice::<JoseHeader<'_>>(header)
            .map_err(|_| err(AuthErrorKind::MalformedToken))?;

        let alg = match &header.alg {
            Member::Str(a) => a
                .parse::<Algorithm>()
                .map_err(|_| err(AuthErrorKind::AlgorithmNotAllowed))?,
            _ => return Err(err(AuthErrorKind::MalformedToken)),
        };
        let kid = match &header.kid {
            Member::Absent => None,
            Member::Str(k) => Some(&**k),
            Member::Other => return Err(err(AuthErrorKind::MalformedToken)),
        };
        if header.crit {
            return Err(err(AuthErrorKind::UnsupportedCritical));
        }
        if header.enc_or_zip {
            return Err(err(AuthErrorKind::MalformedToken));
        }
        let typ = match &header.typ {
            Member::Absent => None,
            Member::Str(t) => Some(&**t),
            Member::Other => return Err(err(AuthErrorKind::MalformedToken)),
        };
        if inner.require_at_jwt
            && !typ.is_some_and(|t| {
                t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
            })
        {
            return Err(err(AuthErrorKind::InvalidTokenType));
        }

        let key = keys.select(kid, alg).map_err(|e| {
            let kind = match e {
                KeyLookupError::AlgorithmMismatch => AuthErrorKind::AlgorithmNotAllowed,
                _ => AuthErrorKind::UnknownKey,
            };
            let mut e = err(kind);
            if let Some(kid) = kid {
                e = e.with_kid(short(kid));
            }
            e
        })?;

        // `s` is checked to be base64url; it is decoded strictly (no padding, canonical
        // trailing bits) and verified with the key's own algorithm.
        if !key.verify_signature(signing_input, s) {
            return Err(err(AuthErrorKind::InvalidSignature));
        }

        let claims = decode_object(p)?;
        self.check_claims(&claims)?;
        Principal::from_jwt_claims(claims, signing_input, key.kid(), &inner.scope_claim)
    }

    fn check_claims(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let inner = &*self.inner;
        let now = inner.clock.unix_seconds();
        let leeway = inner.leeway;
        let exp = claims::time_claim(claims, "exp")?
            .ok_or_else(|| claim_err(AuthErrorKind::MissingClaim, "missing exp claim"))?;
        if now >= exp + leeway {
            return Err(err(AuthErrorKind::Expired));
        }
        let iat = claims::check_not_before(claims, now, leeway)?;
        if let Some(max) = inner.max_lifetime {
            let iat =
                iat.ok_or_else(|| claim_err(AuthErrorKind::MissingClaim, "missing iat claim"))?;
            if exp - iat > max {
                return Err(err(AuthErrorKind::LifetimeExceeded));
            }
        }
        claims::check_issuer(claims, &inner.issuers)?;
        claims::check_audience(claims.get("aud"), &inner.audiences, inner.any_audience)?;

        for name in &inner.required_claims {
            if !claims.contains_key(name) {
                return Err(claim_err(
                    AuthErrorKind::MissingClaim,
                    "required claim missing",
                ));
            }
        }
        Ok(())
    }
}

impl Authenticator for Jwt {
    fn authenticate_cached(&self, credential: &[u8]) -> Option<Authentication> {
        // Every cached token was verified, so it is a JWT made of base64url parts: it passed
        // any `b64token` check the extractor would make.
        let cache = self.inner.cache.as_ref()?;
        let principal = match &self.inner.keys {
            KeySource::Static(set) => cache.get_hit(credential, set.id()),
            #[cfg(feature = "jwks")]
            KeySource::Remote(remote) => cache.get_hit(credential, remote.current()?.id()),
        }?;
        Some(Authentication::ready(Ok(principal)))
    }

    fn authenticate(&self, token: &BearerToken) -> Authentication {
        match &self.inner.keys {
            KeySource::Static(set) => Authentication::ready(self.verify_with(token.as_str(), set)),
            #[cfg(feature = "jwks")]
            KeySource::Remote(remote) => {
                let current = remote.current();
                let first = current
                    .as_ref()
                    .map(|set| self.verify_with(token.as_str(), set));
                let refused = match first {
                    Some(Err(e)) if e.kind() == AuthErrorKind::UnknownKey => e,
                    Some(result) => return Authentication::ready(result),
                    None => err(AuthErrorKind::Unavailable),
                };
                // An unknown kid (or no set yet): refresh once, single-flight and throttled.
                let Some(refresh) = remote.refresh_for_unknown_key() else {
                    return Authentication::ready(Err(refused));
                };
                let this = self.clone();
                let remote = remote.clone();
                let token = token.as_str().to_owned();
                Authentication::pending(async move {
                    refresh.await;
                    match remote.current() {
                        Some(set) => this.verify_with(&token, &set),
                        None => Err(err(AuthErrorKind::Unavailable)),
                    }
                })
            }
        }
    }
}
