//! The layer in front of a real tonic server (the standard health service, with the method
//! scope table of `examples/grpc.rs`), driven over loopback by a real tonic client and by a
//! raw HTTP/2 client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::util::MapRequestLayer;
use tower_bearer::scope::{MethodScopes, ScopeGuardLayer, ScopePolicy};
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;
use tower_bearer::{BearerAuthLayer, Principal};

const REALM: &str = "grpc-test";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "api://health";
const HEALTH_SCOPE: &str = "health:read";
const CHECK: &str = "/grpc.health.v1.Health/Check";
/// Upper bound for any single step (connecting, a call, the shutdown).
const STEP: Duration = Duration::from_secs(10);

// --- The server.

/// The scope table of `examples/grpc.rs`: `Check` and `Watch` need `health:read`, any other
/// method a valid token. It sits inside the bearer layer and answers in its realm.
fn health_guard() -> ScopeGuardLayer {
    ScopeGuardLayer::methods(
        MethodScopes::new()
            .method(CHECK, ScopePolicy::scope(HEALTH_SCOPE))
            .method(
                "/grpc.health.v1.Health/Watch",
                ScopePolicy::scope(HEALTH_SCOPE),
            )
            .default_policy(ScopePolicy::authenticated()),
    )
    .expect("valid method table")
}

struct TestServer {
    addr: SocketAddr,
    /// The subject of every call that reached the health service (`None`: no Principal).
    seen: Arc<Mutex<Vec<Option<String>>>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestServer {
    async fn start(jwt: Jwt) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let probe = MapRequestLayer::new(move |req: http::Request<tonic::body::Body>| {
            let subject = req
                .extensions()
                .get::<Principal>()
                .and_then(|p| p.subject().map(str::to_owned));
            record.lock().unwrap().push(subject);
            req
        });
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (stop, stopped) = oneshot::channel::<()>();
        let router = Server::builder()
            .layer(BearerAuthLayer::new(jwt).realm(REALM))
            .layer(health_guard())
            .layer(probe)
            .add_service(health);
        let task = tokio::spawn(router.serve_with_incoming_shutdown(
            TcpIncoming::from(listener),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            seen,
            stop,
            task,
        }
    }

    async fn client(&self) -> HealthClient<Channel> {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr)).expect("endpoint");
        let channel = tokio::time::timeout(STEP, endpoint.connect())
            .await
            .expect("connects in time")
            .expect("connects");
        HealthClient::new(channel)
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(STEP, self.task)
            .await
            .expect("server stops in time")
            .expect("server task does not panic")
            .expect("server ends cleanly");
    }
}

// --- Tokens and calls.

struct Tokens {
    issuer: TestIssuer,
}

impl Tokens {
    fn new() -> (Self, Jwt) {
        let issuer = TestIssuer::rs256().with_kid("k1");
        let jwt = Jwt::builder()
            .key(issuer.key())
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .build()
            .expect("valid configuration");
        (Self { issuer }, jwt)
    }

    fn with_scope(&self, sub: &str, scope: &str) -> String {
        self.issuer.mint(
            claims(sub, scope, Duration::from_secs(300))
                .iss(ISSUER)
                .aud(AUDIENCE),
        )
    }

    fn expired(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.issuer.mint(
            claims("alice", HEALTH_SCOPE, Duration::ZERO)
                .iss(ISSUER)
                .aud(AUDIENCE)
                .set("iat", now - 7200)
                .set("exp", now - 3600),
        )
    }

    fn wrong_audience(&self) -> String {
        self.issuer.mint(
            claims("alice", HEALTH_SCOPE, Duration::from_secs(300))
                .iss(ISSUER)
                .aud("api://someone-else"),
        )
    }
}

fn check_request(token: Option<&str>) -> tonic::Request<HealthCheckRequest> {
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ASCII metadata"),
        );
    }
    req
}

async fn check(
    client: &mut HealthClient<Channel>,
    token: Option<&str>,
) -> Result<HealthCheckResponse, Status> {
    tokio::time::timeout(STEP, client.check(check_request(token)))
        .await
        .expect("answer in time")
        .map(tonic::Response::into_inner)
}

/// Asserts the status says nothing of the token: neither its message nor any metadata value
/// holds any of its dot-separated parts.
fn assert_no_token_material(status: &Status, token: &str) {
    for part in token.split('.').filter(|p| p.len() >= 3) {
        assert!(
            !status.message().contains(part),
            "message leaks the token: {status:?}"
        );
        for kv in status.metadata().iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(_, v) = kv {
                assert!(
                    !v.to_str().unwrap_or_default().contains(part),
                    "metadata leaks the token: {status:?}"
                );
            }
        }
    }
}

