//! Certificate-bound tokens (RFC 8705) over real TLS: a rustls server on 127.0.0.1 that asks
//! for client certificates and puts the peer's leaf certificate in the request extensions
//! (as `tower_bearer::mtls` documents), and a real client with two certificates issued by the
//! same test CA, one bound to the token (`cnf.x5t#S256`), one not.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tower::ServiceExt;
use tower_bearer::mtls::ClientCertificate;
use tower_bearer::sender::{SenderConstraints, SenderGuardLayer, SenderProof};
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;
use tower_bearer::{BearerAuthLayer, Principal};

/// How long one exchange (connect, handshake, request, response) may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    fn leaf_der(&self) -> &[u8] {
        self.chain[0].as_ref()
    }

    fn clone_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

struct Pki {
    ca: CertificateDer<'static>,
    server: Identity,
    /// Two client certificates from the same CA.
    clients: [Identity; 2],
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tower-bearer test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |name: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).unwrap();
            Identity {
                chain: vec![cert.der().clone()],
                key: PrivateKeyDer::from(key),
            }
        };
        Pki {
            ca: ca.der().clone(),
            server: leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth),
            clients: [
                leaf("client-a", ExtendedKeyUsagePurpose::ClientAuth),
                leaf("client-b", ExtendedKeyUsagePurpose::ClientAuth),
            ],
        }
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots() -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(pki().ca.clone()).unwrap();
    Arc::new(roots)
}

fn issuer() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(TestIssuer::es256)
}

/// The app: `/me` takes any valid token (a certificate-bound one only with its certificate),
/// `/pay` sender-constrained tokens only.
fn app() -> Router {
    let jwt = Jwt::builder()
        .key(issuer().key())
        .any_audience()
        .build()
        .unwrap();
    async fn me(principal: Principal, req: axum::extract::Request) -> String {
        let proof = req.extensions().get::<SenderProof>().cloned();
        format!(
            "{} {}",
            principal.subject().unwrap_or(""),
            proof
                .as_ref()
                .and_then(SenderProof::certificate_thumbprint)
                .unwrap_or("bearer")
        )
    }
    Router::new()
        .route("/me", get(me))
        .route(
            "/pay",
            get(|| async { "paid" }).route_layer(SenderGuardLayer::require()),
        )
        .layer(
            BearerAuthLayer::new(jwt)
                .realm("mtls")
                .sender_constraints(SenderConstraints::new().mtls()),
        )
}

/// A TLS server on 127.0.0.1 asking for (but not requiring) client certificates; aborted when
/// dropped.
struct TlsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_server() -> TlsServer {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(), provider())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki().server.chain.clone(), pki().server.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(IO_TIMEOUT, acceptor.accept(tcp)).await
                else {
                    return;
                };
                // The verified leaf certificate of this connection, for every request on it.
                let cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| ClientCertificate::new(Bytes::copy_from_slice(leaf.as_ref())));
                let svc = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    if let Some(cert) = &cert {
                        req.extensions_mut().insert(cert.clone());
                    }
                    let app = app.clone();
                    async move {
                        Ok::<_, Infallible>(
                            app.oneshot(req.map(axum::body::Body::new)).await.unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    TlsServer { addr, task }
}

/// One GET over a new TLS connection, with client certificate `client` (index into the two),
/// or none.
async fn get_with(
    addr: SocketAddr,
    client: Option<usize>,
    path: &str,
    token: &str,
) -> (StatusCode, String, String) {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots());
    let mut config = match client {
        Some(i) => builder
            .with_client_auth_cert(pki().clients[i].chain.clone(), pki().clients[i].clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "localhost")
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        let status = res.status();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        conn.abort();
        (
            status,
            challenge,
            String::from_utf8_lossy(&body).into_owned(),
        )
    };
    tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .expect("TLS exchange timed out")
}

#[tokio::test]
async fn a_certificate_bound_token_works_only_with_its_certificate() {
    let server = start_server().await;
    let bound_to_a = issuer().mint(
        claims("alice", "", Duration::from_secs(600))
            .certificate_bound(pki().clients[0].leaf_der()),
    );
    let a_thumbprint = ClientCertificate::new(pki().clients[0].leaf_der().to_vec())
        .thumbprint()
        .to_owned();

    // With certificate A: through, and the proven thumbprint is in the extensions.
    let (status, _, body) = get_with(server.addr, Some(0), "/me", &bound_to_a).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, format!("alice {a_thumbprint}"));
    let (status, _, body) = get_with(server.addr, Some(0), "/pay", &bound_to_a).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "paid"));

    // With certificate B (same CA, valid TLS) or none: refused.
    for client in [Some(1), None] {
        let (status, challenge, _) = get_with(server.addr, client, "/me", &bound_to_a).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{client:?}");
        assert_eq!(
            challenge,
            r#"Bearer realm="mtls", error="invalid_token", error_description="client certificate does not match the token""#
        );
    }
}

#[tokio::test]
async fn an_unbound_token_is_a_plain_bearer_token_whatever_the_certificate() {
    let server = start_server().await;
    let plain = issuer().mint(claims("bob", "", Duration::from_secs(600)));
    for client in [Some(0), Some(1), None] {
        let (status, _, body) = get_with(server.addr, client, "/me", &plain).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "bob bearer"));
        // Sender-constrained routes refuse it.
        let (status, challenge, _) = get_with(server.addr, client, "/pay", &plain).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenge,
            r#"Bearer realm="mtls", error="invalid_token", error_description="sender-constrained token required""#
        );
    }
}

#[tokio::test]
async fn a_certificate_header_from_the_client_is_not_trusted() {
    // The layer reads the certificate only from the extensions the server sets, never from a
    // header: a token bound to A, sent without a certificate but with A's thumbprint in
    // made-up headers, is refused.
    let server = start_server().await;
    let der = pki().clients[0].leaf_der().to_vec();
    let bound_to_a =
        issuer().mint(claims("alice", "", Duration::from_secs(600)).certificate_bound(&der));
    let (status, _, _) = get_with(server.addr, None, "/me", &bound_to_a).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // And directly, without TLS: a request with no ClientCertificate extension.
    let req = Request::get("/me")
        .header("authorization", format!("Bearer {bound_to_a}"))
        .header(
            "x-client-cert",
            ClientCertificate::new(der).thumbprint().to_owned(),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
