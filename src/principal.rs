//! The verified identity: [`Principal`], its [`Scopes`] and the token's [`TokenFingerprint`].
//!
//! The bearer layer puts a [`Principal`] in the request extensions of every request it lets
//! through. It is cheap to clone (one `Arc`). Handlers read it with the axum extractor (feature
//! `axum`), from `request.extensions()` in tonic, or from `http::Request::extensions` anywhere.
//!
//! ```
//! use serde_json::json;
//! use tower_bearer::principal::{Principal, TokenFingerprint};
//!
//! let claims = json!({"sub": "alice", "scope": "items:read profile", "exp": 4102444800u64});
//! let principal = Principal::from_claims(
//!     claims.as_object().unwrap().clone(),
//!     TokenFingerprint::of_bytes(b"opaque-token"),
//! ).unwrap();
//! assert_eq!(principal.subject(), Some("alice"));
//! assert!(principal.scopes().contains("items:read"));
//! assert!(!principal.scopes().contains("items:readonly"));
//! ```

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::rate_limit::Slot;
use crate::reject::{AuthError, AuthErrorKind};

/// A short digest identifying a token without revealing it.
///
/// For a JWT it is computed over the signed content (`header.payload`), never over the
/// signature: ECDSA signatures are malleable (`s` and `n − s` both verify), so one token has
/// several valid encodings that must all map to the same fingerprint. It is the only form of a
/// token that appears in logs, and the key for revocation and idle tracking.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenFingerprint([u8; 16]);

impl TokenFingerprint {
    /// The fingerprint of a JWT's signing input (`base64url(header) "." base64url(payload)`).
    pub fn of_signing_input(signing_input: &[u8]) -> Self {
        Self::of_bytes(signing_input)
    }

    /// The fingerprint of arbitrary token bytes (opaque tokens, API keys).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        Self(out)
    }

    /// The raw 16 bytes (the first half of a SHA-256 digest).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for TokenFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TokenFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenFingerprint({self})")
    }
}

/// The scopes a token grants: exact, case-sensitive strings.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scopes(Arc<[Box<str>]>);

impl Scopes {
    /// Scopes from a list.
    pub fn new<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let mut v: Vec<Box<str>> = scopes.into_iter().map(Into::into).collect();
        v.retain(|s| !s.is_empty());
        v.sort();
        v.dedup();
        Self(v.into())
    }

    /// Scopes from an RFC 6749 space-delimited string.
    pub fn from_space_delimited(s: &str) -> Self {
        Self::new(s.split(' ').filter(|s| !s.is_empty()))
    }

    /// Whether `scope` is granted (exact, case-sensitive match).
    pub fn contains(&self, scope: &str) -> bool {
        self.0.binary_search_by(|s| (**s).cmp(scope)).is_ok()
    }

    /// Whether every scope in `scopes` is granted.
    pub fn contains_all<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) -> bool {
        scopes.into_iter().all(|s| self.contains(s))
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| &**s)
    }

    /// How many scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no scope is granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

/// Where a token's scopes are read from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeClaim {
    /// `scope` (RFC 8693 / 9068, space-delimited string) and `scp` (array of strings, as Okta
    /// and Azure AD send it, or a space-delimited string); both are read when both are there.
    #[default]
    ScopeOrScp,
    /// The claim at a dot-separated path of object members, e.g. `permissions` (Auth0) or
    /// `realm_access.roles` (Keycloak): an array of strings or a space-delimited string.
    Path(Arc<[Box<str>]>),
}

impl ScopeClaim {
    /// The claim at `dotted`, a dot-separated path (`realm_access.roles`).
    pub fn path(dotted: &str) -> Self {
        Self::Path(dotted.split('.').map(Into::into).collect())
    }
}

/// A rate limit's key for a principal, and the caller's state in a memory store.
struct LimitKey {
    tag: u64,
    key: Box<str>,
    slot: OnceLock<Arc<Slot>>,
}

struct Inner {
    subject: Option<Box<str>>,
    client_id: Option<Box<str>>,
    scopes: Scopes,
    token_id: Option<Box<str>>,
    issuer: Option<Box<str>>,
    expires_at: Option<SystemTime>,
    issued_at: Option<SystemTime>,
    key_id: Option<Box<str>>,
    fingerprint: Fingerprint,
    claims: Arc<Map<String, Value>>,
    /// The revocation-store keys of this principal, derived once (each is a SHA-256): a
    /// cached principal serves every request its token makes.
    revocation_keys: OnceLock<[Option<[u8; 16]>; 3]>,
    /// The key of the first rate limit that asked (tagged with that limit's id), derived once:
    /// no larger than the policy name and the claims it is made of; with the caller's state
    /// when that limit counts in memory.
    limit_key: OnceLock<LimitKey>,
    /// What `cnf` says, read once: every request of a cached token asks.
    binding: Binding,
}

