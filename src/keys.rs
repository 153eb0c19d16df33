//! Verification keys: the key decides the algorithm, never the token.
//!
//! A [`Key`] is one public key (or HMAC secret) bound to exactly one JWS algorithm and an
//! optional key id. Build keys from PEM, DER or JWK; a [`KeySet`] holds several and picks one
//! for a token:
//!
//! - a token with a `kid` uses the key with that id; if no key has it, a key configured
//!   without an id is used when it is the only such key for the token's algorithm;
//! - a token without a `kid` uses the one key for its algorithm, and is refused when the set
//!   has several keys for that algorithm;
//! - the chosen key's algorithm must equal the token's `alg`, so `none`, HMAC-with-a-public-key
//!   confusion and algorithm swaps fail.
//!
//! HMAC secrets shorter than 32 bytes and RSA moduli under 2048 bits are refused when the key
//! is built. JWKs whose `use` is not `sig`, whose `key_ops` lack `verify`, or whose `alg` does
//! not fit the key type are refused too (in a JWK Set they are skipped with a warning).
//!
//! ```
//! use tower_bearer::keys::{Algorithm, Key, KeySet};
//!
//! let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"ed-1","use":"sig",
//!     "x":"Zywzf8y_zBShYSALloNT8MQ7X_GJwiZrW8v6rddc3RE"}]}"#;
//! let mut set = KeySet::from_jwks_json(jwks).unwrap();
//! set.push(Key::hmac(b"0123456789abcdef0123456789abcdef", Algorithm::HS256).unwrap().with_kid("h1")).unwrap();
//! assert_eq!(set.len(), 2);
//! assert!(Key::hmac(b"too short", Algorithm::HS256).is_err());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{AlgorithmFamily, DecodingKey};
use serde::Deserialize;

use crate::error::ConfigError;

/// The shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size, 256 bits).
pub const MIN_HMAC_SECRET_LEN: usize = 32;
/// The smallest RSA modulus accepted, in bits (RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// One verification key, bound to one algorithm.
#[derive(Clone)]
pub struct Key {
    kid: Option<Arc<str>>,
    alg: Algorithm,
    decoding: DecodingKey,
    /// An HMAC secret's key schedule, computed once (with aws-lc): `jsonwebtoken::crypto`
    /// would redo it for every token.
    #[cfg(feature = "aws-lc-rs")]
    hmac: Option<aws_lc_rs::hmac::Key>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn expect_family(alg: Algorithm, want: AlgorithmFamily) -> Result<(), ConfigError> {
    if alg.family() == want {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "algorithm {alg:?} does not fit a {want:?} key"
        )))
    }
}

fn key_err(what: &str) -> impl FnOnce(jsonwebtoken::errors::Error) -> ConfigError + '_ {
    move |e| ConfigError::new(format!("invalid {what}: {e}"))
}

