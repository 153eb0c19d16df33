//! Several issuers behind one layer, each with its own keys.
//!
//! [`MultiIssuer`] reads the token's `iss` *before* verification only to pick the
//! authenticator of that issuer; that authenticator then verifies the token and requires the
//! same `iss` (every entry must pin its issuer), so the unverified claim never decides
//! anything on its own. Tokens from an issuer not in the table are refused with
//! `invalid_token` ("invalid issuer").
//!
//! ```
//! use tower_bearer::testing::{TestIssuer, claims};
//! use tower_bearer::validate::{Jwt, MultiIssuer};
//!
//! let a = TestIssuer::es256().with_kid("a");
//! let b = TestIssuer::ed25519().with_kid("b");
//! let jwt = |iss: &str, key: &TestIssuer| {
//!     Jwt::builder().key(key.key()).issuer(iss).audience("api").build().unwrap()
//! };
//! let multi = MultiIssuer::builder()
//!     .issuer("https://a.example", jwt("https://a.example", &a))
//!     .issuer("https://b.example", jwt("https://b.example", &b))
//!     .build()
//!     .unwrap();
//! let c = claims("alice", "", std::time::Duration::from_secs(60)).aud("api");
//! assert!(multi.verify(&b.mint(c.clone().iss("https://b.example"))).is_ok());
//! // Claiming issuer A with B's key fails A's verification.
//! assert!(multi.verify(&b.mint(c.iss("https://a.example"))).is_err());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::error::ConfigError;
use crate::extract::BearerToken;
use crate::principal::Principal;
use crate::reject::{AuthError, AuthErrorKind};
use crate::validate::{Authentication, Authenticator, Jwt};

/// Picks the authenticator for a token by its issuer. See the [module docs](self).
#[derive(Clone)]
pub struct MultiIssuer {
    by_issuer: Arc<HashMap<String, Jwt>>,
}

impl fmt::Debug for MultiIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.by_issuer.iter()).finish()
    }
}

/// Builds a [`MultiIssuer`].
#[derive(Debug, Default)]
#[must_use]
pub struct MultiIssuerBuilder {
    entries: Vec<(String, Jwt)>,
}

impl MultiIssuerBuilder {
    /// Adds an issuer and the authenticator for its tokens, which must require that `iss`.
    pub fn issuer(mut self, iss: impl Into<String>, jwt: Jwt) -> Self {
        self.entries.push((iss.into(), jwt));
        self
    }

    /// Checks that every authenticator pins its issuer and that no issuer repeats.
    pub fn build(self) -> Result<MultiIssuer, ConfigError> {
        if self.entries.is_empty() {
            return Err(ConfigError::new("a MultiIssuer needs at least one issuer"));
        }
        let mut by_issuer = HashMap::new();
        for (iss, jwt) in self.entries {
            if jwt.issuers() != [iss.as_str()] {
                return Err(ConfigError::new(format!(
                    "the authenticator for {iss:?} must require exactly that issuer"
                )));
            }
            if by_issuer.insert(iss.clone(), jwt).is_some() {
                return Err(ConfigError::new(format!("issuer {iss:?} configured twice")));
            }
        }
        Ok(MultiIssuer {
            by_issuer: Arc::new(by_issuer),
        })
    }
}

impl MultiIssuer {
    /// Starts a builder.
    pub fn builder() -> MultiIssuerBuilder {
        MultiIssuerBuilder::default()
    }

    /// The authenticator for the token's (unverified) issuer.
    fn pick(&self, token: &str) -> Result<&Jwt, AuthError> {
        let malformed = || AuthError::new(AuthErrorKind::MalformedToken);
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
        #[derive(serde::Deserialize)]
        struct Peek {
            iss: Option<Value>,
        }
        // A derived struct refuses a repeated `iss` member.
        let peek: Peek = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
        match peek.iss {
            None => {
                Err(AuthError::new(AuthErrorKind::MissingClaim)
                    .with_description("missing iss claim"))
            }
            Some(Value::String(iss)) => self
                .by_issuer
                .get(&iss)
                .ok_or_else(|| AuthError::new(AuthErrorKind::InvalidIssuer)),
            Some(_) => Err(AuthError::new(AuthErrorKind::InvalidClaimType)
                .with_description("invalid iss claim")),
        }
    }

    /// Verifies with the keys at hand (no fetch); see [`Jwt::verify`].
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.pick(token)?.verify(token)
    }
}

/// Up to this many issuers, a reused token is looked up in each one's token cache before its
/// payload is read; with more, a token seen for the first time would pay too many lookups.
const MAX_CACHE_PROBES: usize = 4;

impl Authenticator for MultiIssuer {
    /// A token in one issuer's cache was verified by that issuer's authenticator, which
    /// requires that `iss`: it is the one `authenticate` would pick, so its answer is the same.
    fn authenticate_cached(&self, credential: &[u8]) -> Option<Authentication> {
        if self.by_issuer.len() > MAX_CACHE_PROBES {
            return None;
        }
        self.by_issuer
            .values()
            .find_map(|jwt| jwt.authenticate_cached(credential))
    }

    fn authenticate(&self, token: &BearerToken) -> Authentication {
        match self.pick(token.as_str()) {
            Ok(jwt) => jwt.authenticate(token),
            Err(e) => Authentication::ready(Err(e)),
        }
    }
}
