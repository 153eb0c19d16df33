use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use quanta::Instant; // TSC-based: a few ns per read; `std`'s costs tens on VMs.
use tower_service::Service;

use super::layer::Shared;
use crate::audit;
use crate::body::AuthBody;
use crate::reject::AuthError;
use crate::sender::{Verification, Verified};
use crate::validate::Authentication;

/// Authentication under way: the authenticator alone, or with sender constraints.
pub(crate) enum Pending {
    Plain(Authentication),
    Constrained(Verification),
}

impl Pending {
    /// The outcome if already known, else `Err(self)`.
    pub(crate) fn into_ready(self) -> Result<Result<Verified, AuthError>, Self> {
        match self {
            Pending::Plain(a) => a
                .into_ready()
                .map(|r| r.and_then(Verified::plain))
                .map_err(Pending::Plain),
            Pending::Constrained(v) => v.into_ready().map_err(Pending::Constrained),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Verified, AuthError>> {
        match self {
            Pending::Plain(a) => Pin::new(a).poll(cx).map(|r| r.and_then(Verified::plain)),
            Pending::Constrained(v) => Pin::new(v).poll(cx),
        }
    }
}

pin_project! {
    /// Response future of [`BearerAuth`](super::BearerAuth).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Authenticating {
            fut: Pending,
            inner: Option<S>,
            req: Option<Request<ReqBody>>,
            shared: Arc<Shared>,
            start: Instant,
        },
        Calling {
            #[pin]
            fut: S::Future,
            nonce: Option<HeaderValue>,
        },
        Rejected {
            error: Option<AuthError>,
            grpc: bool,
            shared: Arc<Shared>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn calling(fut: S::Future, nonce: Option<HeaderValue>) -> Self {
        Self {
            state: State::Calling { fut, nonce },
        }
    }

    pub(crate) fn authenticating(
        fut: Pending,
        inner: S,
        req: Request<ReqBody>,
        shared: Arc<Shared>,
        start: Instant,
    ) -> Self {
        Self {
            state: State::Authenticating {
                fut,
                inner: Some(inner),
                req: Some(req),
                shared,
                start,
            },
        }
    }

    pub(crate) fn rejected(error: AuthError, grpc: bool, shared: Arc<Shared>) -> Self {
        Self {
            state: State::Rejected {
                error: Some(error),
                grpc,
                shared,
            },
        }
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Authenticating { .. } => "Authenticating",
            State::Calling { .. } => "Calling",
            State::Rejected { .. } => "Rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<AuthBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Authenticating {
                    fut,
                    inner,
                    req,
                    shared,
                    start,
                } => {
                    let result = ready!(fut.poll(cx));
                    let (Some(mut inner), Some(mut req)) = (inner.take(), req.take()) else {
                        unreachable!("ResponseFuture polled after completion");
                    };
                    match result {
                        Ok(verified) => {
                            audit::allowed(&verified.principal, start.elapsed());
                            let nonce = verified.apply(&mut req);
                            shared.renderer.install(&mut req);
                            let fut = inner.call(req);
                            this.state.set(State::Calling { fut, nonce });
                        }
                        Err(error) => {
                            audit::rejected(&error, start.elapsed());
                            let grpc = crate::reject::Renderer::is_grpc(&req);
                            let shared = shared.clone();
                            this.state.set(State::Rejected {
                                error: Some(error),
                                grpc,
                                shared,
                            });
                        }
                    }
                }
                StateProj::Calling { fut, nonce } => {
                    let mut res = ready!(fut.poll(cx))?;
                    if let Some(nonce) = nonce.take() {
                        res.headers_mut().insert(crate::reject::DPOP_NONCE, nonce);
                    }
                    return Poll::Ready(Ok(res.map(AuthBody::new)));
                }
                StateProj::Rejected {
                    error,
                    grpc,
                    shared,
                } => {
                    let error = error
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let res = if *grpc {
                        shared.renderer.render_grpc(error)
                    } else {
                        shared.renderer.render_http(error)
                    };
                    return Poll::Ready(Ok(res));
                }
            }
        }
    }
}