impl Key {
    /// An HMAC secret (HS256/384/512), at least 32 bytes.
    pub fn hmac(secret: &[u8], alg: Algorithm) -> Result<Self, ConfigError> {
        expect_family(alg, AlgorithmFamily::Hmac)?;
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(ConfigError::new(format!(
                "HMAC secret is {} bytes; at least {MIN_HMAC_SECRET_LEN} are required",
                secret.len()
            )));
        }
        Ok(Self::raw(alg, DecodingKey::from_secret(secret)))
    }

    /// An RSA public key in PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`), for an RS* or PS* algorithm.
    pub fn rsa_pem(pem: &[u8], alg: Algorithm) -> Result<Self, ConfigError> {
        expect_family(alg, AlgorithmFamily::Rsa)?;
        let key = DecodingKey::from_rsa_pem(pem).map_err(key_err("RSA PEM key"))?;
        check_rsa_der_bits(key.try_get_as_bytes().unwrap_or_default())?;
        Ok(Self::raw(alg, key))
    }

    /// An RSA public key as PKCS#1 `RSAPublicKey` DER.
    pub fn rsa_der(der: &[u8], alg: Algorithm) -> Result<Self, ConfigError> {
        expect_family(alg, AlgorithmFamily::Rsa)?;
        check_rsa_der_bits(der)?;
        Ok(Self::raw(alg, DecodingKey::from_rsa_der(der)))
    }

    /// An EC public key in PEM (`PUBLIC KEY`), for ES256 (P-256) or ES384 (P-384).
    pub fn ec_pem(pem: &[u8], alg: Algorithm) -> Result<Self, ConfigError> {
        expect_family(alg, AlgorithmFamily::Ec)?;
        let key = DecodingKey::from_ec_pem(pem).map_err(key_err("EC PEM key"))?;
        check_ec_point(key.try_get_as_bytes().unwrap_or_default(), alg)?;
        Ok(Self::raw(alg, key))
    }

    /// An EC public key as an uncompressed SEC1 point (`0x04 ‖ x ‖ y`).
    pub fn ec_der(point: &[u8], alg: Algorithm) -> Result<Self, ConfigError> {
        expect_family(alg, AlgorithmFamily::Ec)?;
        check_ec_point(point, alg)?;
        Ok(Self::raw(alg, DecodingKey::from_ec_der(point)))
    }

    /// An Ed25519 public key in PEM (`PUBLIC KEY`), for EdDSA.
    pub fn ed_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(key_err("Ed25519 PEM key"))?;
        if key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0) != 32 {
            return Err(ConfigError::new("Ed25519 public key must be 32 bytes"));
        }
        Ok(Self::raw(Algorithm::EdDSA, key))
    }

    /// An Ed25519 public key as its raw 32 bytes.
    pub fn ed_der(raw: &[u8]) -> Result<Self, ConfigError> {
        if raw.len() != 32 {
            return Err(ConfigError::new("Ed25519 public key must be 32 bytes"));
        }
        Ok(Self::raw(Algorithm::EdDSA, DecodingKey::from_ed_der(raw)))
    }

    /// A public key from PEM whatever its type: RSA (with `alg`, RS256 when `None`), EC (the
    /// curve decides ES256 / ES384, `alg` must agree) or Ed25519.
    pub fn from_pem(pem: &[u8], alg: Option<Algorithm>) -> Result<Self, ConfigError> {
        let text = std::str::from_utf8(pem).map_err(|_| ConfigError::new("PEM is not UTF-8"))?;
        if text.contains("PRIVATE KEY") {
            return Err(ConfigError::new(
                "a private key was given where a public key is expected",
            ));
        }
        if let Ok(k) = Self::rsa_pem(pem, alg.unwrap_or(Algorithm::RS256)) {
            return Ok(k);
        }
        if let Ok(k) = Self::ed_pem(pem)
            && alg.is_none_or(|a| a == Algorithm::EdDSA)
        {
            return Ok(k);
        }
        for ec in [Algorithm::ES256, Algorithm::ES384] {
            if alg.is_none_or(|a| a == ec)
                && let Ok(k) = Self::ec_pem(pem, ec)
            {
                return Ok(k);
            }
        }
        Err(ConfigError::new(
            "not a usable RSA (2048+ bits), P-256, P-384 or Ed25519 public key for the algorithm",
        ))
    }

    /// A key from one JWK (RFC 7517), as JSON text.
    pub fn from_jwk_json(json: &str) -> Result<Self, ConfigError> {
        let jwk: RawJwk = serde_json::from_str(json)
            .map_err(|e| ConfigError::new(format!("invalid JWK: {e}")))?;
        jwk.into_key()
    }

    /// A key from a `jsonwebtoken` JWK. Unlike `DecodingKey::from_jwk`, this honours `use`,
    /// `key_ops` and `alg`.
    pub fn from_jwk(jwk: &jsonwebtoken::jwk::Jwk) -> Result<Self, ConfigError> {
        let value = serde_json::to_value(jwk).map_err(|e| ConfigError::new(e.to_string()))?;
        let jwk: RawJwk = serde_json::from_value(value)
            .map_err(|e| ConfigError::new(format!("invalid JWK: {e}")))?;
        jwk.into_key()
    }

    fn raw(alg: Algorithm, decoding: DecodingKey) -> Self {
        #[cfg(feature = "aws-lc-rs")]
        let hmac = match (alg, decoding.try_get_as_bytes()) {
            (Algorithm::HS256, Ok(secret)) => Some((aws_lc_rs::hmac::HMAC_SHA256, secret)),
            (Algorithm::HS384, Ok(secret)) => Some((aws_lc_rs::hmac::HMAC_SHA384, secret)),
            (Algorithm::HS512, Ok(secret)) => Some((aws_lc_rs::hmac::HMAC_SHA512, secret)),
            _ => None,
        }
        .map(|(hmac_alg, secret)| aws_lc_rs::hmac::Key::new(hmac_alg, secret));
        Self {
            kid: None,
            alg,
            decoding,
            #[cfg(feature = "aws-lc-rs")]
            hmac,
        }
    }

    /// Sets the key id.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Checks a JWS signature (`signature`, base64url, checked to be in that alphabet) over
    /// `signing_input` with this key and its own algorithm, in constant time for HMAC. Decodes
    /// strictly: no padding, canonical trailing bits.
    pub(crate) fn verify_signature(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        #[cfg(feature = "aws-lc-rs")]
        if let Some(key) = &self.hmac {
            // The longest HMAC tag is 64 bytes (HS512), 86 characters, which `decode_slice`
            // may estimate at 66; a signature that does not fit cannot match.
            let mut tag = [0u8; 96];
            return URL_SAFE_NO_PAD
                .decode_slice(signature, &mut tag)
                .is_ok_and(|n| aws_lc_rs::hmac::verify(key, signing_input, &tag[..n]).is_ok());
        }
        std::str::from_utf8(signature).is_ok_and(|signature| {
            jsonwebtoken::crypto::verify(signature, signing_input, &self.decoding, self.alg)
                .unwrap_or(false)
        })
    }
}

