//! A test issuer (feature `testing`): keys generated at run time, token minting, JWKs.
//!
//! Test your own services the way this crate tests itself: mint real tokens with a
//! [`TestIssuer`], hand its [`TestIssuer::key`] (or its JWK Set) to the authenticator, and move
//! time with [`ManualClock`](crate::clock::ManualClock).
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::testing::{TestIssuer, claims};
//! use tower_bearer::validate::Jwt;
//!
//! let issuer = TestIssuer::es256().with_kid("k1");
//! let jwt = Jwt::builder().key(issuer.key()).audience("api").build().unwrap();
//! let token = issuer.mint(&claims("alice", "items:read", Duration::from_secs(300)).aud("api"));
//! let principal = jwt.verify(&token).unwrap();
//! assert_eq!(principal.subject(), Some("alice"));
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use crate::keys::{Algorithm, Key, rsa_components};

enum Signer {
    Hmac(Vec<u8>),
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// An issuer for tests: one freshly generated key and its algorithm.
pub struct TestIssuer {
    alg: Algorithm,
    kid: Option<String>,
    signer: Signer,
}

impl fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestIssuer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestIssuer {
    /// A new key for `alg` (any algorithm `jsonwebtoken` supports).
    pub fn new(alg: Algorithm) -> Self {
        let signer = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let mut secret = vec![0u8; 48];
                aws_lc_rs::rand::fill(&mut secret).expect("random secret");
                Signer::Hmac(secret)
            }
            Algorithm::ES256 => Signer::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("P-256 key"),
            ),
            Algorithm::ES384 => Signer::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)
                    .expect("P-384 key"),
            ),
            Algorithm::EdDSA => Signer::Ed(Ed25519KeyPair::generate().expect("Ed25519 key")),
            _ => Signer::Rsa(
                RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key"),
            ),
        };
        Self {
            alg,
            kid: None,
            signer,
        }
    }

    /// HS256 with a random 48-byte secret.
    pub fn hs256() -> Self {
        Self::new(Algorithm::HS256)
    }

    /// RS256 with a 2048-bit key.
    pub fn rs256() -> Self {
        Self::new(Algorithm::RS256)
    }

    /// ES256 (P-256).
    pub fn es256() -> Self {
        Self::new(Algorithm::ES256)
    }

    /// EdDSA (Ed25519).
    pub fn ed25519() -> Self {
        Self::new(Algorithm::EdDSA)
    }

    /// Sets the key id put in minted headers and in the verification key.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The HMAC secret, for HS* issuers.
    pub fn secret(&self) -> Option<&[u8]> {
        match &self.signer {
            Signer::Hmac(s) => Some(s),
            _ => None,
        }
    }

    /// The verification key (with the issuer's kid).
    pub fn key(&self) -> Key {
        let key = match &self.signer {
            Signer::Hmac(s) => Key::hmac(s, self.alg),
            Signer::Rsa(k) => Key::rsa_der(k.public_key().as_ref(), self.alg),
            Signer::Ec(k) => Key::ec_der(k.public_key().as_ref(), self.alg),
            Signer::Ed(k) => Key::ed_der(k.public_key().as_ref()),
        }
        .expect("generated keys are valid");
        match &self.kid {
            Some(kid) => key.with_kid(kid.as_str()),
            None => key,
        }
    }

    /// The public key as a JWK with `use: sig`, `alg` and `kid` (an `oct` JWK for HMAC).
    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.signer {
            Signer::Hmac(s) => json!({"kty": "oct", "k": b64(s)}),
            Signer::Rsa(k) => {
                let (n, e) = rsa_components(k.public_key().as_ref()).expect("RSAPublicKey DER");
                json!({"kty": "RSA", "n": b64(n), "e": b64(e)})
            }
            Signer::Ec(k) => {
                let point = k.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let crv = if half == 32 { "P-256" } else { "P-384" };
                json!({"kty": "EC", "crv": crv, "x": b64(&point[1..=half]), "y": b64(&point[1 + half..])})
            }
            Signer::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        };
        let obj = jwk.as_object_mut().expect("object");
        obj.insert("use".into(), json!("sig"));
        obj.insert("alg".into(), json!(alg_name(self.alg)));
        if let Some(kid) = &self.kid {
            obj.insert("kid".into(), json!(kid));
        }
        jwk
    }

    /// A JWK Set with the public keys of `issuers`.
    pub fn jwks(issuers: &[&TestIssuer]) -> Value {
        json!({"keys": issuers.iter().map(|i| i.jwk()).collect::<Vec<_>>()})
    }

    /// The public key as PEM (`PUBLIC KEY`, SubjectPublicKeyInfo); `None` for HMAC.
    pub fn public_key_pem(&self) -> Option<String> {
        let der = match &self.signer {
            Signer::Hmac(_) => return None,
            Signer::Rsa(k) => k.public_key().as_der().ok()?.as_ref().to_vec(),
            Signer::Ec(k) => k.public_key().as_der().ok()?.as_ref().to_vec(),
            Signer::Ed(k) => k.public_key().as_der().ok()?.as_ref().to_vec(),
        };
        let body = STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).ok()?);
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Some(pem)
    }

    /// The standard header: `{"alg", "typ": "JWT", "kid"?}`.
    pub fn header(&self) -> Value {
        let mut h = json!({"alg": alg_name(self.alg), "typ": "JWT"});
        if let Some(kid) = &self.kid {
            h["kid"] = json!(kid);
        }
        h
    }

    /// Mints a token with the standard header.
    pub fn mint(&self, claims: impl Into<Value>) -> String {
        self.mint_with_header(&self.header(), &claims.into())
    }

    /// Mints a token with any header (signed with this issuer's key and algorithm whatever
    /// the header says): for tests of hostile headers.
    pub fn mint_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_parts(
            &b64(serde_json::to_vec(header).expect("json")),
            &b64(serde_json::to_vec(claims).expect("json")),
        )
    }

    /// Signs pre-encoded parts: `header.payload.signature`.
    pub fn sign_parts(&self, header_b64: &str, payload_b64: &str) -> String {
        let input = format!("{header_b64}.{payload_b64}");
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64(sig))
    }

    /// The raw signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Hmac(secret) => {
                let alg = match self.alg {
                    Algorithm::HS384 => aws_lc_rs::hmac::HMAC_SHA384,
                    Algorithm::HS512 => aws_lc_rs::hmac::HMAC_SHA512,
                    _ => aws_lc_rs::hmac::HMAC_SHA256,
                };
                aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(alg, secret), message)
                    .as_ref()
                    .to_vec()
            }
            Signer::Rsa(k) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(padding, &rng, message, &mut sig)
                    .expect("RSA signature");
                sig
            }
            Signer::Ec(k) => k
                .sign(&rng, message)
                .expect("ECDSA signature")
                .as_ref()
                .to_vec(),
            Signer::Ed(k) => k.sign(message).as_ref().to_vec(),
        }
    }
}

