use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower_service::Service;

use super::ResponseFuture;
use super::layer::Shared;
use crate::audit;
use crate::body::AuthBody;
use crate::reject::{AuthError, AuthErrorKind, Renderer};

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
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let grpc = Renderer::is_grpc(&req);
        let token = match self.shared.extractor.extract(&req) {
            Ok(Some(token)) => token,
            Ok(None) => return self.reject(AuthErrorKind::MissingCredentials.into(), grpc, start),
            Err(e) => return self.reject(e, grpc, start),
        };
        match self.shared.authenticator.authenticate(&token).into_ready() {
            Ok(Ok(principal)) => {
                audit::allowed(&principal, start.elapsed());
                req.extensions_mut().insert(principal);
                req.extensions_mut().insert(self.shared.renderer.clone());
                // Drive the instance that `poll_ready` made ready; leave a fresh clone behind.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::calling(inner.call(req))
            }
            Ok(Err(e)) => self.reject(e, grpc, start),
            Err(pending) => {
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
        grpc: bool,
        start: Instant,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: tower_service::Service<Request<ReqBody>>,
    {
        audit::rejected(&err, start.elapsed());
        ResponseFuture::rejected(err, grpc, self.shared.clone())
    }
}
