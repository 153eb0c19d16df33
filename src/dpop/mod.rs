//! DPoP: access tokens bound to a key the client holds (RFC 9449).
//!
//! A bearer token works for whoever holds it. A DPoP-bound token carries the thumbprint of a
//! client key in its `cnf.jkt` claim, and works only with a fresh *proof*, a small JWT signed
//! by that key, sent in the `DPoP` header of each request:
//!
//! ```text
//! Authorization: DPoP eyJhbGciOiJFUzI1NiIs...      (the access token)
//! DPoP: eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6...        (the proof for this one request)
//! ```
//!
//! [`Dpop`] verifies a proof as RFC 9449 §4.3 and §7.1 say: exactly one `DPoP` header; a
//! compact JWS with `typ` `dpop+jwt`, no `crit`, an asymmetric `alg` from the configured
//! allowlist (`none` and HMAC never pass, and the proof cannot pick an algorithm outside the
//! list); a public `jwk` of the key type the algorithm needs, without private members, which
//! verifies the signature (strict JSON: duplicate members of the header and the payload are
//! refused); `htm` equal to the request method; `htu` equal to the request URL, both
//! normalised (RFC 3986 §6.2.2 and §6.2.3: case of scheme and host, default port,
//! percent-encoding, dot segments; query and fragment ignored) and built on [`DpopBuilder::external_base_url`] for services behind a
//! proxy; `iat` no older than the window ([`DpopBuilder::window`], default 60 s) and no
//! further in the future than the leeway (default 5 s), read from the configured
//! [`Clock`]; `ath` the SHA-256 of the access token; optionally a server nonce
//! ([`DpopNonces`]). The thumbprint of the proof key (RFC 7638, [`jwk_thumbprint`]) must then
//! equal the verified token's `cnf.jkt`, and the proof's `jti` must not have been seen within
//! the window: a [`ReplayStore`] remembers it, in memory ([`MemoryReplay`], bounded) or in
//! Redis (`RedisReplay`, feature `redis`, shared by every instance).
//!
//! Failures are 401 with `WWW-Authenticate: DPoP error="invalid_dpop_proof"` (a bad proof),
//! `error="invalid_token"` (a token not bound to the proof key), or `error="use_dpop_nonce"`
//! with a fresh `DPoP-Nonce` header, and always `algs="…"` naming the accepted algorithms.
//!
//! Turn it on in the layer with [`SenderConstraints`](crate::sender::SenderConstraints); the
//! per-route policy (require DPoP, allow both, bearer only) is in [`crate::sender`].
//!
//! ```
//! use std::time::Duration;
//! use http::Request;
//! use tower_bearer::dpop::Dpop;
//! use tower_bearer::testing::{DpopKey, TestIssuer, claims};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let dpop = Dpop::builder()
//!     .external_base_url("https://api.example")
//!     .build()
//!     .unwrap();
//!
//! // The client's key, a token bound to it, and a proof for one request.
//! let key = DpopKey::es256();
//! let token = TestIssuer::es256().mint(claims("alice", "", Duration::from_secs(60)).dpop_bound(&key));
//! let proof = key.proof("GET", "https://api.example/items").access_token(&token).sign();
//! let request = Request::get("/items")
//!     .header("authorization", format!("DPoP {token}"))
//!     .header("dpop", &proof)
//!     .body(())
//!     .unwrap();
//!
//! let verified = dpop.verify_proof(&request, &token).unwrap();
//! assert_eq!(verified.jkt(), key.thumbprint());
//! assert!(dpop.record(&verified).await.unwrap(), "first use");
//! assert!(!dpop.record(&verified).await.unwrap(), "a replay");
//! # }
//! ```

mod nonce;
#[cfg(feature = "redis")]
mod redis;
mod replay;
mod url;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderName, Request};
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use nonce::DpopNonces;
#[cfg(feature = "redis")]
pub use redis::RedisReplay;
pub use replay::{DEFAULT_REPLAY_ENTRIES, MemoryReplay, ReplayCheck, ReplayKey, ReplayStore};

