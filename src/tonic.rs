//! tonic integration (feature `tonic`): reading the [`Principal`] in a gRPC handler.
//!
//! Put [`BearerAuthLayer`](crate::BearerAuthLayer) in front of the tonic server with
//! `Server::builder().layer(...)`. Failed authentication never reaches the service: the layer
//! answers with `UNAUTHENTICATED` (16) as a trailers-only response. In the handler, the
//! verified identity is in the request extensions (tonic carries the HTTP extensions over):
//!
//! ```
//! use tower_bearer::tonic::RequestExt;
//!
//! fn handler(request: tonic::Request<()>) -> Result<tonic::Response<String>, tonic::Status> {
//!     let principal = request
//!         .principal()
//!         .ok_or_else(|| tonic::Status::unauthenticated("no principal"))?;
//!     Ok(tonic::Response::new(principal.subject().unwrap_or_default().to_owned()))
//! }
//! assert_eq!(handler(tonic::Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
//! ```

use crate::principal::Principal;

/// Reads the [`Principal`] from a `tonic::Request`.
pub trait RequestExt {
    /// The verified principal, when the request went through the bearer layer.
    fn principal(&self) -> Option<&Principal>;
}

impl<T> RequestExt for tonic::Request<T> {
    fn principal(&self) -> Option<&Principal> {
        self.extensions().get::<Principal>()
    }
}
