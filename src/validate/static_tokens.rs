//! Static API keys for service-to-service calls.
//!
//! [`StaticTokens`] maps keys to principals. It never keeps a key: each is stored as its
//! SHA-256 digest, and a presented token's digest is compared with every stored one in
//! constant time (no early exit), so neither the keys nor which one matched leak through
//! timing. Load them in code, or from a JSON file of digests:
//!
//! ```json
//! [{"sha256": "<64 hex digits>", "sub": "billing-service", "scope": "items:read"}]
//! ```
//!
//! Every member besides `sha256` becomes a claim of the principal.
//!
//! ```
//! use tower_bearer::validate::StaticTokens;
//!
//! let keys = StaticTokens::builder()
//!     .token("s3cr3t-key-for-billing-0123456789", serde_json::json!({"sub": "billing", "scope": "items:read"}))
//!     .build()
//!     .unwrap();
//! let p = keys.verify("s3cr3t-key-for-billing-0123456789").unwrap();
//! assert_eq!(p.subject(), Some("billing"));
//! assert!(keys.verify("s3cr3t-key-for-billing-0123456780").is_err());
//! assert!(!format!("{keys:?}").contains("s3cr3t"));
//! ```

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::error::ConfigError;
use crate::extract::BearerToken;
use crate::principal::{Principal, TokenFingerprint};
use crate::reject::AuthError;
use crate::validate::{Authentication, Authenticator};

/// The shortest key accepted by [`StaticTokensBuilder::token`] (128 bits of base64-ish text
/// at the very least).
pub const MIN_STATIC_TOKEN_LEN: usize = 24;

struct Entry {
    digest: [u8; 32],
    principal: Principal,
}

/// Static API keys; see the [module docs](self).
#[derive(Clone)]
pub struct StaticTokens {
    entries: Arc<[Entry]>,
}

impl fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokens")
            .field("keys", &self.entries.len())
            .finish()
    }
}

/// Builds [`StaticTokens`].
#[derive(Default)]
#[must_use]
pub struct StaticTokensBuilder {
    entries: Vec<([u8; 32], Map<String, Value>)>,
    errors: Vec<ConfigError>,
}

impl fmt::Debug for StaticTokensBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokensBuilder")
            .field("keys", &self.entries.len())
            .finish()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl StaticTokensBuilder {
    /// Adds a key (hashed at once) and the claims of its principal (`sub`, `scope`, …).
    pub fn token(mut self, key: &str, claims: Value) -> Self {
        if key.len() < MIN_STATIC_TOKEN_LEN {
            self.errors.push(ConfigError::new(format!(
                "static keys need at least {MIN_STATIC_TOKEN_LEN} characters"
            )));
            return self;
        }
        self.add(sha256(key.as_bytes()), claims)
    }

    /// Adds a key by its SHA-256 digest (64 hex digits).
    pub fn token_digest(self, sha256_hex: &str, claims: Value) -> Self {
        match parse_hex(sha256_hex) {
            Some(d) => self.add(d, claims),
            None => {
                let mut this = self;
                this.errors.push(ConfigError::new(
                    "a static key digest must be 64 hex digits",
                ));
                this
            }
        }
    }

    fn add(mut self, digest: [u8; 32], claims: Value) -> Self {
        match claims {
            Value::Object(map) => self.entries.push((digest, map)),
            _ => self
                .errors
                .push(ConfigError::new("static key claims must be a JSON object")),
        }
        self
    }

    /// Adds the entries of a JSON array of `{"sha256": "...", ...claims}` objects.
    pub fn from_json(mut self, json: &str) -> Self {
        let parsed: Result<Vec<Map<String, Value>>, _> = serde_json::from_str(json);
        match parsed {
            Ok(items) => {
                for mut item in items {
                    match item.remove("sha256") {
                        Some(Value::String(hex)) => {
                            self = self.token_digest(&hex, Value::Object(item))
                        }
                        _ => self
                            .errors
                            .push(ConfigError::new("each static key needs a `sha256` string")),
                    }
                }
            }
            Err(e) => self
                .errors
                .push(ConfigError::new(format!("invalid static key file: {e}"))),
        }
        self
    }

    /// Checks the entries (valid claims, no duplicate key) and builds.
    pub fn build(self) -> Result<StaticTokens, ConfigError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        let mut entries = Vec::with_capacity(self.entries.len());
        for (digest, claims) in self.entries {
            if entries.iter().any(|e: &Entry| e.digest == digest) {
                return Err(ConfigError::new("the same static key is configured twice"));
            }
            let principal = Principal::from_claims(claims, TokenFingerprint::of_bytes(&digest))
                .map_err(|e| ConfigError::new(format!("invalid static key claims: {e}")))?;
            entries.push(Entry { digest, principal });
        }
        Ok(StaticTokens {
            entries: entries.into(),
        })
    }
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

impl StaticTokens {
    /// Starts a builder.
    pub fn builder() -> StaticTokensBuilder {
        StaticTokensBuilder::default()
    }

    /// The SHA-256 digest of a key, in hex: what a key file stores.
    pub fn digest_hex(key: &str) -> String {
        sha256(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The principal of `token`, comparing its digest with every stored digest in constant
    /// time.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let digest = sha256(token.as_bytes());
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, e) in self.entries.iter().enumerate() {
            let eq = e.digest.ct_eq(&digest);
            index = u32::conditional_select(&index, &(i as u32), eq);
            found |= eq;
        }
        if bool::from(found) {
            Ok(self.entries[index as usize].principal.clone())
        } else {
            Err(AuthError::invalid_token("unknown api key"))
        }
    }
}

impl Authenticator for StaticTokens {
    fn authenticate(&self, token: &BearerToken) -> Authentication {
        Authentication::ready(self.verify(token.as_str()))
    }
}
