//! Authenticators: what turns a [`BearerToken`] into a [`Principal`].
//!
//! [`Authenticator`] is object-safe and may answer synchronously (JWTs with local keys: no
//! allocation, no boxing) or asynchronously (introspection, remote keys). Any
//! `Fn(&BearerToken) -> impl Future<Output = Result<Principal, AuthError>>` closure is an
//! authenticator too.
//!
//! ```
//! use tower_bearer::extract::{BearerToken, TokenSource};
//! use tower_bearer::principal::{Principal, TokenFingerprint};
//! use tower_bearer::reject::AuthError;
//! use tower_bearer::validate::Authenticator;
//!
//! let api_keys = |token: &BearerToken| {
//!     let ok = token.as_str() == "let-me-in";
//!     let fingerprint = TokenFingerprint::of_bytes(token.as_str().as_bytes());
//!     async move {
//!         if !ok {
//!             return Err(AuthError::invalid_token("unknown key"));
//!         }
//!         let claims = serde_json::json!({"sub": "robot"});
//!         Principal::from_claims(claims.as_object().unwrap().clone(), fingerprint)
//!     }
//! };
//! let token = BearerToken::new("let-me-in", TokenSource::Authorization);
//! let principal = futures_executor::block_on(api_keys.authenticate(&token)).unwrap();
//! assert_eq!(principal.subject(), Some("robot"));
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::extract::BearerToken;
use crate::principal::Principal;
use crate::reject::AuthError;

pub mod chain;
pub mod jwt;
pub mod multi;
pub mod static_tokens;

pub use chain::Chain;
pub use jwt::{Jwt, JwtBuilder};
pub use multi::{MultiIssuer, MultiIssuerBuilder};
pub use static_tokens::{StaticTokens, StaticTokensBuilder};

crate::maybe_ready::maybe_ready_type! {
    /// The outcome of [`Authenticator::authenticate`]: ready now, or a future.
    #[must_use = "an Authentication does nothing unless polled"]
    pub struct Authentication(Result<Principal, AuthError>), "outcome";
}

/// Verifies a bearer token and says who it belongs to.
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies `token`. A refusal is an [`AuthError`] (never a panic); dependencies that are
    /// down are [`AuthErrorKind::Unavailable`](crate::reject::AuthErrorKind::Unavailable).
    fn authenticate(&self, token: &BearerToken) -> Authentication;

    /// Answers from a cache of tokens this authenticator verified before, given the
    /// credential exactly as it arrived (within the extractor's size cap, but not yet checked
    /// against the `b64token` charset nor copied); `None` sends the token through
    /// [`authenticate`](Self::authenticate) as usual. The bearer layer asks this first for
    /// `Bearer` credentials when it has no sender constraints (a DPoP or certificate-bound
    /// request takes the full path), so a reused token costs a lookup, not a scan and a copy.
    ///
    /// Answer only for a credential that is byte for byte a token
    /// [`authenticate`](Self::authenticate) accepted before: it must pass the `b64token`
    /// check (RFC 6750 §2.1) the extractor would have made, and every check that can change
    /// since (expiry, revocation, idle limits) must run as in
    /// [`authenticate`](Self::authenticate). The default answers nothing.
    fn authenticate_cached(&self, credential: &[u8]) -> Option<Authentication> {
        let _ = credential;
        None
    }
}

impl<F, Fut> Authenticator for F
where
    F: Fn(&BearerToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, AuthError>> + Send + 'static,
{
    fn authenticate(&self, token: &BearerToken) -> Authentication {
        Authentication::pending(self(token))
    }
}

/// An authenticator from a synchronous function: answers without boxing a future.
///
/// ```
/// use tower_bearer::extract::{BearerToken, TokenSource};
/// use tower_bearer::reject::AuthError;
/// use tower_bearer::validate::{Authenticator, from_fn};
///
/// let deny_all = from_fn(|_token: &BearerToken| Err(AuthError::invalid_token("closed")));
/// let token = BearerToken::new("t", TokenSource::Authorization);
/// assert!(deny_all.authenticate(&token).into_ready().unwrap().is_err());
/// ```
pub fn from_fn<F>(f: F) -> FromFn<F>
where
    F: Fn(&BearerToken) -> Result<Principal, AuthError> + Send + Sync + 'static,
{
    FromFn(f)
}

/// See [`from_fn`].
#[derive(Clone, Copy)]
pub struct FromFn<F>(F);

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

impl<F> Authenticator for FromFn<F>
where
    F: Fn(&BearerToken) -> Result<Principal, AuthError> + Send + Sync + 'static,
{
    fn authenticate(&self, token: &BearerToken) -> Authentication {
        Authentication::ready((self.0)(token))
    }
}

impl<A: Authenticator + ?Sized> Authenticator for Arc<A> {
    fn authenticate(&self, token: &BearerToken) -> Authentication {
        (**self).authenticate(token)
    }

    fn authenticate_cached(&self, credential: &[u8]) -> Option<Authentication> {
        (**self).authenticate_cached(credential)
    }
}

/// `auth` shared behind a pointer, for the layers and authenticators that hold one: an
/// `Arc<dyn Authenticator>` given as it is (wrapping it again would put one more indirect
/// call, through the forwarding impl above, in front of every request).
pub(crate) fn shared(auth: impl Authenticator) -> Arc<dyn Authenticator> {
    match (&auth as &dyn std::any::Any).downcast_ref::<Arc<dyn Authenticator>>() {
        Some(arc) => arc.clone(),
        None => Arc::new(auth),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::AuthErrorKind;

    fn refuse(_: &BearerToken) -> Result<Principal, AuthError> {
        Err(AuthError::new(AuthErrorKind::InvalidToken))
    }

    #[test]
    fn a_shared_authenticator_is_not_wrapped_again() {
        let arc: Arc<dyn Authenticator> = Arc::new(from_fn(refuse));
        assert!(Arc::ptr_eq(&shared(arc.clone()), &arc));
        // Anything else is put behind a pointer of its own, an `Arc` of a concrete type too.
        let concrete = Arc::new(from_fn(refuse));
        let wrapped = shared(concrete.clone());
        assert_eq!(
            Arc::strong_count(&concrete),
            2,
            "held once, by the new pointer"
        );
        drop(wrapped);
        assert_eq!(Arc::strong_count(&concrete), 1);
    }
}