use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::keys::Algorithm;
use crate::principal::numeric_date;
use crate::reject::{AuthError, AuthErrorKind};

/// The `DPoP` request header carrying the proof.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The `DPoP-Nonce` response header carrying a server nonce.
pub const DPOP_NONCE: HeaderName = crate::reject::DPOP_NONCE;

/// The algorithms accepted unless configured otherwise.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::PS256,
    Algorithm::RS256,
];

/// The default cap on a proof's length, in bytes (an RSA-4096 proof is about 1.5 KiB).
pub const DEFAULT_MAX_PROOF_LEN: usize = 8 * 1024;

/// The longest `jti` accepted, in bytes.
const MAX_JTI_LEN: usize = 256;

/// JWK members that hold private key material (RFC 7518 §6): a proof carrying any is refused.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Builds a [`Dpop`] verifier.
#[must_use]
pub struct DpopBuilder {
    algorithms: Vec<Algorithm>,
    base_url: Option<String>,
    window: Duration,
    leeway: Duration,
    replay: Option<Arc<dyn ReplayStore>>,
    nonces: Option<DpopNonces>,
    clock: Arc<dyn Clock>,
    max_proof_len: usize,
}

impl fmt::Debug for DpopBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopBuilder")
            .field("algorithms", &self.algorithms)
            .field("base_url", &self.base_url)
            .field("window", &self.window)
            .field("leeway", &self.leeway)
            .field("nonces", &self.nonces)
            .finish_non_exhaustive()
    }
}

impl Default for DpopBuilder {
    fn default() -> Self {
        Self {
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            base_url: None,
            window: Duration::from_secs(60),
            leeway: Duration::from_secs(5),
            replay: None,
            nonces: None,
            clock: Arc::new(SystemClock),
            max_proof_len: DEFAULT_MAX_PROOF_LEN,
        }
    }
}

impl DpopBuilder {
    /// The proof algorithms accepted (default [`DEFAULT_ALGORITHMS`]); only asymmetric ones
    /// are allowed, checked by [`DpopBuilder::build`]. They are announced in the `algs` of
    /// `DPoP` challenges.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// The URL clients use to reach this service, e.g. `https://api.example.com` or
    /// `https://example.com/api` when a proxy strips the `/api` prefix: the `htu` of a proof
    /// must equal it followed by the request path. Without it, the URL is read from the
    /// request: the scheme from the connection's [`Scheme`](crate::network::Scheme)
    /// extension (else the request URI's, else `http`), the authority from the request URI
    /// (HTTP/2) or the `Host` header. Those are the client's word: a proof made for another
    /// server on the same path would pass if the token's audience also fits this one. Set
    /// this in production.
    pub fn external_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// How old a proof's `iat` may be (default 60 s). `jti`s are remembered this long (plus
    /// the leeway).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How far in the future a proof's `iat` may be, for client clock skew (default 5 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Where proof `jti`s are remembered (default: a [`MemoryReplay`] of
    /// [`DEFAULT_REPLAY_ENTRIES`]). Several instances behind one load balancer need a shared
    /// store (`RedisReplay`, feature `redis`), or a proof could be replayed on another one.
    pub fn replay_store(mut self, store: impl ReplayStore) -> Self {
        self.replay = Some(Arc::new(store));
        self
    }

