//! The response future shared by the guard layers that run behind the bearer layer
//! ([`ScopeGuard`](crate::scope::ScopeGuard), [`SenderGuard`](crate::sender::SenderGuard),
//! [`IpAllowlist`](crate::network::IpAllowlist)): the inner service's response, or a rejection
//! rendered when the guard decided in `call`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;

use crate::body::FromRejection;
use crate::reject::{AuthError, Renderer};

pin_project! {
    /// Response future of the guard layers: the inner service's response, or the guard's
    /// rejection.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Calling { #[pin] fut: F },
        Rejected { response: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    /// The inner service was called.
    #[inline]
    pub(crate) fn calling(fut: F) -> Self {
        Self {
            state: State::Calling { fut },
        }
    }

    /// The guard refused `req`: the rejection in the guard's own renderer, else the bearer
    /// layer's (see [`Renderer::render_inside`]).
    pub(crate) fn rejected<ReqBody>(
        configured: Option<&Renderer>,
        req: &Request<ReqBody>,
        err: AuthError,
    ) -> Self
    where
        B: FromRejection,
    {
        let response = match configured {
            Some(renderer) => renderer.render(req, err),
            None => Renderer::render_inside(req, err),
        };
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Calling { .. } => "Calling",
            State::Rejected { .. } => "Rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            // The inner future's output as it is: no copy of the response on its way out.
            StateProj::Calling { fut } => fut.poll(cx),
            StateProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}