/// Splits a PKCS#1 `RSAPublicKey` (`SEQUENCE { INTEGER n, INTEGER e }`) into `n` and `e`,
/// without leading zero bytes.
pub(crate) fn rsa_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    fn header(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        Some(rest.split_at(len))
    }
    fn strip(mut v: &[u8]) -> &[u8] {
        while let [0, rest @ ..] = v {
            v = rest;
        }
        v
    }
    let (seq, _) = header(der, 0x30)?;
    let (n, rest) = header(seq, 0x02)?;
    let (e, _) = header(rest, 0x02)?;
    Some((strip(n), strip(e)))
}

/// The length in bits of a big-endian unsigned integer.
fn bit_len(n: &[u8]) -> usize {
    let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
    match n.first() {
        None => 0,
        Some(first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

fn check_rsa_bits(n: &[u8]) -> Result<(), ConfigError> {
    let bits = bit_len(n);
    if bits < MIN_RSA_BITS {
        return Err(ConfigError::new(format!(
            "RSA modulus is {bits} bits; at least {MIN_RSA_BITS} are required"
        )));
    }
    Ok(())
}

fn check_rsa_der_bits(der: &[u8]) -> Result<(), ConfigError> {
    let (n, _) = rsa_components(der).ok_or_else(|| ConfigError::new("malformed RSA public key"))?;
    check_rsa_bits(n)
}

fn check_ec_point(point: &[u8], alg: Algorithm) -> Result<(), ConfigError> {
    let coord = if alg == Algorithm::ES256 { 32 } else { 48 };
    if point.len() == 1 + 2 * coord && point[0] == 4 {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "EC public key is not an uncompressed point on the curve of {alg:?}"
        )))
    }
}

/// The JWK members this crate reads (RFC 7517 §4, RFC 7518 §6).
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
    d: Option<String>,
}

fn parse_alg(s: &str) -> Result<Algorithm, ConfigError> {
    s.parse::<Algorithm>()
        .map_err(|_| ConfigError::new(format!("unsupported JWK alg {s:?}")))
}