    /// Requires server nonces (RFC 9449 §9): a proof without a valid `nonce` is refused with
    /// `use_dpop_nonce` and a fresh `DPoP-Nonce` header.
    pub fn nonces(mut self, nonces: DpopNonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// The clock for `iat`, nonces and replay entries (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The maximum proof length in bytes (default [`DEFAULT_MAX_PROOF_LEN`]).
    pub fn max_proof_len(mut self, max: usize) -> Self {
        self.max_proof_len = max;
        self
    }

    /// Builds the verifier; fails on an empty or symmetric algorithm list, a base URL that is
    /// not an `http`/`https` URL without query or fragment, or a zero window.
    pub fn build(self) -> Result<Dpop, ConfigError> {
        if self.algorithms.is_empty() {
            return Err(ConfigError::new("DPoP needs at least one algorithm"));
        }
        for alg in &self.algorithms {
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(ConfigError::new(format!(
                    "DPoP proofs must use an asymmetric algorithm, not {alg:?}"
                )));
            }
        }
        if self.window.is_zero() {
            return Err(ConfigError::new("the DPoP window must not be zero"));
        }
        // The replay store keeps a `jti` at most a day: a longer acceptance window would let
        // a proof outlive the memory of its use.
        if self.window + self.leeway > Duration::from_secs(86_400) {
            return Err(ConfigError::new(
                "the DPoP window plus leeway must not exceed one day",
            ));
        }
        let base = match &self.base_url {
            None => None,
            Some(raw) => {
                if raw.contains(['?', '#']) {
                    return Err(ConfigError::new(
                        "the external base URL must not have a query or fragment",
                    ));
                }
                let normal = url::normalize(raw)
                    .ok_or_else(|| ConfigError::new(format!("not an http(s) base URL: {raw:?}")))?;
                Some(normal.trim_end_matches('/').to_owned())
            }
        };
        let mut algorithms = self.algorithms;
        algorithms.dedup();
        let algs = algorithms
            .iter()
            .map(|a| alg_name(*a))
            .collect::<Vec<_>>()
            .join(" ");
        install_crypto_provider();
        Ok(Dpop {
            inner: Arc::new(Inner {
                algs: Arc::from(algs),
                algorithms,
                base,
                window: self.window.as_secs_f64(),
                leeway: self.leeway.as_secs_f64(),
                replay: self
                    .replay
                    .unwrap_or_else(|| Arc::new(MemoryReplay::default())),
                nonces: self.nonces,
                clock: self.clock,
                max_proof_len: self.max_proof_len,
            }),
        })
    }
}

/// With both crypto features on, `jsonwebtoken` cannot pick a backend by itself: prefer aws-lc.
fn install_crypto_provider() {
    #[cfg(all(feature = "aws-lc-rs", feature = "rust-crypto"))]
    {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    }
}

struct Inner {
    algorithms: Vec<Algorithm>,
    algs: Arc<str>,
    base: Option<String>,
    window: f64,
    leeway: f64,
    replay: Arc<dyn ReplayStore>,
    nonces: Option<DpopNonces>,
    clock: Arc<dyn Clock>,
    max_proof_len: usize,
}

/// Verifies DPoP proofs (RFC 9449). Cheap to clone. See the [module docs](self).
#[derive(Clone)]
pub struct Dpop {
    inner: Arc<Inner>,
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("algorithms", &self.inner.algs)
            .field("base_url", &self.inner.base)
            .field("window_s", &self.inner.window)
            .field("leeway_s", &self.inner.leeway)
            .field("nonces", &self.inner.nonces.is_some())
            .finish_non_exhaustive()
    }
}

/// What a valid proof proved: the thumbprint of its key, and the key under which its `jti`
/// is remembered. Holds no proof or token material.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedProof {
    jkt: Box<str>,
    replay_key: ReplayKey,
    iat: f64,
    stale_nonce: bool,
}

impl VerifiedProof {
    /// The RFC 7638 thumbprint (base64url SHA-256) of the proof key.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The key the proof's `jti` is remembered under.
    pub fn replay_key(&self) -> ReplayKey {
        self.replay_key
    }

    /// The proof's `iat`.
    pub fn issued_at(&self) -> SystemTime {
        if self.iat >= 0.0 {
            UNIX_EPOCH + Duration::try_from_secs_f64(self.iat).unwrap_or_default()
        } else {
            UNIX_EPOCH
        }
    }

    /// Whether the proof used the previous server nonce: the response should carry the
    /// current one.
    pub fn wants_new_nonce(&self) -> bool {
        self.stale_nonce
    }
}

