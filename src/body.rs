//! The response body of the bearer layer: the inner service's body, or a rejection.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Either the inner service's response body or the (small, fully buffered) body of a
    /// rejection rendered by the layer.
    #[derive(Debug)]
    pub struct AuthBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<B> {
        Passthrough { #[pin] body: B },
        Rejection { bytes: Option<Bytes> },
    }
}

impl<B> AuthBody<B> {
    /// Wraps the inner service's body.
    pub fn new(body: B) -> Self {
        Self {
            inner: Inner::Passthrough { body },
        }
    }

    /// A rejection body holding `bytes`.
    pub fn rejection(bytes: Bytes) -> Self {
        Self {
            inner: Inner::Rejection {
                bytes: (!bytes.is_empty()).then_some(bytes),
            },
        }
    }
}

impl<B> Default for AuthBody<B> {
    fn default() -> Self {
        Self::rejection(Bytes::new())
    }
}

impl<B> Body for AuthBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().inner.project() {
            InnerProj::Passthrough { body } => body.poll_frame(cx),
            InnerProj::Rejection { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Passthrough { body } => body.is_end_stream(),
            Inner::Rejection { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Passthrough { body } => body.size_hint(),
            Inner::Rejection { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