fn b64(field: Option<&String>, name: &str) -> Result<Vec<u8>, ConfigError> {
    let s = field.ok_or_else(|| ConfigError::new(format!("JWK lacks \"{name}\"")))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| ConfigError::new(format!("JWK \"{name}\" is not base64url")))
}

impl RawJwk {
    fn into_key(self) -> Result<Key, ConfigError> {
        if let Some(u) = &self.use_
            && u != "sig"
        {
            return Err(ConfigError::new(format!("JWK use is {u:?}, not \"sig\"")));
        }
        if let Some(ops) = &self.key_ops
            && !ops.iter().any(|o| o == "verify")
        {
            return Err(ConfigError::new("JWK key_ops does not include \"verify\""));
        }
        if self.d.is_some() && self.kty != "oct" {
            return Err(ConfigError::new("JWK holds private key material"));
        }
        let alg = self.alg.as_deref().map(parse_alg).transpose()?;
        let key = match self.kty.as_str() {
            "RSA" => {
                let alg = alg.unwrap_or(Algorithm::RS256);
                expect_family(alg, AlgorithmFamily::Rsa)?;
                let n = b64(self.n.as_ref(), "n")?;
                let e = b64(self.e.as_ref(), "e")?;
                check_rsa_bits(&n)?;
                if e.is_empty() {
                    return Err(ConfigError::new("RSA exponent is empty"));
                }
                Key::raw(alg, DecodingKey::from_rsa_raw_components(&n, &e))
            }
            "EC" => {
                let curve_alg = match self.crv.as_deref() {
                    Some("P-256") => Algorithm::ES256,
                    Some("P-384") => Algorithm::ES384,
                    other => {
                        return Err(ConfigError::new(format!("unsupported EC curve {other:?}")));
                    }
                };
                if alg.is_some_and(|a| a != curve_alg) {
                    return Err(ConfigError::new("JWK alg does not match its curve"));
                }
                let mut point = vec![4u8];
                point.extend(b64(self.x.as_ref(), "x")?);
                point.extend(b64(self.y.as_ref(), "y")?);
                Key::ec_der(&point, curve_alg)?
            }
            "OKP" => {
                if self.crv.as_deref() != Some("Ed25519") {
                    return Err(ConfigError::new(format!(
                        "unsupported OKP curve {:?}",
                        self.crv
                    )));
                }
                if alg.is_some_and(|a| a != Algorithm::EdDSA) {
                    return Err(ConfigError::new("JWK alg does not match an Ed25519 key"));
                }
                Key::ed_der(&b64(self.x.as_ref(), "x")?)?
            }
            "oct" => {
                let alg =
                    alg.ok_or_else(|| ConfigError::new("an oct JWK needs an explicit alg"))?;
                Key::hmac(&b64(self.k.as_ref(), "k")?, alg)?
            }
            other => return Err(ConfigError::new(format!("unsupported JWK kty {other:?}"))),
        };
        Ok(match self.kid {
            Some(kid) => key.with_kid(kid),
            None => key,
        })
    }
}

/// A set of keys with the selection rules of the module docs.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    by_kid: HashMap<Arc<str>, usize>,
    /// Unique per set built (clones share it): what the token cache checks a hit against.
    id: u64,
}