fn proof_err(description: &'static str) -> AuthError {
    AuthError::new(AuthErrorKind::InvalidDpopProof)
        .with_description(description)
        .with_dpop_challenge()
}

fn is_b64url(part: &[u8]) -> bool {
    !part.is_empty()
        && part
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

fn decode_object(part: &[u8]) -> Result<Map<String, Value>, AuthError> {
    crate::json::decode_object(part).ok_or_else(|| proof_err("malformed DPoP proof"))
}

/// base64url(SHA-256(bytes)), unpadded.
pub(crate) fn sha256_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// Constant-time equality of two short strings (lengths are not secret).
pub(crate) fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The RFC 7638 thumbprint of a public JWK: base64url of the SHA-256 of its required members
/// (`EC`: `crv kty x y`; `OKP`: `crv kty x`; `RSA`: `e kty n`; `oct`: `k kty`) serialised in
/// lexicographic order without whitespace. `None` when `jwk` is not such a JWK.
///
/// ```
/// // RFC 7638 §3.1
/// let jwk = serde_json::json!({
///     "kty": "RSA",
///     "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
///     "e": "AQAB",
///     "alg": "RS256",
///     "kid": "2011-04-29"
/// });
/// assert_eq!(
///     tower_bearer::dpop::jwk_thumbprint(&jwk).unwrap(),
///     "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
/// );
/// ```
pub fn jwk_thumbprint(jwk: &Value) -> Option<String> {
    thumbprint_of(jwk.as_object()?)
}

fn thumbprint_of(jwk: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        "oct" => &["k", "kty"],
        _ => return None,
    };
    let mut json = String::from("{");
    for (i, name) in members.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let value = jwk.get(*name)?.as_str()?;
        json.push_str(&serde_json::to_string(name).ok()?);
        json.push(':');
        json.push_str(&serde_json::to_string(value).ok()?);
    }
    json.push('}');
    Some(sha256_b64(json.as_bytes()))
}

/// The JWS name of an algorithm (`ES256`, `EdDSA`…).
fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Decoded length of a base64url member (leading zero bytes not counted), or an error.
fn b64_len(jwk: &Map<String, Value>, name: &str) -> Result<usize, AuthError> {
    let s = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| proof_err("DPoP proof jwk is incomplete"))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map(|b| b.iter().skip_while(|b| **b == 0).count())
        .map_err(|_| proof_err("DPoP proof jwk is malformed"))
}

fn b64_exact<'a>(
    jwk: &'a Map<String, Value>,
    name: &str,
    len: usize,
) -> Result<&'a str, AuthError> {
    let s = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| proof_err("DPoP proof jwk is incomplete"))?;
    match URL_SAFE_NO_PAD.decode(s) {
        Ok(b) if b.len() == len => Ok(s),
        _ => Err(proof_err("DPoP proof jwk is malformed")),
    }
}

