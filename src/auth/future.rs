use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::layer::{Admission, Shared};
use crate::audit;
use crate::audit::Started;
use crate::body::FromRejection;
use crate::maybe_ready::poll_waiting;
use crate::rate_limit::{Check, Fields, Quota};
use crate::reject::{AuthError, Renderer};
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
        // Verification waits (a key fetch, introspection, an asynchronous revocation store
        // or authenticator). Boxed, like `Limiting`: it holds a request and an inner service,
        // and must not make every request's future bigger than the inner future. Where every
        // request waits, the box is one allocation beside the wait itself.
        Authenticating {
            waiting: Option<Box<Authenticating<S, ReqBody>>>,
        },
        // The layer's own rate limit waits for its store (Redis, or any store that answers
        // later). Boxed for the same reason.
        Limiting {
            waiting: Option<Box<Limiting<S, ReqBody>>>,
        },
        Calling {
            #[pin]
            fut: S::Future,
            // Boxed: only DPoP with server nonces has one, and every request moves this state.
            nonce: Option<Box<HeaderValue>>,
            fields: Option<Fields>,
            // The layer's renderer when it is not the default, for refusals from inside
            // rendered in the default one (`Renderer::rerender`).
            renderer: Option<Renderer>,
        },
        Rejected {
            error: Option<AuthError>,
            grpc: bool,
            shared: Arc<Shared>,
            fields: Option<Fields>,
            renderer: Option<Renderer>,
        },
    }
}

/// The inner service a verified request goes to: the service's own instance, which
/// `poll_ready` made ready (`&mut S`: the request was decided in `call`, so it is called there
/// and nothing is cloned), or the instance the future took when the request had to wait for
/// its verification ([`Owned`]).
pub(crate) trait Inner<S> {
    /// Calls it.
    fn call<R>(self, req: R) -> S::Future
    where
        S: Service<R>;

    /// An instance the future can keep.
    fn into_owned(self) -> S;
}

/// An instance of the inner service owned by the response future.
pub(crate) struct Owned<S>(pub(crate) S);

impl<S: Clone> Inner<S> for &mut S {
    #[inline]
    fn call<R>(self, req: R) -> S::Future
    where
        S: Service<R>,
    {
        Service::call(self, req)
    }

    /// The ready instance, with a fresh clone left behind (tower's "clone, then
    /// `mem::replace`").
    fn into_owned(self) -> S {
        let clone = self.clone();
        std::mem::replace(self, clone)
    }
}

impl<S> Inner<S> for Owned<S> {
    #[inline]
    fn call<R>(mut self, req: R) -> S::Future
    where
        S: Service<R>,
    {
        self.0.call(req)
    }

    fn into_owned(self) -> S {
        self.0
    }
}

/// What the `Authenticating` state holds while verification completes.
struct Authenticating<S, ReqBody> {
    fut: Pending,
    inner: S,
    req: Request<ReqBody>,
    shared: Arc<Shared>,
    start: Started,
}

/// What the `Limiting` state holds while the store answers.
struct Limiting<S, ReqBody> {
    fut: Check,
    quota: Quota,
    verified: Verified,
    inner: S,
    req: Request<ReqBody>,
    shared: Arc<Shared>,
    start: Started,
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn authenticating(
        fut: Pending,
        inner: S,
        req: Request<ReqBody>,
        shared: Arc<Shared>,
        start: Started,
    ) -> Self {
        Self {
            state: State::Authenticating {
                waiting: Some(Box::new(Authenticating {
                    fut,
                    inner,
                    req,
                    shared,
                    start,
                })),
            },
        }
    }

    pub(crate) fn rejected(error: AuthError, grpc: bool, shared: Arc<Shared>) -> Self {
        Self::refused(error, grpc, shared, None, None)
    }

    fn refused(
        error: AuthError,
        grpc: bool,
        shared: Arc<Shared>,
        fields: Option<Fields>,
        renderer: Option<Renderer>,
    ) -> Self {
        Self {
            state: State::Rejected {
                error: Some(error),
                grpc,
                shared,
                fields,
                renderer,
            },
        }
    }

    /// A verified caller: the layer's own checks (scope policy, rate limit), then the inner
    /// service.
    #[inline(always)]
    pub(crate) fn admitted(
        verified: Verified,
        inner: impl Inner<S>,
        req: Request<ReqBody>,
        shared: &Arc<Shared>,
        start: Started,
    ) -> Self {
        let admission = shared.admit(&verified.principal, start);
        Self::after(admission, verified, inner, req, shared, start)
    }