impl Default for KeySet {
    fn default() -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            keys: Vec::new(),
            by_kid: HashMap::new(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.keys).finish()
    }
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; a second key with the same `kid` is a configuration error.
    pub fn push(&mut self, key: Key) -> Result<(), ConfigError> {
        if let Some(kid) = &key.kid {
            if self.by_kid.contains_key(kid) {
                return Err(ConfigError::new(format!("duplicate key id {kid:?}")));
            }
            self.by_kid.insert(kid.clone(), self.keys.len());
        }
        self.keys.push(key);
        Ok(())
    }

    /// Adds a key, builder style.
    pub fn with(mut self, key: Key) -> Result<Self, ConfigError> {
        self.push(key)?;
        Ok(self)
    }

    /// Parses a JWK Set (`{"keys": [...]}`). Keys that cannot be used for verification (wrong
    /// `use`, `alg` mismatch, unsupported type, weak RSA) are skipped with a warning; a repeated
    /// `kid` keeps the first key. It is an error when no key is usable.
    pub fn from_jwks_json(json: &str) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Jwks {
            keys: Vec<serde_json::Value>,
        }
        let jwks: Jwks = serde_json::from_str(json)
            .map_err(|e| ConfigError::new(format!("invalid JWK Set: {e}")))?;
        let mut set = Self::new();
        for (i, value) in jwks.keys.into_iter().enumerate() {
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let key = serde_json::from_value::<RawJwk>(value)
                .map_err(|e| ConfigError::new(format!("invalid JWK: {e}")))
                .and_then(RawJwk::into_key);
            match key {
                Ok(key) => {
                    if let Err(e) = set.push(key) {
                        tracing::warn!(index = i, kid = ?kid, error = %e, "JWK skipped");
                    }
                }
                Err(e) => tracing::warn!(index = i, kid = ?kid, error = %e, "JWK skipped"),
            }
        }
        if set.is_empty() {
            return Err(ConfigError::new(
                "the JWK Set holds no usable verification key",
            ));
        }
        Ok(set)
    }

    /// An id unique to this set (clones share it).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// The key for a token with this `kid` and `alg`, by the rules of the module docs.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, KeyLookupError> {
        if let Some(kid) = kid {
            if let Some(&i) = self.by_kid.get(kid) {
                let key = &self.keys[i];
                return if key.alg == alg {
                    Ok(key)
                } else {
                    Err(KeyLookupError::AlgorithmMismatch)
                };
            }
            return self
                .only(|k| k.kid.is_none() && k.alg == alg)
                .ok_or(KeyLookupError::UnknownKey);
        }
        self.only(|k| k.alg == alg).ok_or_else(|| {
            if self.keys.iter().any(|k| k.alg == alg) {
                KeyLookupError::Ambiguous
            } else {
                KeyLookupError::AlgorithmMismatch
            }
        })
    }

    fn only(&self, pred: impl Fn(&Key) -> bool) -> Option<&Key> {
        let mut it = self.keys.iter().filter(|k| pred(k));
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }
}