/// The verification key a proof's `jwk` describes, for `alg` only.
fn proof_key(alg: Algorithm, jwk: &Map<String, Value>) -> Result<DecodingKey, AuthError> {
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(proof_err("DPoP proof jwk must not hold a private key"));
    }
    let string = |name: &str| jwk.get(name).and_then(Value::as_str);
    match jwk.get("alg") {
        None => {}
        Some(Value::String(a)) if *a == alg_name(alg) => {}
        Some(_) => return Err(proof_err("DPoP proof jwk is for another algorithm")),
    }
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err(proof_err("DPoP proof jwk is not a signing key")),
    }
    let mismatch = || proof_err("DPoP proof jwk does not fit its algorithm");
    let kty = string("kty").ok_or_else(mismatch)?;
    let key = match (alg, kty) {
        (Algorithm::ES256 | Algorithm::ES384, "EC") => {
            let (crv, len) = if alg == Algorithm::ES256 {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            if string("crv") != Some(crv) {
                return Err(mismatch());
            }
            let x = b64_exact(jwk, "x", len)?;
            let y = b64_exact(jwk, "y", len)?;
            DecodingKey::from_ec_components(x, y)
        }
        (Algorithm::EdDSA, "OKP") => {
            if string("crv") != Some("Ed25519") {
                return Err(mismatch());
            }
            DecodingKey::from_ed_components(b64_exact(jwk, "x", 32)?)
        }
        (
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
            "RSA",
        ) => {
            // 2048 to 4096-bit moduli (a proof is verified before the token: larger keys
            // would let unauthenticated requests buy expensive checks); a small exponent.
            let n = b64_len(jwk, "n")?;
            let e = b64_len(jwk, "e")?;
            if !(256..=512).contains(&n) || e > 8 {
                return Err(proof_err("DPoP proof jwk has an unsupported RSA key size"));
            }
            DecodingKey::from_rsa_components(
                string("n").unwrap_or_default(),
                string("e").unwrap_or_default(),
            )
        }
        _ => return Err(mismatch()),
    };
    key.map_err(|_| proof_err("DPoP proof jwk is malformed"))
}

impl Dpop {
    /// Starts a builder.
    pub fn builder() -> DpopBuilder {
        DpopBuilder::default()
    }