/// What a principal's `cnf` claim (RFC 7800) says about its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    /// No `cnf`, or an empty one: a bearer token.
    Bearer,
    /// Bound to a key or a certificate (a `cnf` with members).
    Bound,
    /// A `cnf` that is not a JSON object.
    Invalid,
}

impl Binding {
    fn of(claims: &Map<String, Value>) -> Self {
        match claims.get("cnf") {
            None => Binding::Bearer,
            Some(Value::Object(m)) if m.is_empty() => Binding::Bearer,
            Some(Value::Object(_)) => Binding::Bound,
            Some(_) => Binding::Invalid,
        }
    }
}

/// A principal's fingerprint: given, or computed from the JWT's signing input on first use (a
/// SHA-256 costs about as much as an HMAC check, and most requests never need it).
enum Fingerprint {
    Known(TokenFingerprint),
    Lazy {
        /// `base64url(header) "." base64url(payload)`: claims, no signature, no credential.
        signing_input: Box<[u8]>,
        computed: OnceLock<TokenFingerprint>,
    },
}

impl Fingerprint {
    fn get(&self) -> TokenFingerprint {
        match self {
            Fingerprint::Known(f) => *f,
            Fingerprint::Lazy {
                signing_input,
                computed,
            } => *computed.get_or_init(|| TokenFingerprint::of_signing_input(signing_input)),
        }
    }
}

/// The verified caller: who the token says it is, once the token has been verified.
#[derive(Clone)]
pub struct Principal(Arc<Inner>);

impl Principal {
    /// Builds a principal from verified claims, reading the registered claims the crate knows:
    /// `sub`, `client_id` (or `azp`), `scope` (space-delimited string) or `scp` (array, or
    /// string), `jti`, `iss`, `exp`, `iat`. A known claim of the wrong JSON type is an error.
    pub fn from_claims(
        claims: Map<String, Value>,
        fingerprint: TokenFingerprint,
    ) -> Result<Self, AuthError> {
        Self::from_claims_with(claims, fingerprint, &ScopeClaim::default())
    }

    /// [`Principal::from_claims`] with the scopes read from `scope_claim`.
    pub fn from_claims_with(
        claims: Map<String, Value>,
        fingerprint: TokenFingerprint,
        scope_claim: &ScopeClaim,
    ) -> Result<Self, AuthError> {
        Self::from_claims_with_kid(claims, fingerprint, None, scope_claim)
    }

    pub(crate) fn from_claims_with_kid(
        claims: Map<String, Value>,
        fingerprint: TokenFingerprint,
        key_id: Option<&str>,
        scope_claim: &ScopeClaim,
    ) -> Result<Self, AuthError> {
        Self::build(claims, Fingerprint::Known(fingerprint), key_id, scope_claim)
    }

    /// A principal from a verified JWT, its fingerprint computed from `signing_input` only
    /// if asked for.
    pub(crate) fn from_jwt_claims(
        claims: Map<String, Value>,
        signing_input: &[u8],
        key_id: Option<&str>,
        scope_claim: &ScopeClaim,
    ) -> Result<Self, AuthError> {
        let fingerprint = Fingerprint::Lazy {
            signing_input: signing_input.into(),
            computed: OnceLock::new(),
        };
        Self::build(claims, fingerprint, key_id, scope_claim)
    }

