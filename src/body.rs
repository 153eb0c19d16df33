//! Response bodies: the layers answer in the inner service's own body type.
//!
//! Every layer of this crate returns `Response<B>` where `B` is the inner service's response
//! body, so an admitted request's response passes through untouched (axum and tonic do not
//! re-box it, and nothing is allocated for it). A refusal is rendered into `B` through
//! [`FromRejection`], implemented for the bodies of axum (feature `axum`), tonic (feature
//! `tonic`), `http_body_util`'s `Full`, `BoxBody` and `UnsyncBoxBody`, `String`, and
//! [`AuthBody`]. For any other body type, wrap the inner service's body in [`AuthBody`]:
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Empty;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::BearerAuthLayer;
//! use tower_bearer::body::AuthBody;
//! use tower_bearer::keys::{Algorithm, Key};
//! use tower_bearer::validate::Jwt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let jwt = Jwt::builder()
//!     .key(Key::hmac(b"0123456789abcdef0123456789abcdef", Algorithm::HS256).unwrap())
//!     .audience("api")
//!     .build()
//!     .unwrap();
//! // `Empty` cannot hold a refusal's JSON: `AuthBody` carries either.
//! let svc = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(jwt))
//!     .map_response(|res: Response<Empty<Bytes>>| res.map(AuthBody::new))
//!     .service(service_fn(|_req: Request<Empty<Bytes>>| async {
//!         Ok::<_, Infallible>(Response::new(Empty::new()))
//!     }));
//!
//! let res = svc.oneshot(Request::new(Empty::new())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// A response body a refusal can be rendered in (the layers need it of the inner service's
/// response body; see the [module docs](self)).
pub trait FromRejection: Sized {
    /// A body holding `bytes` (small and fully buffered: a JSON error, or nothing for gRPC).
    fn from_rejection(bytes: Bytes) -> Self;
}

impl<B> FromRejection for AuthBody<B> {
    fn from_rejection(bytes: Bytes) -> Self {
        AuthBody::rejection(bytes)
    }
}

impl FromRejection for http_body_util::Full<Bytes> {
    fn from_rejection(bytes: Bytes) -> Self {
        http_body_util::Full::new(bytes)
    }
}

impl<E: 'static> FromRejection for http_body_util::combinators::BoxBody<Bytes, E> {
    fn from_rejection(bytes: Bytes) -> Self {
        use http_body_util::BodyExt as _;
        http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed()
    }
}

impl<E: 'static> FromRejection for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
    fn from_rejection(bytes: Bytes) -> Self {
        use http_body_util::BodyExt as _;
        http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync()
    }
}

impl FromRejection for String {
    /// The bytes as text (a rendered refusal is UTF-8; anything else, replaced lossily).
    fn from_rejection(bytes: Bytes) -> Self {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(feature = "axum")]
impl FromRejection for axum_core::body::Body {
    fn from_rejection(bytes: Bytes) -> Self {
        axum_core::body::Body::from(bytes)
    }
}

#[cfg(feature = "tonic")]
impl FromRejection for tonic::body::Body {
    fn from_rejection(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            tonic::body::Body::empty()
        } else {
            tonic::body::Body::new(http_body_util::Full::new(bytes))
        }
    }
}

pin_project! {
    /// Either a body of the inner service or the (small, fully buffered) body of a
    /// rejection: for inner services whose body type is not a [`FromRejection`].
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
    /// Wraps a body of the inner service.
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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::reject::{AuthError, Renderer};

    /// The bytes of `body`, read to its end.
    fn read<B>(body: B) -> Bytes
    where
        B: Body,
        B::Error: std::fmt::Debug,
    {
        futures_executor::block_on(body.collect())
            .expect("a rejection body cannot fail")
            .to_bytes()
    }

    /// Every body type a refusal is rendered into carries the renderer's bytes unchanged, and
    /// a gRPC refusal (no bytes) is an ended body.
    #[test]
    fn every_rejection_body_holds_the_bytes() {
        let json = Bytes::from_static(br#"{"error":"invalid_token"}"#);
        fn check<B>(json: &Bytes)
        where
            B: FromRejection + Body,
            B::Error: std::fmt::Debug,
        {
            assert_eq!(read(B::from_rejection(json.clone())), *json);
            let empty = B::from_rejection(Bytes::new());
            assert_eq!(empty.size_hint().upper(), Some(0));
            assert!(read(empty).is_empty());
        }
        check::<AuthBody<http_body_util::Empty<Bytes>>>(&json);
        check::<http_body_util::Full<Bytes>>(&json);
        check::<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>(&json);
        check::<http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>>(&json);
        check::<String>(&json);
        #[cfg(feature = "axum")]
        check::<axum_core::body::Body>(&json);
        #[cfg(feature = "tonic")]
        {
            check::<tonic::body::Body>(&json);
            assert!(tonic::body::Body::from_rejection(Bytes::new()).is_end_stream());
        }
    }

    /// A refusal rendered straight into the inner service's body type: the JSON of the
    /// default renderer, no wrapper.
    #[test]
    fn renderer_answers_in_the_callers_body_type() {
        let res: http::Response<http_body_util::Full<Bytes>> =
            Renderer::default().render_http(AuthError::invalid_token("bad signature"));
        assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(
            read(res.into_body()),
            r#"{"error":"invalid_token","error_description":"bad signature"}"#
        );
    }

    /// The wrapper passes an inner body through, frames and end alike.
    #[test]
    fn auth_body_passes_the_inner_body_through() {
        let body = AuthBody::new(http_body_util::Full::new(Bytes::from_static(b"hello")));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        assert_eq!(read(body), "hello");
    }
}