    /// The accepted proof algorithms.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.inner.algorithms
    }

    /// The accepted algorithms, space-separated, as in the `algs` challenge parameter.
    pub(crate) fn algs_param(&self) -> Arc<str> {
        self.inner.algs.clone()
    }

    /// The current server nonce, when nonces are on: hand it to clients in a `DPoP-Nonce`
    /// header (the layer does so on `use_dpop_nonce` rejections, and on responses to proofs
    /// that used the previous nonce).
    pub fn current_nonce(&self) -> Option<String> {
        let nonces = self.inner.nonces.as_ref()?;
        Some(nonces.issue(self.inner.clock.now()))
    }

    fn use_nonce(&self, nonces: &DpopNonces) -> AuthError {
        AuthError::new(AuthErrorKind::UseDpopNonce)
            .with_description("DPoP proof needs the server nonce")
            .with_dpop_challenge()
            .with_dpop_nonce(nonces.issue(self.inner.clock.now()))
    }

    /// The URL a proof's `htu` must name for `req`, normalised.
    fn request_url<B>(&self, req: &Request<B>) -> Option<String> {
        let path = req.uri().path();
        if let Some(base) = &self.inner.base {
            return url::normalize(&format!("{base}{path}"));
        }
        // The scheme the connection proved (a TLS acceptor's `Scheme` extension) beats the
        // one the request names; the authority is the client's word either way.
        let scheme = match req.extensions().get::<crate::network::Scheme>() {
            Some(crate::network::Scheme::Https) => "https",
            Some(crate::network::Scheme::Http) => "http",
            None => req.uri().scheme_str().unwrap_or("http"),
        };
        let url = match req.uri().authority() {
            Some(authority) => format!("{scheme}://{authority}{path}"),
            None => {
                let mut hosts = req.headers().get_all(http::header::HOST).iter();
                let host = hosts.next()?.to_str().ok()?;
                if hosts.next().is_some() {
                    return None;
                }
                format!("{scheme}://{host}{path}")
            }
        };
        url::normalize(&url)
    }

    /// Verifies the DPoP proof of `req`, presented with `access_token`, without recording its
    /// `jti` (see [`Dpop::record`]). Every error carries the `DPoP` challenge.
    pub fn verify_proof<B>(
        &self,
        req: &Request<B>,
        access_token: &str,
    ) -> Result<VerifiedProof, AuthError> {
        let inner = &*self.inner;
        let mut values = req.headers().get_all(DPOP).iter();
        let Some(value) = values.next() else {
            return Err(proof_err("missing DPoP proof"));
        };
        if values.next().is_some() {
            return Err(proof_err("more than one DPoP proof"));
        }
        let proof = value.as_bytes();
        if proof.len() > inner.max_proof_len {
            return Err(proof_err("DPoP proof too large"));
        }
        let mut parts = proof.split(|b| *b == b'.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(proof_err("malformed DPoP proof"));
        };
        if !is_b64url(h) || !is_b64url(p) || !is_b64url(s) {
            return Err(proof_err("malformed DPoP proof"));
        }

        let header = decode_object(h)?;
        match header.get("typ") {
            Some(Value::String(t))
                if t.eq_ignore_ascii_case("dpop+jwt")
                    || t.eq_ignore_ascii_case("application/dpop+jwt") => {}
            _ => return Err(proof_err("DPoP proof typ must be dpop+jwt")),
        }
        if header.contains_key("crit") {
            return Err(proof_err("DPoP proof has an unsupported critical header"));
        }
        let alg = match header.get("alg") {
            Some(Value::String(a)) => a.parse::<Algorithm>().ok(),
            _ => None,
        }
        .filter(|a| inner.algorithms.contains(a))
        .ok_or_else(|| proof_err("DPoP proof algorithm not allowed"))?;
        let Some(Value::Object(jwk)) = header.get("jwk") else {
            return Err(proof_err("DPoP proof has no jwk"));
        };
        let key = proof_key(alg, jwk)?;
        let jkt = thumbprint_of(jwk).ok_or_else(|| proof_err("DPoP proof jwk is malformed"))?;

        let signing_input = &proof[..h.len() + 1 + p.len()];
        let signature = std::str::from_utf8(s).map_err(|_| proof_err("malformed DPoP proof"))?;
        match jsonwebtoken::crypto::verify(signature, signing_input, &key, alg) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(proof_err("invalid DPoP proof signature")),
        }

        let claims = decode_object(p)?;
        let string = |name: &str| match claims.get(name) {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        let jti = string("jti")
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
            .ok_or_else(|| proof_err("DPoP proof needs a jti"))?;
        if string("htm") != Some(req.method().as_str()) {
            return Err(proof_err("DPoP proof is for another method"));
        }
        let htu = string("htu").and_then(url::normalize);
        match (htu, self.request_url(req)) {
            (Some(htu), Some(url)) if htu == url => {}
            _ => return Err(proof_err("DPoP proof is for another URL")),
        }
        let iat = claims
            .get("iat")
            .and_then(numeric_date)
            .ok_or_else(|| proof_err("DPoP proof needs a numeric iat"))?;
        let now = inner.clock.unix_seconds();
        if iat > now + inner.leeway {
            return Err(proof_err("DPoP proof issued in the future"));
        }
        if iat < now - inner.window {
            return Err(proof_err("DPoP proof too old"));
        }
        match string("ath") {
            Some(ath) if ct_eq(ath, &sha256_b64(access_token.as_bytes())) => {}
            Some(_) => return Err(proof_err("DPoP proof ath does not match the token")),
            None => return Err(proof_err("DPoP proof needs ath")),
        }
        let mut stale_nonce = false;
        if let Some(nonces) = &inner.nonces {
            match string("nonce").map(|n| nonces.check(n, inner.clock.now())) {
                Some(nonce::NonceState::Current) => {}
                Some(nonce::NonceState::Previous) => stale_nonce = true,
                _ => return Err(self.use_nonce(nonces)),
            }
        }
        Ok(VerifiedProof {
            replay_key: ReplayKey::of(&jkt, jti),
            jkt: jkt.into(),
            iat,
            stale_nonce,
        })
    }

    /// Records the proof's `jti` for the rest of the window: `Ok(true)` on its first use,
    /// `Ok(false)` for a replay, an error when the store fails (the layer then answers 503).
    pub fn record(&self, proof: &VerifiedProof) -> ReplayCheck {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let now_s = inner.clock.unix_seconds();
        // Kept until the proof's iat leaves the window, plus a second of margin.
        let ttl = (proof.iat + inner.window - now_s).max(0.0).ceil() + 1.0;
        let ttl = Duration::from_secs_f64(ttl.min(86_400.0));
        inner.replay.insert_new(proof.replay_key, now, ttl)
    }

    /// [`Dpop::verify_proof`] then [`Dpop::record`]: a replay is an `invalid_dpop_proof`, a
    /// store failure [`AuthErrorKind::Unavailable`].
    pub async fn verify<B>(
        &self,
        req: &Request<B>,
        access_token: &str,
    ) -> Result<VerifiedProof, AuthError> {
        let proof = self.verify_proof(req, access_token)?;
        replay_outcome(self.record(&proof).await)?;
        Ok(proof)
    }
}