// --- Tests.

#[tokio::test]
async fn refusals_are_unauthenticated_with_a_short_message() {
    let (tokens, jwt) = Tokens::new();
    let server = TestServer::start(jwt).await;
    let mut client = server.client().await;

    let status = check(&mut client, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "bearer token required");

    let stranger = TestIssuer::rs256().with_kid("k1");
    let forged = stranger.mint(
        claims("alice", HEALTH_SCOPE, Duration::from_secs(300))
            .iss(ISSUER)
            .aud(AUDIENCE),
    );
    for (name, token, message) in [
        ("malformed", "abc".to_owned(), "malformed token"),
        ("expired", tokens.expired(), "token expired"),
        ("other issuer's key", forged, "invalid signature"),
        (
            "wrong audience",
            tokens.wrong_audience(),
            "invalid audience",
        ),
    ] {
        let status = check(&mut client, Some(&token)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{name}: {status:?}");
        assert_eq!(status.message(), message, "{name}");
        assert_no_token_material(&status, &token);
    }

    assert!(
        server.seen().is_empty(),
        "a refused call reached the service: {:?}",
        server.seen()
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn valid_token_with_scope_is_served_and_the_service_sees_the_principal() {
    let (tokens, jwt) = Tokens::new();
    let server = TestServer::start(jwt).await;
    let mut client = server.client().await;

    let token = tokens.with_scope("alice", "profile health:read");
    let response = check(&mut client, Some(&token)).await.expect("served");
    assert_eq!(response.status, ServingStatus::Serving as i32);
    assert_eq!(server.seen(), vec![Some("alice".to_owned())]);

    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn valid_token_without_scope_is_permission_denied() {
    let (tokens, jwt) = Tokens::new();
    let server = TestServer::start(jwt).await;
    let mut client = server.client().await;

    // Exact, case-sensitive matching: neither a lookalike nor no scope at all will do.
    for scope in ["", "health:readonly", "Health:Read"] {
        let token = tokens.with_scope("bob", scope);
        let status = check(&mut client, Some(&token)).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{scope:?}: {status:?}"
        );
        assert_eq!(status.message(), "insufficient scope: requires health:read");
        assert_no_token_material(&status, &token);
    }

    let token = tokens.with_scope("bob", "");
    let watch = tokio::time::timeout(STEP, client.watch(check_request(Some(&token))))
        .await
        .expect("answer in time");
    let status = watch.expect_err("Watch refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    assert!(
        server.seen().is_empty(),
        "a refused call reached the service: {:?}",
        server.seen()
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn refusal_is_a_trailers_only_response_on_the_wire() {
    let (tokens, jwt) = Tokens::new();
    let server = TestServer::start(jwt).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();

    // One gRPC message frame: uncompressed, length 0 (an empty HealthCheckRequest).
    let frame = Bytes::from_static(&[0, 0, 0, 0, 0]);
    for (token, grpc_status, message) in [
        (None, "16", "bearer token required"),
        (Some(tokens.expired()), "16", "token expired"),
        (
            Some(tokens.with_scope("bob", "")),
            "7",
            "insufficient scope: requires health:read",
        ),
    ] {
        let mut req = http::Request::post(format!("http://{}{CHECK}", server.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(token) = &token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Full::new(frame.clone())).unwrap();
        let res = tokio::time::timeout(STEP, client.request(req))
            .await
            .expect("answer in time")
            .expect("HTTP/2 exchange");
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert_eq!(res.status(), http::StatusCode::OK);
        let headers = res.headers().clone();
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers["grpc-status"], grpc_status);
        // Percent-encoding (gRPC over HTTP/2) escapes only `%` and what is outside
        // printable ASCII; these messages have neither.
        assert_eq!(headers["grpc-message"], message);
        assert!(
            headers.get("www-authenticate").is_none(),
            "no HTTP challenge on gRPC"
        );
        let body = tokio::time::timeout(STEP, res.into_body().collect())
            .await
            .expect("body in time")
            .expect("body reads");
        assert!(
            body.trailers().is_none(),
            "trailers-only: the status is in the headers"
        );
        assert!(body.to_bytes().is_empty(), "trailers-only: no message");
    }

    assert!(
        server.seen().is_empty(),
        "a refused call reached the service: {:?}",
        server.seen()
    );
    drop(client);
    server.shutdown().await;
}
