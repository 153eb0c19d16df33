//! A value known now, or a boxed future of it: the shape of [`Authentication`], [`Check`],
//! the revocation `Lookup` and the DPoP `ReplayCheck` (all declared with
//! `maybe_ready_type!`), so synchronous answers (local keys, memory stores) never box; and
//! [`poll_waiting`], how a response future leaves the boxed state it waited for one in.
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

/// Declares a public "known now, or a boxed future" outcome type over [`MaybeReady`]:
/// `ready`, `pending`, `into_ready`, a `Debug` naming the state, and `Future`. The
/// `$what` text names the answer in the generated docs ("decision", "outcome"…).
macro_rules! maybe_ready_type {
    ($(#[$meta:meta])* pub struct $name:ident($out:ty), $what:literal;) => {
        $(#[$meta])*
        pub struct $name($crate::maybe_ready::MaybeReady<$out>);

        impl $name {
            #[doc = concat!("A", " ", $what, " known at once.")]
            pub fn ready(result: $out) -> Self {
                Self($crate::maybe_ready::MaybeReady::ready(result))
            }

            #[doc = concat!("A", " ", $what, " that needs I/O.")]
            pub fn pending(
                fut: impl ::std::future::Future<Output = $out> + Send + 'static,
            ) -> Self {
                Self($crate::maybe_ready::MaybeReady::pending(fut))
            }

            #[doc = concat!("The ", $what, " if already known, else `Err(self)` to be awaited.")]
            pub fn into_ready(self) -> Result<$out, Self> {
                self.0.into_ready().map_err(Self)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(if self.0.is_ready() {
                    concat!(stringify!($name), "::Ready")
                } else {
                    concat!(stringify!($name), "::Pending")
                })
            }
        }

        impl ::std::future::Future for $name {
            type Output = $out;

            fn poll(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<Self::Output> {
                self.0.poll(cx)
            }
        }
    };
}

pub(crate) use maybe_ready_type;

/// Polls the state a response future waits in (boxed, so that it does not make every
/// request's future bigger) with `poll`; once that is ready, takes the state out with the
/// result, leaving `None` (a poll after completion panics, as futures may).
// Inlined, as the code it replaced was: left to the compiler, its call shifted inlining
// elsewhere in the layer's futures (30 instructions more per admitted request,
// `scripts/instructions.sh one_layer`).
#[inline(always)]
pub(crate) fn poll_waiting<W, R>(
    waiting: &mut Option<Box<W>>,
    poll: impl FnOnce(&mut W) -> Poll<R>,
) -> Poll<(W, R)> {
    let w = waiting
        .as_mut()
        .expect("ResponseFuture polled after completion");
    let result = std::task::ready!(poll(w));
    let w = waiting.take().expect("present: checked above");
    Poll::Ready((*w, result))
}