    /// An admitted request, on its way to the inner service.
    #[inline(always)]
    pub(crate) fn pass(
        fields: Option<Fields>,
        verified: Verified,
        inner: impl Inner<S>,
        mut req: Request<ReqBody>,
        shared: &Shared,
    ) -> Self {
        // The renderer for the guards inside (an outer layer's is taken out), then the caller.
        shared.renderer.install(&mut req);
        let nonce = verified.apply(&mut req).map(Box::new);
        // No allocation: a custom renderer's realm is interned.
        let renderer = (!shared.renderer.is_default()).then(|| shared.renderer.clone());
        Self {
            state: State::Calling {
                fut: inner.call(req),
                nonce,
                fields,
                renderer,
            },
        }
    }

    #[inline(always)]
    pub(crate) fn after(
        admission: Admission,
        verified: Verified,
        inner: impl Inner<S>,
        req: Request<ReqBody>,
        shared: &Arc<Shared>,
        start: Started,
    ) -> Self {
        match admission {
            Admission::Pass(fields) => Self::pass(fields, verified, inner, req, shared),
            Admission::Refuse(error, fields, renderer) => {
                let grpc = Renderer::is_grpc(&req);
                Self::refused(error, grpc, shared.clone(), fields, renderer)
            }
            Admission::Pending(fut, quota) => Self {
                state: State::Limiting {
                    waiting: Some(Box::new(Limiting {
                        fut,
                        quota,
                        verified,
                        inner: inner.into_owned(),
                        req,
                        shared: shared.clone(),
                        start,
                    })),
                },
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
            State::Limiting { .. } => "Limiting",
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
    ResBody: FromRejection,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Most requests are in this state from the start: answered without leaving it.
        if matches!(self.state, State::Calling { .. }) {
            return self.poll_calling(cx);
        }
        self.poll_other(cx)
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: FromRejection,
{
    /// The inner service's response, with this layer's fields. The response is completed
    /// where the inner future wrote it (no copies on its way out).
    #[inline(always)]
    fn poll_calling(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<ResBody>, S::Error>> {
        let StateProj::Calling {
            fut,
            nonce,
            fields,
            renderer,
        } = self.project().state.project()
        else {
            unreachable!("only called in the Calling state");
        };
        let mut out = fut.poll(cx);
        if let Poll::Ready(Ok(res)) = &mut out {
            // A refusal from inside, rendered in the default renderer: claimed, and
            // rendered again in this layer's.
            Renderer::rerender(renderer.as_ref(), res);
            if let Some(nonce) = nonce.take() {
                res.headers_mut().insert(crate::reject::DPOP_NONCE, *nonce);
            }
            if let Some(fields) = fields.take() {
                fields.apply(res);
            }
        }
        out
    }

    #[inline(never)]
    fn poll_other(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<ResBody>, S::Error>> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Authenticating { waiting } => {
                    let (w, result) = ready!(poll_waiting(waiting, |w| w.fut.poll(cx)));
                    let Authenticating {
                        inner,
                        req,
                        shared,
                        start,
                        ..
                    } = w;
                    let next = match result {
                        Ok(verified) => {
                            audit::allowed(&verified.principal, start);
                            Self::admitted(verified, Owned(inner), req, &shared, start)
                        }
                        Err(error) => {
                            audit::rejected(&error, start);
                            let grpc = Renderer::is_grpc(&req);
                            Self::rejected(error, grpc, shared)
                        }
                    };
                    let ResponseFuture { state } = next;
                    this.state.set(state);
                }
                StateProj::Limiting { waiting } => {
                    let (w, result) =
                        ready!(poll_waiting(waiting, |w| Pin::new(&mut w.fut).poll(cx)));
                    let Limiting {
                        quota,
                        verified,
                        inner,
                        req,
                        shared,
                        start,
                        ..
                    } = w;
                    let Some(limit) = &shared.limit else {
                        unreachable!("only a layer with a rate limit waits for one");
                    };
                    let outcome = limit.finish(&verified.principal, &quota, result);
                    let admission = shared.limited(&verified.principal, outcome, start);
                    let ResponseFuture { state } =
                        Self::after(admission, verified, Owned(inner), req, &shared, start);
                    this.state.set(state);
                }
                StateProj::Calling { .. } => return self.poll_calling(cx),
                StateProj::Rejected {
                    error,
                    grpc,
                    shared,
                    fields,
                    renderer,
                } => {
                    let error = error
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let renderer = renderer.as_ref().unwrap_or(&shared.renderer);
                    let mut res = if *grpc {
                        renderer.render_grpc(error)
                    } else {
                        renderer.render_http(error)
                    };
                    if let Some(fields) = fields.take() {
                        fields.apply(&mut res);
                    }
                    return Poll::Ready(Ok(res));
                }
            }
        }
    }
}