/// Why no key was found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyLookupError {
    /// No key has the token's `kid`.
    UnknownKey,
    /// The key found is for another algorithm, or no key is for the token's algorithm.
    AlgorithmMismatch,
    /// The token has no `kid` and several keys fit its algorithm.
    Ambiguous,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn hmac_secret_length() {
        assert!(Key::hmac(&SECRET[..31], Algorithm::HS256).is_err());
        assert!(Key::hmac(SECRET, Algorithm::HS256).is_ok());
        assert!(Key::hmac(SECRET, Algorithm::RS256).is_err());
    }

    #[test]
    fn hmac_signatures_verify_as_jsonwebtoken_does() {
        #[cfg(all(feature = "aws-lc-rs", feature = "rust-crypto"))]
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let input = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0";
        let flip_last = |s: &str, to: char| format!("{}{to}", &s[..s.len() - 1]);
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let key = Key::hmac(SECRET, alg).unwrap();
            let sig = jsonwebtoken::crypto::sign(
                input,
                &jsonwebtoken::EncodingKey::from_secret(SECRET),
                alg,
            )
            .unwrap();
            let floor = |sig: &str| {
                jsonwebtoken::crypto::verify(sig, input, &key.decoding, alg).unwrap_or(false)
            };
            assert!(key.verify_signature(input, sig.as_bytes()), "{alg:?}");
            assert!(floor(&sig));
            // Another message, another key, a truncated or extended tag: refused.
            assert!(!key.verify_signature(b"eyJhbGciOiJIUzI1NiJ9.e30", sig.as_bytes()));
            let other = Key::hmac(b"another secret, also 32 bytes ok", alg).unwrap();
            assert!(!other.verify_signature(input, sig.as_bytes()));
            assert!(!key.verify_signature(input, &sig.as_bytes()[..sig.len() - 4]));
            assert!(!key.verify_signature(input, format!("{sig}AAAA").as_bytes()));
            assert!(!key.verify_signature(input, b""));
            // Non-canonical trailing bits (the last character's unused bits set) decode to
            // the same tag in a lax decoder: both refuse them.
            let last = sig.chars().last().unwrap();
            let lax = flip_last(&sig, if last == 'A' { 'B' } else { 'A' });
            assert_eq!(key.verify_signature(input, lax.as_bytes()), floor(&lax));
            let tweaked = flip_last(&sig, char::from(last as u8 ^ 1));
            assert!(!key.verify_signature(input, tweaked.as_bytes()));
            assert!(!floor(&tweaked));
        }
    }

    #[test]
    fn jwk_use_and_alg_are_honoured() {
        let ed =
            r#"{"kty":"OKP","crv":"Ed25519","x":"Zywzf8y_zBShYSALloNT8MQ7X_GJwiZrW8v6rddc3RE""#;
        assert!(Key::from_jwk_json(&format!("{ed}}}")).is_ok());
        assert!(Key::from_jwk_json(&format!(r#"{ed},"use":"enc"}}"#)).is_err());
        assert!(Key::from_jwk_json(&format!(r#"{ed},"alg":"ES256"}}"#)).is_err());
        assert!(Key::from_jwk_json(&format!(r#"{ed},"key_ops":["encrypt"]}}"#)).is_err());
        assert!(Key::from_jwk_json(&format!(r#"{ed},"alg":"none"}}"#)).is_err());
        // the same rules through jsonwebtoken's own Jwk type
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_str(&format!(r#"{ed},"use":"enc"}}"#)).unwrap();
        assert!(
            jsonwebtoken::DecodingKey::from_jwk(&jwk).is_ok(),
            "jsonwebtoken ignores use"
        );
        assert!(Key::from_jwk(&jwk).is_err());
    }

    #[test]
    fn rsa_modulus_measured() {
        // SEQUENCE { INTEGER 0x00 0x80 ..(128 bytes) , INTEGER 3 } : a 1024-bit modulus
        let mut n = vec![0u8, 0x80];
        n.extend([1u8; 127]);
        let mut der = vec![
            0x30,
            0x81,
            (n.len() + 3 + 3) as u8,
            0x02,
            0x81,
            n.len() as u8,
        ];
        der.extend(&n);
        der.extend([0x02, 0x01, 0x03]);
        let (n, e) = rsa_components(&der).unwrap();
        assert_eq!((bit_len(n), e), (1024, &[3u8][..]));
        assert!(Key::rsa_der(&der, Algorithm::RS256).is_err());
        assert_eq!(rsa_components(&[0x30]), None);
    }

    #[test]
    fn selection_rules() {
        let set = KeySet::new()
            .with(Key::hmac(SECRET, Algorithm::HS256).unwrap().with_kid("a"))
            .unwrap()
            .with(Key::hmac(SECRET, Algorithm::HS384).unwrap().with_kid("b"))
            .unwrap();
        assert_eq!(
            set.select(Some("a"), Algorithm::HS256).unwrap().kid(),
            Some("a")
        );
        assert_eq!(
            set.select(Some("a"), Algorithm::HS384).unwrap_err(),
            KeyLookupError::AlgorithmMismatch
        );
        assert_eq!(
            set.select(Some("zz"), Algorithm::HS256).unwrap_err(),
            KeyLookupError::UnknownKey
        );
        assert_eq!(set.select(None, Algorithm::HS384).unwrap().kid(), Some("b"));
        assert_eq!(
            set.select(None, Algorithm::RS256).unwrap_err(),
            KeyLookupError::AlgorithmMismatch
        );
        let two = set
            .clone()
            .with(Key::hmac(SECRET, Algorithm::HS256).unwrap())
            .unwrap();
        assert_eq!(
            two.select(None, Algorithm::HS256).unwrap_err(),
            KeyLookupError::Ambiguous
        );
        assert!(
            two.clone()
                .with(Key::hmac(SECRET, Algorithm::HS256).unwrap().with_kid("a"))
                .is_err()
        );
    }
}