    fn build(
        claims: Map<String, Value>,
        fingerprint: Fingerprint,
        key_id: Option<&str>,
        scope_claim: &ScopeClaim,
    ) -> Result<Self, AuthError> {
        let string = |name: &'static str| -> Result<Option<Box<str>>, AuthError> {
            match claims.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str().into())),
                Some(_) => Err(wrong_type(name)),
            }
        };
        let time = |name: &'static str| -> Result<Option<SystemTime>, AuthError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => numeric_date(v)
                    .map(|secs| Some(to_system_time(secs)))
                    .ok_or_else(|| wrong_type(name)),
            }
        };
        let subject = string("sub")?;
        let client_id = match string("client_id")? {
            Some(c) => Some(c),
            None => string("azp")?,
        };
        let scopes = match scope_claim {
            ScopeClaim::ScopeOrScp => parse_scopes(&claims)?,
            ScopeClaim::Path(path) => scopes_at(&claims, path)?,
        };
        Ok(Self(Arc::new(Inner {
            subject,
            client_id,
            scopes,
            token_id: string("jti")?,
            issuer: string("iss")?,
            expires_at: time("exp")?,
            issued_at: time("iat")?,
            key_id: key_id.map(Into::into),
            fingerprint,
            binding: Binding::of(&claims),
            claims: Arc::new(claims),
            revocation_keys: OnceLock::new(),
            limit_key: OnceLock::new(),
        })))
    }

    /// What the `cnf` claim says about the token, read when the principal was built.
    pub(crate) fn binding(&self) -> Binding {
        self.0.binding
    }

    /// The revocation-store keys, derived by `derive` on first use.
    pub(crate) fn revocation_keys(
        &self,
        derive: impl FnOnce(&Self) -> [Option<[u8; 16]>; 3],
    ) -> [Option<[u8; 16]>; 3] {
        *self.0.revocation_keys.get_or_init(|| derive(self))
    }

    /// The rate-limit key of this principal under the limit `tag`, derived by `derive` on first
    /// use; `None` when the key of another limit is kept (that limit asked first).
    pub(crate) fn limit_key(&self, tag: u64, derive: impl FnOnce() -> Box<str>) -> Option<&str> {
        self.limit_slot(tag, derive).map(|(key, _)| key)
    }

    /// [`limit_key`](Self::limit_key), with the place where a memory store keeps this
    /// caller's state for it ([`MemoryStore::decide_kept`](crate::rate_limit::MemoryStore)).
    pub(crate) fn limit_slot(
        &self,
        tag: u64,
        derive: impl FnOnce() -> Box<str>,
    ) -> Option<(&str, &OnceLock<Arc<Slot>>)> {
        let kept = self.0.limit_key.get_or_init(|| LimitKey {
            tag,
            key: derive(),
            slot: OnceLock::new(),
        });
        (kept.tag == tag).then_some((&*kept.key, &kept.slot))
    }

    /// The subject (`sub`).
    pub fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }

    /// The OAuth client (`client_id`, or `azp` when there is none).
    pub fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.0.scopes
    }

    /// The token id (`jti`).
    pub fn token_id(&self) -> Option<&str> {
        self.0.token_id.as_deref()
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> Option<&str> {
        self.0.issuer.as_deref()
    }

    /// When the token expires (`exp`).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.0.expires_at
    }

    /// When the token was issued (`iat`).
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.0.issued_at
    }

    /// The id of the key that verified the token, when it had one.
    pub fn key_id(&self) -> Option<&str> {
        self.0.key_id.as_deref()
    }

    /// The token's fingerprint (safe to log).
    pub fn fingerprint(&self) -> TokenFingerprint {
        self.0.fingerprint.get()
    }

    /// All verified claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.0.claims
    }

    /// One claim.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.0.claims.get(name)
    }

    /// The claims deserialized into a type of your own.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(Value::Object((*self.0.claims).clone()))
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.0.subject)
            .field("client_id", &self.0.client_id)
            .field("scopes", &self.0.scopes)
            .field("token_id", &self.0.token_id)
            .field("issuer", &self.0.issuer)
            .field("expires_at", &self.0.expires_at)
            .field("fingerprint", &self.0.fingerprint.get())
            .finish_non_exhaustive()
    }
}

fn wrong_type(name: &'static str) -> AuthError {
    AuthError::new(AuthErrorKind::InvalidClaimType)
        .with_description(format!("invalid {name} claim"))
}

