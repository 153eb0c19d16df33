//! Several authenticators behind one layer: JWTs to one, other tokens to the next.
//!
//! A token shaped like a JWT (three base64url parts, the first a JSON object: `eyJ…`) goes to
//! the JWT authenticator; any other token is tried against the fallbacks in order (e.g.
//! static API keys, then introspection), and the first that accepts it wins. When all refuse,
//! the last refusal is returned; a fallback that is *unavailable* (503) stops the chain, so a
//! dependency being down never turns into another authenticator's guess.
//!
//! ```
//! use tower_bearer::testing::{TestIssuer, claims};
//! use tower_bearer::validate::{Chain, Jwt, StaticTokens};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use tower_bearer::extract::{BearerToken, TokenSource};
//! use tower_bearer::validate::Authenticator;
//! let issuer = TestIssuer::es256();
//! let chain = Chain::new()
//!     .jwt(Jwt::builder().key(issuer.key()).audience("api").build().unwrap())
//!     .fallback(StaticTokens::builder()
//!         .token("svc-key-0123456789abcdefghij", serde_json::json!({"sub": "svc"}))
//!         .build()
//!         .unwrap());
//! let key = BearerToken::new("svc-key-0123456789abcdefghij", TokenSource::Authorization);
//! assert_eq!(chain.authenticate(&key).await.unwrap().subject(), Some("svc"));
//! let jwt = issuer.mint(claims("alice", "", std::time::Duration::from_secs(60)).aud("api"));
//! let jwt = BearerToken::new(jwt, TokenSource::Authorization);
//! assert_eq!(chain.authenticate(&jwt).await.unwrap().subject(), Some("alice"));
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use crate::extract::BearerToken;
use crate::reject::{AuthError, AuthErrorKind};
use crate::validate::{Authentication, Authenticator};

/// See the [module docs](self).
#[derive(Clone, Default)]
#[must_use]
pub struct Chain {
    jwt: Option<Arc<dyn Authenticator>>,
    fallbacks: Vec<Arc<dyn Authenticator>>,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("jwt", &self.jwt.is_some())
            .field("fallbacks", &self.fallbacks.len())
            .finish()
    }
}

/// Whether a token is shaped like a compact JWS whose header is a JSON object.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

impl Chain {
    /// An empty chain (refuses everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// The authenticator for JWT-shaped tokens.
    pub fn jwt(mut self, auth: impl Authenticator) -> Self {
        self.jwt = Some(super::shared(auth));
        self
    }

    /// An authenticator for other tokens, tried after those added before it.
    pub fn fallback(mut self, auth: impl Authenticator) -> Self {
        self.fallbacks.push(super::shared(auth));
        self
    }
}

impl Authenticator for Chain {
    fn authenticate_cached(&self, credential: &[u8]) -> Option<Authentication> {
        // Only the JWT authenticator caches, and only what `authenticate` would send it may
        // be answered from its cache (the cache is shared with every clone of that
        // authenticator, which may have verified tokens of other shapes). A hit compares the
        // whole token with a verified one, so it has exactly two dots: the prefix decides.
        if !credential.starts_with(b"eyJ") {
            return None;
        }
        self.jwt.as_ref()?.authenticate_cached(credential)
    }

    fn authenticate(&self, token: &BearerToken) -> Authentication {
        if let Some(jwt) = &self.jwt
            && looks_like_jwt(token.as_str())
        {
            return jwt.authenticate(token);
        }
        let mut last = AuthError::invalid_token("unsupported token");
        for (i, auth) in self.fallbacks.iter().enumerate() {
            match auth.authenticate(token).into_ready() {
                Ok(Ok(p)) => return Authentication::ready(Ok(p)),
                Ok(Err(e)) if e.kind() == AuthErrorKind::Unavailable => {
                    return Authentication::ready(Err(e));
                }
                Ok(Err(e)) => last = e,
                Err(pending) => {
                    // The rest of the chain runs after this one answers.
                    let rest: Vec<_> = self.fallbacks[i + 1..].to_vec();
                    let token = token.clone();
                    return Authentication::pending(async move {
                        let mut result = pending.await;
                        for auth in rest {
                            match result {
                                Ok(_) => break,
                                Err(ref e) if e.kind() == AuthErrorKind::Unavailable => break,
                                Err(_) => result = auth.authenticate(&token).await,
                            }
                        }
                        result
                    });
                }
            }
        }
        Authentication::ready(Err(last))
    }
}
