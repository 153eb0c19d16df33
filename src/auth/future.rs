use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::layer::Shared;
use crate::audit;
use crate::body::AuthBody;
use crate::reject::AuthError;
use crate::validate::Authentication;

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
            fut: Authentication,
            inner: Option<S>,
            req: Option<Request<ReqBody>>,
            shared: Arc<Shared>,
            start: Instant,
        },
        Calling {
            #[pin]
            fut: S::Future,
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
    pub(crate) fn calling(fut: S::Future) -> Self {
        Self {
            state: State::Calling { fut },
        }
    }

    pub(crate) fn authenticating(
        fut: Authentication,
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
                    let result = ready!(Pin::new(fut).poll(cx));
                    let (Some(mut inner), Some(mut req)) = (inner.take(), req.take()) else {
                        unreachable!("ResponseFuture polled after completion");
                    };
                    match result {
                        Ok(principal) => {
                            audit::allowed(&principal, start.elapsed());
                            req.extensions_mut().insert(principal);
                            req.extensions_mut().insert(shared.renderer.clone());
                            let fut = inner.call(req);
                            this.state.set(State::Calling { fut });
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
                StateProj::Calling { fut } => {
                    let res = ready!(fut.poll(cx))?;
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