/// A JWT `NumericDate`: a finite JSON number (RFC 7519 §2).
pub(crate) fn numeric_date(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn to_system_time(secs: f64) -> SystemTime {
    if secs >= 0.0 {
        UNIX_EPOCH
            .checked_add(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
            .unwrap_or(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 64))
    } else {
        UNIX_EPOCH
    }
}

fn scopes_at(claims: &Map<String, Value>, path: &[Box<str>]) -> Result<Scopes, AuthError> {
    let wrong =
        || AuthError::new(AuthErrorKind::InvalidClaimType).with_description("invalid scope claim");
    let mut value = None;
    let mut map = claims;
    for (i, name) in path.iter().enumerate() {
        match map.get(&**name) {
            None => return Ok(Scopes::default()),
            Some(v) if i + 1 == path.len() => value = Some(v),
            Some(Value::Object(m)) => map = m,
            Some(_) => return Err(wrong()),
        }
    }
    match value {
        None => Ok(Scopes::default()),
        Some(Value::String(s)) => Ok(Scopes::from_space_delimited(s)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(Box::<str>::from).ok_or_else(wrong))
            .collect::<Result<Vec<_>, _>>()
            .map(Scopes::new),
        Some(_) => Err(wrong()),
    }
}

fn parse_scopes(claims: &Map<String, Value>) -> Result<Scopes, AuthError> {
    let mut all: Vec<Box<str>> = Vec::new();
    match claims.get("scope") {
        None => {}
        Some(Value::String(s)) => {
            all.extend(s.split(' ').filter(|s| !s.is_empty()).map(Into::into))
        }
        Some(_) => return Err(wrong_type("scope")),
    }
    match claims.get("scp") {
        None => {}
        Some(Value::String(s)) => {
            all.extend(s.split(' ').filter(|s| !s.is_empty()).map(Into::into))
        }
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => all.push(s.as_str().into()),
                    _ => return Err(wrong_type("scp")),
                }
            }
        }
        Some(_) => return Err(wrong_type("scp")),
    }
    Ok(Scopes::new(all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn principal(v: Value) -> Result<Principal, AuthError> {
        Principal::from_claims(
            v.as_object().unwrap().clone(),
            TokenFingerprint::of_bytes(b"t"),
        )
    }

    #[test]
    fn scopes_from_scope_and_scp() {
        let p = principal(json!({"scope": "a  b"})).unwrap();
        assert_eq!(p.scopes().iter().collect::<Vec<_>>(), ["a", "b"]);
        let p = principal(json!({"scp": ["x", "y"]})).unwrap();
        assert!(p.scopes().contains_all(["x", "y"]));
        let p = principal(json!({"scp": "x y"})).unwrap();
        assert!(p.scopes().contains("y"));
    }

    #[test]
    fn scopes_match_exactly() {
        let p = principal(json!({"scope": "items:readonly Items:Read"})).unwrap();
        assert!(!p.scopes().contains("items:read"));
        assert!(!p.scopes().contains("items"));
    }

    #[test]
    fn wrong_claim_types_are_errors() {
        for bad in [
            json!({"sub": 1}),
            json!({"scope": ["a"]}),
            json!({"scp": [1]}),
            json!({"exp": "123"}),
            json!({"jti": {}}),
        ] {
            let err = principal(bad.clone()).unwrap_err();
            assert_eq!(err.kind(), AuthErrorKind::InvalidClaimType, "{bad}");
        }
    }

    #[test]
    fn scopes_from_a_configured_path() {
        let fp = TokenFingerprint::of_bytes(b"t");
        let claims =
            json!({"realm_access": {"roles": ["admin", "user"]}, "permissions": "a b", "x": 1});
        let map = claims.as_object().unwrap().clone();
        let p =
            Principal::from_claims_with(map.clone(), fp, &ScopeClaim::path("realm_access.roles"))
                .unwrap();
        assert!(p.scopes().contains_all(["admin", "user"]));
        let p =
            Principal::from_claims_with(map.clone(), fp, &ScopeClaim::path("permissions")).unwrap();
        assert!(p.scopes().contains("b"));
        let p = Principal::from_claims_with(map.clone(), fp, &ScopeClaim::path("missing.path"))
            .unwrap();
        assert!(p.scopes().is_empty());
        for bad in ["x", "x.y", "realm_access"] {
            assert!(
                Principal::from_claims_with(map.clone(), fp, &ScopeClaim::path(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn client_id_falls_back_to_azp() {
        let p = principal(json!({"azp": "c1"})).unwrap();
        assert_eq!(p.client_id(), Some("c1"));
    }

    #[test]
    fn fingerprint_is_hex_and_stable() {
        let a = TokenFingerprint::of_bytes(b"abc");
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(a, TokenFingerprint::of_bytes(b"abc"));
        assert_ne!(a, TokenFingerprint::of_bytes(b"abd"));
    }

    #[test]
    fn typed_claims() {
        #[derive(serde::Deserialize)]
        struct Mine {
            plan: String,
        }
        let p = principal(json!({"plan": "gold"})).unwrap();
        assert_eq!(p.claims_as::<Mine>().unwrap().plan, "gold");
    }
}
