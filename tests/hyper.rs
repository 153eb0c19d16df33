//! The layer in a plain hyper 1 server (hyper-util, no framework), driven over loopback by a
//! real HTTP/1.1 client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower::{Layer, service_fn};
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;
use tower_bearer::{BearerAuthLayer, Principal};

const REALM: &str = "hyper-test";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "api://hello";
/// Upper bound for any single step (a request, a body, the shutdown).
const STEP: Duration = Duration::from_secs(10);

/// A hyper server on 127.0.0.1:0 with the bearer layer around a counting `hello` service.
struct TestServer {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start(jwt: Jwt) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let hello = service_fn(move |req: Request<Incoming>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let who = req
                .extensions()
                .get::<Principal>()
                .and_then(Principal::subject)
                .unwrap_or("unknown")
                .to_owned();
            async move {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                    "hello, {who}"
                )))))
            }
        });
        let service = BearerAuthLayer::new(jwt).realm(REALM).layer(hello);

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let mut connections = JoinSet::new();
            loop {
                let stream = tokio::select! {
                    _ = stop_rx.changed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let builder = builder.clone();
                let service = TowerToHyperService::new(service.clone());
                let mut stop = stop_rx.clone();
                connections.spawn(async move {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        () = async { drop(stop.wait_for(|s| *s).await) } => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            drop(listener);
            while connections.join_next().await.is_some() {}
        });
        Self {
            addr,
            calls,
            stop,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn shutdown(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(STEP, self.task)
            .await
            .expect("server stops in time")
            .expect("server task does not panic");
    }
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

async fn send(client: &Client<HttpConnector, Empty<Bytes>>, req: Request<Empty<Bytes>>) -> Answer {
    let res = tokio::time::timeout(STEP, client.request(req))
        .await
        .expect("response in time")
        .expect("request succeeds");
    let (parts, body) = res.into_parts();
    let body = tokio::time::timeout(STEP, body.collect())
        .await
        .expect("body in time")
        .expect("body reads")
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
    }
}

fn setup() -> (TestIssuer, Jwt) {
    let issuer = TestIssuer::es256().with_kid("k1");
    let jwt = Jwt::builder()
        .key(issuer.key())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .expect("valid configuration");
    (issuer, jwt)
}

fn valid_token(issuer: &TestIssuer, sub: &str) -> String {
    issuer.mint(
        claims(sub, "", Duration::from_secs(300))
            .iss(ISSUER)
            .aud(AUDIENCE),
    )
}

fn challenge(answer: &Answer) -> &str {
    answer
        .headers
        .get(WWW_AUTHENTICATE)
        .expect("a WWW-Authenticate challenge")
        .to_str()
        .expect("ASCII challenge")
}

#[tokio::test]
async fn valid_token_reaches_the_handler_with_its_principal() {
    let (issuer, jwt) = setup();
    let server = TestServer::start(jwt).await;
    let client = client();

    let req = Request::get(server.url())
        .header(
            AUTHORIZATION,
            format!("Bearer {}", valid_token(&issuer, "alice")),
        )
        .body(Empty::new())
        .unwrap();
    let answer = send(&client, req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "hello, alice");
    assert!(answer.headers.get(WWW_AUTHENTICATE).is_none());
    assert_eq!(server.calls(), 1);

    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn missing_token_gets_a_bare_challenge() {
    let (_issuer, jwt) = setup();
    let server = TestServer::start(jwt).await;
    let client = client();

    let answer = send(
        &client,
        Request::get(server.url()).body(Empty::new()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // RFC 6750 §3.1: no error code when the request carried no credentials.
    assert_eq!(challenge(&answer), format!(r#"Bearer realm="{REALM}""#));
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(
        server.calls(),
        0,
        "a rejected request never reaches the handler"
    );

    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn expired_token_is_invalid_token() {
    let (issuer, jwt) = setup();
    let server = TestServer::start(jwt).await;
    let client = client();

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = issuer.mint(
        claims("alice", "", Duration::ZERO)
            .iss(ISSUER)
            .aud(AUDIENCE)
            .set("iat", now - 7200)
            .set("exp", now - 3600),
    );
    let req = Request::get(server.url())
        .header(AUTHORIZATION, format!("Bearer {expired}"))
        .body(Empty::new())
        .unwrap();
    let answer = send(&client, req).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let challenge = challenge(&answer);
    assert!(
        challenge.starts_with(&format!(r#"Bearer realm="{REALM}""#)),
        "{challenge}"
    );
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(r#"error_description="token expired""#),
        "{challenge}"
    );
    for part in expired.split('.') {
        assert!(!challenge.contains(part), "the challenge leaks the token");
        assert!(!answer.body.contains(part), "the body leaks the token");
    }
    assert_eq!(
        server.calls(),
        0,
        "a rejected request never reaches the handler"
    );

    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn two_authorization_headers_are_an_invalid_request() {
    let (issuer, jwt) = setup();
    let server = TestServer::start(jwt).await;
    let client = client();

    // Both valid: the request is refused for its shape, not its tokens.
    let req = Request::get(server.url())
        .header(
            AUTHORIZATION,
            format!("Bearer {}", valid_token(&issuer, "alice")),
        )
        .header(
            AUTHORIZATION,
            format!("Bearer {}", valid_token(&issuer, "bob")),
        )
        .body(Empty::new())
        .unwrap();
    assert_eq!(req.headers().get_all(AUTHORIZATION).iter().count(), 2);
    let answer = send(&client, req).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        challenge(&answer).contains(r#"error="invalid_request""#),
        "{}",
        challenge(&answer)
    );
    assert_eq!(
        server.calls(),
        0,
        "a rejected request never reaches the handler"
    );

    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn only_accepted_requests_are_counted() {
    let (issuer, jwt) = setup();
    let server = TestServer::start(jwt).await;
    let client = client();

    let good = valid_token(&issuer, "carol");
    let stranger = TestIssuer::es256().with_kid("k1");
    let forged = valid_token(&stranger, "carol");
    for (auth, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(format!("Bearer {forged}")), StatusCode::UNAUTHORIZED),
        (Some("Bearer abc".to_owned()), StatusCode::UNAUTHORIZED),
        (Some(format!("Bearer {good}")), StatusCode::OK),
        (
            Some("Basic YWxpY2U6c2VjcmV0".to_owned()),
            StatusCode::UNAUTHORIZED,
        ),
        (Some(format!("Bearer {good}")), StatusCode::OK),
    ] {
        let mut req = Request::get(server.url());
        if let Some(auth) = &auth {
            req = req.header(AUTHORIZATION, auth.as_str());
        }
        let answer = send(&client, req.body(Empty::new()).unwrap()).await;
        assert_eq!(answer.status, status, "{auth:?}");
        if status == StatusCode::OK {
            assert_eq!(answer.body, "hello, carol");
        }
    }
    assert_eq!(server.calls(), 2);

    drop(client);
    server.shutdown().await;
}