/// The rejection for a replay-store answer, if any.
pub(crate) fn replay_outcome(
    result: Result<bool, crate::rate_limit::StoreError>,
) -> Result<(), AuthError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(proof_err("DPoP proof replayed")),
        Err(e) => {
            tracing::warn!(
                target: "tower_bearer::dpop",
                error = %e,
                "DPoP replay check failed"
            );
            Err(AuthError::new(AuthErrorKind::Unavailable)
                .with_description("DPoP replay check temporarily unavailable"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thumbprint_of_ec_and_okp_keys_uses_required_members_only() {
        let ec =
            json!({"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "kid": "z", "alg": "ES256"});
        assert_eq!(
            jwk_thumbprint(&ec).unwrap(),
            sha256_b64(br#"{"crv":"P-256","kty":"EC","x":"a","y":"b"}"#)
        );
        let okp = json!({"kty": "OKP", "crv": "Ed25519", "x": "c"});
        assert_eq!(
            jwk_thumbprint(&okp).unwrap(),
            sha256_b64(br#"{"crv":"Ed25519","kty":"OKP","x":"c"}"#)
        );
        assert!(jwk_thumbprint(&json!({"kty": "EC", "crv": "P-256", "x": "a"})).is_none());
        assert!(jwk_thumbprint(&json!({"kty": "XYZ"})).is_none());
        assert!(jwk_thumbprint(&json!([])).is_none());
    }

    #[test]
    fn symmetric_algorithms_and_bad_base_urls_are_refused_at_build() {
        assert!(
            Dpop::builder()
                .algorithms([Algorithm::HS256])
                .build()
                .is_err()
        );
        assert!(Dpop::builder().algorithms([]).build().is_err());
        for bad in [
            "ftp://x",
            "https://x/?q",
            "https://x/#f",
            "api.example",
            "https://",
        ] {
            assert!(
                Dpop::builder().external_base_url(bad).build().is_err(),
                "{bad}"
            );
        }
        assert!(Dpop::builder().window(Duration::ZERO).build().is_err());
    }

    #[test]
    fn private_members_are_refused() {
        for m in PRIVATE_MEMBERS {
            let mut jwk =
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([1u8; 32])});
            jwk[*m] = json!("AAAA");
            let err = proof_key(Algorithm::EdDSA, jwk.as_object().unwrap())
                .err()
                .unwrap();
            assert_eq!(err.kind(), AuthErrorKind::InvalidDpopProof, "{m}");
        }
    }

    #[test]
    fn key_type_must_fit_the_algorithm() {
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([1u8; 32])});
        assert!(proof_key(Algorithm::EdDSA, ed.as_object().unwrap()).is_ok());
        for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::PS256] {
            assert!(proof_key(alg, ed.as_object().unwrap()).is_err(), "{alg:?}");
        }
        let short = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([1u8; 31])});
        assert!(proof_key(Algorithm::EdDSA, short.as_object().unwrap()).is_err());
        let p384 = json!({"kty": "EC", "crv": "P-384",
            "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([1u8; 32])});
        assert!(proof_key(Algorithm::ES256, p384.as_object().unwrap()).is_err());
        let small_rsa =
            json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB"});
        assert!(proof_key(Algorithm::RS256, small_rsa.as_object().unwrap()).is_err());
    }
}
