//! Certificate-bound access tokens (RFC 8705 §3): the token works only on a TLS connection
//! authenticated with the client certificate it names.
//!
//! An authorization server that issues a token to a client authenticated with mutual TLS can
//! bind it to the certificate: the token's `cnf` claim then holds `x5t#S256`, the base64url
//! SHA-256 of the certificate's DER encoding. With
//! [`SenderConstraints::mtls`](crate::sender::SenderConstraints::mtls), the bearer layer
//! refuses such a token (401 `invalid_token`) unless the request carries a
//! [`ClientCertificate`] whose thumbprint is the same.
//!
//! The layer cannot see the TLS connection: whatever accepts connections must put the peer's
//! leaf certificate in the extensions of every request of that connection. The layer never
//! trusts a header for this.
//!
//! ```
//! use bytes::Bytes;
//! use tower_bearer::mtls::ClientCertificate;
//!
//! let cert = ClientCertificate::new(Bytes::from_static(b"DER bytes of the leaf certificate"));
//! assert_eq!(cert.thumbprint().len(), 43);
//! let mut request = http::Request::new(());
//! request.extensions_mut().insert(cert);
//! ```
//!
//! ## hyper with tokio-rustls
//!
//! Verify client certificates in rustls (`WebPkiClientVerifier`), then, per connection:
//!
//! ```ignore
//! let tls = acceptor.accept(tcp).await?;
//! let cert = tls.get_ref().1.peer_certificates()
//!     .and_then(|chain| chain.first())
//!     .map(|leaf| ClientCertificate::new(Bytes::copy_from_slice(leaf.as_ref())));
//! let svc = hyper::service::service_fn(move |mut req| {
//!     if let Some(cert) = &cert {
//!         req.extensions_mut().insert(cert.clone());
//!     }
//!     app.clone().oneshot(req)            // app: the Router / service behind BearerAuthLayer
//! });
//! hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
//!     .serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc)).await?;
//! ```
//!
//! `tests/mtls.rs` in this repository runs exactly that, with two client certificates.
//!
//! ## axum
//!
//! `axum::serve` does not do TLS; serve the router with the hyper loop above (an axum
//! `Router` is a tower service), or with `axum-server`'s rustls acceptor wrapped in one that
//! inserts the certificate the same way.
//!
//! ## tonic
//!
//! With tonic's server TLS (`tls-*` features) and `client_ca_root`, tonic puts a
//! `TlsConnectInfo` in the request extensions; copy its leaf certificate in a layer in front
//! of the bearer layer:
//!
//! ```ignore
//! use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
//!
//! let add_cert = tower::util::MapRequestLayer::new(|mut req: http::Request<_>| {
//!     let leaf = req.extensions()
//!         .get::<TlsConnectInfo<TcpConnectInfo>>()
//!         .and_then(|info| info.peer_certs())
//!         .and_then(|certs| certs.first().map(|c| Bytes::copy_from_slice(c.as_ref())));
//!     if let Some(der) = leaf {
//!         req.extensions_mut().insert(ClientCertificate::new(der));
//!     }
//!     req
//! });
//! Server::builder()
//!     .tls_config(tls)?
//!     .layer(add_cert)                                   // outer: copies the certificate
//!     .layer(BearerAuthLayer::new(jwt).sender_constraints(SenderConstraints::new().mtls()))
//!     .add_service(svc);
//! ```

use std::fmt;

use bytes::Bytes;

use crate::dpop::sha256_b64;

/// The DER encoding of the TLS client's leaf certificate, put in the request extensions by
/// the code that accepted the connection. Its `Debug` shows the thumbprint only.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    der: Bytes,
    thumbprint: Box<str>,
}

impl ClientCertificate {
    /// Wraps a DER-encoded certificate.
    pub fn new(der: impl Into<Bytes>) -> Self {
        let der = der.into();
        let thumbprint = sha256_b64(&der).into();
        Self { der, thumbprint }
    }

    /// The DER bytes.
    pub fn der(&self) -> &Bytes {
        &self.der
    }

    /// The RFC 8705 `x5t#S256` thumbprint: base64url (unpadded) SHA-256 of the DER bytes.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.thumbprint)
            .finish()
    }
}
