use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::ResponseFuture;
use super::future::Pending;
use super::layer::{Admission, Shared};
use crate::audit;
use crate::audit::Started;
use crate::body::FromRejection;
use crate::extract::AuthScheme;
use crate::reject::{AuthError, AuthErrorKind, Renderer};
use crate::sender::SenderConstraints;

/// The bearer-authentication service; see the [module docs](crate::auth).
#[derive(Clone)]
pub struct BearerAuth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for BearerAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> BearerAuth<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BearerAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: FromRejection,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let start = Started::now();
        if let Some(policy) = &self.shared.transport
            && let Err(e) = policy.check(&req)
        {
            return self.reject(e, &req, start);
        }
        let dpop = self
            .shared
            .sender
            .as_ref()
            .is_some_and(SenderConstraints::accepts_dpop);
        let extractor = &self.shared.extractor;
        let found = match extractor.locate(&req, dpop) {
            Ok(Some(found)) => found,
            Ok(None) => return self.reject(AuthErrorKind::MissingCredentials.into(), &req, start),
            Err(e) => return self.reject(e, &req, start),
        };
        let source = found.source();
        // A token seen before: its verification comes from the authenticator's cache, before
        // any scan or copy of the credential. With sender constraints every request carries
        // its own proof, so it takes the full path.
        let cached = if self.shared.sender.is_none()
            && found.scheme() == AuthScheme::Bearer
            && extractor.admits_len(found.raw())
        {
            self.shared.authenticator.authenticate_cached(found.raw())
        } else {
            None
        };
        let verification = match cached {
            Some(authentication) => Pending::Plain(authentication),
            None => {
                let token = match extractor.check(found) {
                    Ok(token) => token,
                    Err(e) => return self.reject(e, &req, start),
                };
                // Sender constraints: the DPoP proof is checked before the token is verified,
                // the binding (`cnf`), policy and replay check after.
                match &self.shared.sender {
                    None => Pending::Plain(self.shared.authenticator.authenticate(&token)),
                    Some(sender) => match sender.precheck(&req, &token) {
                        Ok(pre) => Pending::Constrained(
                            sender.verify(pre, self.shared.authenticator.authenticate(&token)),
                        ),
                        Err(e) => return self.reject(e, &req, start),
                    },
                }
            }
        };
        crate::network::protect_credentials(
            &mut req,
            &self.shared.extractor,
            self.shared.strip_credentials,
            source,
        );
        match verification.into_ready() {
            Ok(Ok(verified)) => {
                audit::allowed(&verified.principal, start);
                // Decided here: the instance `poll_ready` made ready is called here too (and
                // cloned only if the rate limit must wait for its store).
                match self.shared.admit(&verified.principal, start) {
                    Admission::Pass(fields) => {
                        ResponseFuture::pass(fields, verified, &mut self.inner, req, &self.shared)
                    }
                    admission => ResponseFuture::after(
                        admission,
                        verified,
                        &mut self.inner,
                        req,
                        &self.shared,
                        start,
                    ),
                }
            }
            Ok(Err(e)) => self.reject(e, &req, start),
            Err(pending) => {
                // The future drives the instance that `poll_ready` made ready; a fresh clone
                // is left behind.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::authenticating(pending, inner, req, self.shared.clone(), start)
            }
        }
    }
}

impl<S> BearerAuth<S> {
    fn reject<ReqBody>(
        &self,
        err: AuthError,
        req: &Request<ReqBody>,
        start: Started,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: tower_service::Service<Request<ReqBody>>,
    {
        audit::rejected(&err, start);
        // How to answer (HTTP or gRPC) is only looked up for a refusal.
        ResponseFuture::rejected(err, Renderer::is_grpc(req), self.shared.clone())
    }
}
