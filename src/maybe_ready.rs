//! A value known now, or a boxed future of it: the shape of [`Authentication`] and
//! [`Check`], so synchronous answers (local keys, the memory store) never box.
//!
//! [`Authentication`]: crate::validate::Authentication
//! [`Check`]: crate::rate_limit::Check

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub(crate) enum MaybeReady<T> {
    Ready(Option<T>),
    Pending(Pin<Box<dyn Future<Output = T> + Send + 'static>>),
}

impl<T> MaybeReady<T> {
    pub(crate) fn ready(value: T) -> Self {
        Self::Ready(Some(value))
    }

    pub(crate) fn pending(fut: impl Future<Output = T> + Send + 'static) -> Self {
        Self::Pending(Box::pin(fut))
    }

    /// The value if already known, else `Err(self)` to be awaited.
    pub(crate) fn into_ready(self) -> Result<T, Self> {
        match self {
            Self::Ready(Some(v)) => Ok(v),
            other => Err(other),
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        matches!(self, Self::Ready(_))
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        match self {
            Self::Ready(v) => Poll::Ready(v.take().expect("polled after completion")),
            Self::Pending(f) => f.as_mut().poll(cx),
        }
    }
}