/// The JWS name of an algorithm (`RS256`, `EdDSA`…).
pub fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Claims for a test token, built fluently and usable wherever a `serde_json::Value` is.
#[derive(Debug, Clone)]
pub struct Claims(Map<String, Value>);

/// Claims with `sub`, `scope`, `iat` = now, `exp` = now + `lifetime`, and a random `jti`.
pub fn claims(sub: &str, scope: &str, lifetime: Duration) -> Claims {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut jti = [0u8; 12];
    aws_lc_rs::rand::fill(&mut jti).expect("random jti");
    let mut map = Map::new();
    map.insert("sub".into(), json!(sub));
    if !scope.is_empty() {
        map.insert("scope".into(), json!(scope));
    }
    map.insert("iat".into(), json!(now));
    map.insert("exp".into(), json!(now + lifetime.as_secs()));
    map.insert("jti".into(), json!(b64(jti)));
    Claims(map)
}

impl Claims {
    /// Sets any claim.
    #[must_use]
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.insert(name.into(), value.into());
        self
    }

    /// Removes a claim.
    #[must_use]
    pub fn remove(mut self, name: &str) -> Self {
        self.0.remove(name);
        self
    }

    /// Sets `iss`.
    #[must_use]
    pub fn iss(self, iss: &str) -> Self {
        self.set("iss", iss)
    }

    /// Sets `aud`.
    #[must_use]
    pub fn aud(self, aud: &str) -> Self {
        self.set("aud", aud)
    }

    /// Sets `client_id`.
    #[must_use]
    pub fn client_id(self, client_id: &str) -> Self {
        self.set("client_id", client_id)
    }
}

impl From<Claims> for Value {
    fn from(c: Claims) -> Self {
        Value::Object(c.0)
    }
}

impl From<&Claims> for Value {
    fn from(c: &Claims) -> Self {
        Value::Object(c.0.clone())
    }
}

/// A client's DPoP key (RFC 9449) for tests: generated at run time; signs proofs with
/// [`DpopKey::proof`]. Bind tokens to it with [`Claims::dpop_bound`].
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::testing::{DpopKey, TestIssuer, claims};
///
/// let key = DpopKey::ed25519();
/// let token = TestIssuer::es256().mint(claims("alice", "", Duration::from_secs(60)).dpop_bound(&key));
/// let proof = key.proof("POST", "https://api.example/orders").access_token(&token).sign();
/// assert_eq!(proof.split('.').count(), 3);
/// ```
#[derive(Debug)]
pub struct DpopKey {
    key: TestIssuer,
}

impl DpopKey {
    /// A new key for `alg` (an asymmetric algorithm: ES256, ES384, EdDSA, RS*/PS*).
    pub fn new(alg: Algorithm) -> Self {
        Self {
            key: TestIssuer::new(alg),
        }
    }

    /// An ES256 (P-256) key.
    pub fn es256() -> Self {
        Self::new(Algorithm::ES256)
    }

    /// An EdDSA (Ed25519) key.
    pub fn ed25519() -> Self {
        Self::new(Algorithm::EdDSA)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// The private key as PKCS#8 DER (ES256, ES384 and EdDSA keys), to hand a dev-mode
    /// client the key its tokens are bound to.
    pub fn to_pkcs8(&self) -> Option<Vec<u8>> {
        match &self.key.signer {
            Signer::Ec(k) => k.to_pkcs8v1().ok().map(|d| d.as_ref().to_vec()),
            Signer::Ed(k) => k.to_pkcs8().ok().map(|d| d.as_ref().to_vec()),
            _ => None,
        }
    }

    /// A key read from PKCS#8 DER: P-256 (ES256), P-384 (ES384) or Ed25519 (EdDSA).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, crate::ConfigError> {
        let (alg, signer) = if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
        {
            (Algorithm::ES256, Signer::Ec(k))
        } else if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der)
        {
            (Algorithm::ES384, Signer::Ec(k))
        } else if let Ok(k) = Ed25519KeyPair::from_pkcs8(der) {
            (Algorithm::EdDSA, Signer::Ed(k))
        } else {
            return Err(crate::ConfigError::new(
                "not a PKCS#8 P-256, P-384 or Ed25519 private key",
            ));
        };
        Ok(Self {
            key: TestIssuer {
                alg,
                kid: None,
                signer,
            },
        })
    }

    /// The public key as a JWK with only its key members (`kty`, `crv`, `x`, `y` / `n`, `e`).
    pub fn jwk(&self) -> Value {
        let mut jwk = self.key.jwk();
        if let Some(obj) = jwk.as_object_mut() {
            for member in ["use", "alg", "kid"] {
                obj.remove(member);
            }
        }
        jwk
    }

    /// The RFC 7638 thumbprint, the `cnf.jkt` of tokens bound to this key.
    pub fn thumbprint(&self) -> String {
        crate::dpop::jwk_thumbprint(&self.jwk()).expect("generated keys have a thumbprint")
    }

    /// A proof for `method` and `url` (the `htu`), with `iat` now and a random `jti`; add
    /// the access token's hash with [`DpopProof::access_token`].
    pub fn proof(&self, method: &str, url: &str) -> DpopProof<'_> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).expect("random jti");
        let mut header = Map::new();
        header.insert("typ".into(), json!("dpop+jwt"));
        header.insert("alg".into(), json!(alg_name(self.algorithm())));
        header.insert("jwk".into(), self.jwk());
        let mut claims = Map::new();
        claims.insert("jti".into(), json!(b64(jti)));
        claims.insert("htm".into(), json!(method));
        claims.insert("htu".into(), json!(url));
        claims.insert("iat".into(), json!(now));
        DpopProof {
            key: self,
            header,
            claims,
        }
    }
}

/// A DPoP proof being built by [`DpopKey::proof`]; every part can be changed, for tests of
/// hostile proofs. [`DpopProof::sign`] signs it with the key whatever the header says.
#[derive(Debug, Clone)]
pub struct DpopProof<'a> {
    key: &'a DpopKey,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl DpopProof<'_> {
    /// Sets `ath`, the base64url SHA-256 of `token`.
    #[must_use]
    pub fn access_token(self, token: &str) -> Self {
        let ath = crate::dpop::sha256_b64(token.as_bytes());
        self.claim("ath", ath)
    }

    /// Sets the server nonce.
    #[must_use]
    pub fn nonce(self, nonce: &str) -> Self {
        self.claim("nonce", nonce)
    }

    /// Sets `iat` (seconds since the epoch).
    #[must_use]
    pub fn iat(self, iat: u64) -> Self {
        self.claim("iat", iat)
    }

    /// Sets `jti`.
    #[must_use]
    pub fn jti(self, jti: &str) -> Self {
        self.claim("jti", jti)
    }

    /// Sets any claim.
    #[must_use]
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Removes a claim.
    #[must_use]
    pub fn remove_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets any header member (`typ`, `alg`, `jwk`…).
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.into(), value.into());
        self
    }

    /// The signed compact JWS.
    pub fn sign(&self) -> String {
        self.key.key.mint_with_header(
            &Value::Object(self.header.clone()),
            &Value::Object(self.claims.clone()),
        )
    }
}

impl Claims {
    /// Binds the token to a DPoP key: `cnf.jkt` (RFC 9449 §6).
    #[must_use]
    pub fn dpop_bound(self, key: &DpopKey) -> Self {
        self.set("cnf", json!({"jkt": key.thumbprint()}))
    }

    /// Binds the token to a client certificate: `cnf.x5t#S256` of its DER (RFC 8705 §3.1).
    #[must_use]
    pub fn certificate_bound(self, der: &[u8]) -> Self {
        self.set("cnf", json!({"x5t#S256": crate::dpop::sha256_b64(der)}))
    }
}
