//! HTTPS-only credentials and trusted proxies (`TransportPolicy`), the `strip_authorization`
//! option and the sensitive flag on credential headers: through `oneshot` with the peer
//! address and connection scheme set as a server would, and on a real axum server on
//! 127.0.0.1 with `ConnectInfo`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::{Layer, ServiceExt, service_fn};
use tower_bearer::BearerAuthLayer;
use tower_bearer::extract::Extractor;
use tower_bearer::network::{ForwardedHeader, PeerAddr, Scheme, TransportPolicy, TrustedProxies};
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;

const REALM: &str = "test";
const AUDIENCE: &str = "api";
/// Upper bound for any single step of the real-server tests.
const STEP: Duration = Duration::from_secs(10);
const REMOTE: &str = "203.0.113.9:51000";
const PROXY: &str = "10.0.0.2:41000";

fn issuer() -> TestIssuer {
    TestIssuer::hs256()
}

fn jwt(issuer: &TestIssuer) -> Jwt {
    Jwt::builder()
        .key(issuer.key())
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

fn token(issuer: &TestIssuer) -> String {
    issuer.mint(claims("alice", "", Duration::from_secs(300)).aud(AUDIENCE))
}

fn proxies() -> TrustedProxies {
    TrustedProxies::new(["10.0.0.0/8"]).unwrap()
}

/// What the inner service saw, and the response.
#[derive(Debug)]
struct Seen {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    /// The request headers and URI the inner service got; `None`: it was not called.
    inner: Option<(HeaderMap, Uri)>,
}

impl Seen {
    #[track_caller]
    fn assert_insecure(&self, description: &str) {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{self:?}");
        assert_eq!(
            self.headers["www-authenticate"],
            format!(
                r#"Bearer realm="{REALM}", error="invalid_request", error_description="{description}""#
            )
        );
        assert!(self.inner.is_none(), "inner service must not run");
    }

    #[track_caller]
    fn assert_ok(&self) -> &HeaderMap {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        &self.inner.as_ref().expect("inner service ran").0
    }
}

struct Req {
    builder: http::request::Builder,
    peer: Option<&'static str>,
    scheme: Option<Scheme>,
}

/// A request with a valid token from `peer`.
fn req(issuer: &TestIssuer, peer: Option<&'static str>) -> Req {
    Req {
        builder: Request::builder()
            .uri("/r")
            .header("authorization", format!("Bearer {}", token(issuer))),
        peer,
        scheme: None,
    }
}

impl Req {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    fn tls(mut self) -> Self {
        self.scheme = Some(Scheme::Https);
        self
    }

    fn build(self) -> Request<Full<Bytes>> {
        let mut r = self.builder.body(Full::default()).unwrap();
        if let Some(peer) = self.peer {
            r.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        }
        if let Some(s) = self.scheme {
            r.extensions_mut().insert(s);
        }
        r
    }
}

async fn send(layer: &BearerAuthLayer, req: Request<Full<Bytes>>) -> Seen {
    let seen: Arc<Mutex<Option<(HeaderMap, Uri)>>> = Arc::default();
    let record = seen.clone();
    let inner = service_fn(move |req: Request<Full<Bytes>>| {
        *record.lock().unwrap() = Some((req.headers().clone(), req.uri().clone()));
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner")))) }
    });
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let inner = seen.lock().unwrap().take();
    Seen {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        inner,
    }
}

fn https_only(issuer: &TestIssuer) -> BearerAuthLayer {
    BearerAuthLayer::new(jwt(issuer))
        .realm(REALM)
        .transport(TransportPolicy::https_only().trusted_proxies(proxies()))
}

// --- The scheme of the connection.

#[tokio::test]
async fn plain_http_is_refused_and_https_accepted() {
    let issuer = issuer();
    let layer = https_only(&issuer);
    let res = send(&layer, req(&issuer, Some(REMOTE)).build()).await;
    res.assert_insecure("https required");
    assert!(res.body.contains(r#""error":"invalid_request""#), "{res:?}");
    send(&layer, req(&issuer, Some(REMOTE)).tls().build())
        .await
        .assert_ok();
    // An explicit `Scheme::Http` extension is plain HTTP too.
    let mut plain = req(&issuer, Some(REMOTE)).build();
    plain.extensions_mut().insert(Scheme::Http);
    send(&layer, plain).await.assert_insecure("https required");
}

#[tokio::test]
async fn without_the_option_any_scheme_passes() {
    let issuer = issuer();
    let layer = BearerAuthLayer::new(jwt(&issuer)).realm(REALM);
    send(&layer, req(&issuer, Some(REMOTE)).build())
        .await
        .assert_ok();
}

#[tokio::test]
async fn the_scheme_is_checked_before_the_token() {
    let issuer = issuer();
    let layer = https_only(&issuer);
    for authorization in [None, Some("Bearer not a token"), Some("Basic Zm9vOmJhcg==")] {
        let mut b = Request::builder().uri("/r");
        if let Some(a) = authorization {
            b = b.header("authorization", a);
        }
        let mut r = b.body(Full::default()).unwrap();
        r.extensions_mut().insert(PeerAddr(REMOTE.parse().unwrap()));
        send(&layer, r).await.assert_insecure("https required");
    }
}

#[tokio::test]
async fn the_request_uri_scheme_is_not_believed() {
    let issuer = issuer();
    let layer = https_only(&issuer);
    let mut r = req(&issuer, Some(REMOTE)).build();
    *r.uri_mut() = "https://api.example/r".parse().unwrap();
    send(&layer, r).await.assert_insecure("https required");
}

#[tokio::test]
async fn loopback_clients_are_exempt_unless_configured_or_relayed() {
    let issuer = issuer();
    let layer = https_only(&issuer);
    send(&layer, req(&issuer, Some("127.0.0.1:5000")).build())
        .await
        .assert_ok();
    send(&layer, req(&issuer, Some("[::1]:5000")).build())
        .await
        .assert_ok();
    // A same-host proxy that is not listed as trusted, relaying a remote client.
    send(
        &layer,
        req(&issuer, Some("127.0.0.1:5000"))
            .header("x-forwarded-for", "203.0.113.9")
            .build(),
    )
    .await
    .assert_insecure("https required");
    // A trusted proxy relaying a loopback client over plain HTTP: the exemption is for direct
    // loopback peers only.
    let behind_proxy = BearerAuthLayer::new(jwt(&issuer))
        .realm(REALM)
        .transport(TransportPolicy::https_only().trusted_proxies(proxies()));
    send(
        &behind_proxy,
        req(&issuer, Some("10.0.0.1:4000"))
            .header("x-forwarded-for", "127.0.0.1")
            .header("x-forwarded-proto", "http")
            .build(),
    )
    .await
    .assert_insecure("https required");
    let strict = BearerAuthLayer::new(jwt(&issuer))
        .realm(REALM)
        .transport(TransportPolicy::https_only().allow_loopback(false));
    send(&strict, req(&issuer, Some("127.0.0.1:5000")).build())
        .await
        .assert_insecure("https required");
    send(&strict, req(&issuer, Some("127.0.0.1:5000")).tls().build())
        .await
        .assert_ok();
}

#[tokio::test]
async fn unknown_peer_is_judged_on_the_connection_only() {
    let issuer = issuer();
    let layer = https_only(&issuer);
    // No peer address: not a trusted proxy, not loopback.
    send(
        &layer,
        req(&issuer, None)
            .header("x-forwarded-proto", "https")
            .build(),
    )
    .await
    .assert_insecure("https required");
    send(&layer, req(&issuer, None).tls().build())
        .await
        .assert_ok();
}

// --- Trusted proxies: X-Forwarded-*.

#[tokio::test]
async fn x_forwarded_proto_from_a_trusted_proxy_is_honoured_both_ways() {
    let issuer = issuer();
    let layer = https_only(&issuer);
    send(
        &layer,
        req(&issuer, Some(PROXY))
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https")
            .build(),
    )
    .await
    .assert_ok();
    // The proxy says the client came over plain HTTP, even though the proxy's own connection
    // is TLS.
    send(
        &layer,
        req(&issuer, Some(PROXY))
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "http")
            .tls()
            .build(),
    )
    .await
    .assert_insecure("https required");
}

#[tokio::test]
async fn x_forwarded_proto_from_an_untrusted_peer_is_ignored_both_ways() {
    let issuer = issuer();
    let layer = https_only(&issuer);
    // Spoofed `https` over a plain connection: refused.
    send(
        &layer,
        req(&issuer, Some(REMOTE))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-for", "10.0.0.3")
            .header("forwarded", "for=10.0.0.3;proto=https")
            .build(),
    )
    .await
    .assert_insecure("https required");
    // A stray `http` over TLS does not downgrade the connection either.
    send(
        &layer,
        req(&issuer, Some(REMOTE))
            .header("x-forwarded-proto", "http")
            .tls()
            .build(),
    )
    .await
    .assert_ok();
    // Nor does a malformed one make a 400.
    send(
        &layer,
        req(&issuer, Some(REMOTE))
            .header("x-forwarded-for", "garbage")
            .tls()
            .build(),
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn several_hops_are_walked_from_the_right() {
    let issuer = issuer();
    let layer = https_only(&issuer);
    // client --https--> 10.0.0.7 --http--> 10.0.0.2 --> us
    send(
        &layer,
        req(&issuer, Some(PROXY))
            .header("x-forwarded-for", "203.0.113.9, 10.0.0.7")
            .header("x-forwarded-proto", "https, http")
            .build(),
    )
    .await
    .assert_ok();
    // A client that prepends its own entries cannot choose its hop: the rightmost untrusted
    // entry is the client, with the scheme its proxy recorded.
    send(
        &layer,
        req(&issuer, Some(PROXY))
            .header("x-forwarded-for", "10.9.9.9, 203.0.113.9, 10.0.0.7")
            .header("x-forwarded-proto", "https, http, https")
            .build(),
    )
    .await
    .assert_insecure("https required");
}

#[tokio::test]
async fn a_trusted_proxy_that_does_not_say_the_scheme_is_refused() {
    let issuer = issuer();
    let layer = https_only(&issuer);
    send(
        &layer,
        req(&issuer, Some(PROXY))
            .header("x-forwarded-for", "203.0.113.9")
            .tls()
            .build(),
    )
    .await
    .assert_insecure("https required: the proxy did not forward the scheme");
    // Without any forwarding header, the proxy's own connection is judged.
    send(&layer, req(&issuer, Some(PROXY)).tls().build())
        .await
        .assert_ok();
    send(&layer, req(&issuer, Some(PROXY)).build())
        .await
        .assert_insecure("https required");
}

#[tokio::test]
async fn malformed_forwarding_headers_from_a_trusted_proxy_are_a_400() {
    let issuer = issuer();
    let layer = https_only(&issuer);
    for (name, value, why) in [
        (
            "x-forwarded-for",
            "not-an-address",
            r#"bad X-Forwarded-For entry not-an-address"#,
        ),
        ("x-forwarded-proto", "gopher", "unknown scheme gopher"),
        (
            "x-forwarded-proto",
            "https, http",
            "2 X-Forwarded-Proto entries for 0 X-Forwarded-For entries",
        ),
    ] {
        let res = send(
            &layer,
            req(&issuer, Some(PROXY)).header(name, value).tls().build(),
        )
        .await;
        res.assert_insecure(&format!("malformed forwarding header: {why}"));
    }
}

// --- Trusted proxies: RFC 7239 Forwarded.

fn forwarded_layer(issuer: &TestIssuer) -> BearerAuthLayer {
    BearerAuthLayer::new(jwt(issuer)).realm(REALM).transport(
        TransportPolicy::https_only().trusted_proxies(proxies().header(ForwardedHeader::Forwarded)),
    )
}

#[tokio::test]
async fn forwarded_header_variants() {
    let issuer = issuer();
    let layer = forwarded_layer(&issuer);
    for (value, ok) in [
        ("for=203.0.113.9;proto=https", true),
        ("For=203.0.113.9;Proto=HTTPS;by=10.0.0.2", true),
        (r#"for="[2001:db8:cafe::17]:4711";proto=https"#, true),
        (r#"for="203.0.113.9:443";proto="https""#, true),
        ("for=unknown;proto=https", true),
        ("for=_hidden;proto=https", true),
        ("for=203.0.113.9;proto=http", false),
        // Two hops, the inner proxy trusted: the client's own hop decides.
        ("for=203.0.113.9;proto=https, for=10.0.0.7;proto=http", true),
        (
            "for=203.0.113.9;proto=http, for=10.0.0.7;proto=https",
            false,
        ),
        // Entries a client forged on the left are never reached.
        (
            "for=127.0.0.1;proto=https, for=203.0.113.9;proto=http",
            false,
        ),
        // The scheme of the client's hop is not stated.
        ("for=203.0.113.9, for=10.0.0.7;proto=https", false),
    ] {
        let res = send(
            &layer,
            req(&issuer, Some(PROXY)).header("forwarded", value).build(),
        )
        .await;
        if ok {
            res.assert_ok();
        } else {
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{value}: {res:?}");
            assert!(res.inner.is_none());
        }
    }
}

#[tokio::test]
async fn forwarded_over_several_header_lines() {
    let issuer = issuer();
    let layer = forwarded_layer(&issuer);
    send(
        &layer,
        req(&issuer, Some(PROXY))
            .header("forwarded", "for=203.0.113.9;proto=https")
            .header("forwarded", "for=10.0.0.7;proto=http")
            .build(),
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn only_the_configured_header_is_read() {
    let issuer = issuer();
    let layer = forwarded_layer(&issuer);
    // The proxy writes `Forwarded`; an `X-Forwarded-Proto` passed through from the client
    // proves nothing.
    send(
        &layer,
        req(&issuer, Some(PROXY))
            .header("x-forwarded-proto", "https")
            .build(),
    )
    .await
    .assert_insecure("https required");
    // And the other way round.
    let layer = https_only(&issuer);
    send(
        &layer,
        req(&issuer, Some(PROXY))
            .header("forwarded", "for=203.0.113.9;proto=https")
            .build(),
    )
    .await
    .assert_insecure("https required");
}

#[tokio::test]
async fn malformed_forwarded_from_a_trusted_proxy_is_a_400_and_ignored_otherwise() {
    let issuer = issuer();
    let layer = forwarded_layer(&issuer);
    for value in [
        "for=203.0.113.9;proto=https;proto=http",
        "for=[2001:db8::1];proto=https",
        r#"for="203.0.113.9;proto=https"#,
        "for=203.0.113.9 proto=https",
    ] {
        let res = send(
            &layer,
            req(&issuer, Some(PROXY))
                .header("forwarded", value)
                .tls()
                .build(),
        )
        .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{value}: {res:?}");
        assert!(
            res.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("malformed forwarding header"),
            "{value}: {res:?}"
        );
        assert!(res.inner.is_none());
        // The same header from an untrusted peer is ignored.
        send(
            &layer,
            req(&issuer, Some(REMOTE))
                .header("forwarded", value)
                .tls()
                .build(),
        )
        .await
        .assert_ok();
    }
}

#[tokio::test]
async fn grpc_calls_get_unauthenticated() {
    let issuer = issuer();
    let layer = https_only(&issuer);
    let res = send(
        &layer,
        req(&issuer, Some(REMOTE))
            .header("content-type", "application/grpc")
            .build(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["grpc-status"], "16");
    assert_eq!(res.headers["grpc-message"], "https required");
    assert!(res.inner.is_none());
}

// --- Sensitive headers and stripping.

#[tokio::test]
async fn credential_headers_are_marked_sensitive() {
    let issuer = issuer();
    let layer = BearerAuthLayer::new(jwt(&issuer))
        .realm(REALM)
        .extractor(Extractor::new().cookie("at"));
    let headers = send(
        &layer,
        req(&issuer, None)
            .header("cookie", "theme=dark")
            .header("dpop", "proof")
            .header("x-other", "v")
            .build(),
    )
    .await
    .assert_ok()
    .clone();
    assert!(headers["authorization"].is_sensitive());
    assert!(headers["cookie"].is_sensitive());
    assert!(headers["dpop"].is_sensitive());
    assert!(!headers["x-other"].is_sensitive());
}

/// Every value of every credential header, however the fields are ordered (a guard for the
/// single pass over the fields that marks them).
#[tokio::test]
async fn every_value_of_a_credential_header_is_marked_sensitive() {
    let issuer = issuer();
    let name = HeaderName::from_static("x-api-token");
    let layer = BearerAuthLayer::new(jwt(&issuer))
        .realm(REALM)
        .extractor(Extractor::new().cookie("at").header(name.clone()));
    let r = Request::builder()
        .uri("/r")
        .header("x-other", "v")
        .header(&name, token(&issuer))
        .header("cookie", "theme=dark")
        .header("dpop", "proof-1")
        .header("cookie", "lang=en")
        .header("dpop", "proof-2")
        .body(Full::default())
        .unwrap();
    let headers = send(&layer, r).await.assert_ok().clone();
    assert!(headers[&name].is_sensitive());
    for credential in ["cookie", "dpop"] {
        let values: Vec<_> = headers.get_all(credential).iter().collect();
        assert_eq!(values.len(), 2, "{credential}");
        assert!(values.iter().all(|v| v.is_sensitive()), "{credential}");
    }
    assert!(!headers["x-other"].is_sensitive());
}

#[tokio::test]
async fn cookie_is_left_alone_when_the_extractor_does_not_read_cookies() {
    let issuer = issuer();
    let layer = BearerAuthLayer::new(jwt(&issuer)).realm(REALM);
    let headers = send(
        &layer,
        req(&issuer, None).header("cookie", "theme=dark").build(),
    )
    .await
    .assert_ok()
    .clone();
    assert!(headers["authorization"].is_sensitive());
    assert!(!headers["cookie"].is_sensitive());
}

#[tokio::test]
async fn strip_removes_the_authorization_header() {
    let issuer = issuer();
    let keep = BearerAuthLayer::new(jwt(&issuer)).realm(REALM);
    let strip = keep.clone().strip_authorization(true);
    let headers = send(&keep, req(&issuer, None).build()).await;
    assert!(headers.assert_ok().contains_key("authorization"));
    let res = send(&strip, req(&issuer, None).header("x-other", "v").build()).await;
    let headers = res.assert_ok();
    assert!(!headers.contains_key("authorization"));
    assert_eq!(headers["x-other"], "v");
}

#[tokio::test]
async fn strip_removes_the_credential_cookie_header_and_query_parameter() {
    let issuer = issuer();
    let t = token(&issuer);
    let layer = BearerAuthLayer::new(jwt(&issuer))
        .realm(REALM)
        .extractor(
            Extractor::new()
                .cookie("at")
                .header(HeaderName::from_static("x-api-token"))
                .query(true),
        )
        .strip_authorization(true);

    let r = Request::builder()
        .uri("/r")
        .header("cookie", format!("theme=dark; at={t}; lang=en"))
        .body(Full::default())
        .unwrap();
    let res = send(&layer, r).await;
    let headers = res.assert_ok();
    assert_eq!(headers["cookie"], "theme=dark; lang=en");
    assert!(headers["cookie"].is_sensitive());

    let r = Request::builder()
        .uri("/r")
        .header("cookie", format!("at={t}"))
        .body(Full::default())
        .unwrap();
    let res = send(&layer, r).await;
    assert!(!res.assert_ok().contains_key("cookie"));

    let r = Request::builder()
        .uri("/r")
        .header("x-api-token", &t)
        .body(Full::default())
        .unwrap();
    let res = send(&layer, r).await;
    assert!(!res.assert_ok().contains_key("x-api-token"));

    let r = Request::builder()
        .uri(format!("/r?page=2&access_token={t}"))
        .body(Full::default())
        .unwrap();
    let res = send(&layer, r).await;
    res.assert_ok();
    let uri = &res.inner.as_ref().unwrap().1;
    assert_eq!(uri, "/r?page=2");
    assert!(!uri.to_string().contains(&t[..20]));
}

// --- A real axum server on loopback.

struct AxumServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AxumServer {
    async fn start(layer: BearerAuthLayer) -> Self {
        let app = Router::new()
            .route(
                "/r",
                get(|headers: HeaderMap| async move {
                    // The token never reaches the handler.
                    format!("authorization={}", headers.contains_key("authorization"))
                }),
            )
            .layer(layer);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
        );
        Self { addr, stop, task }
    }

    async fn get(&self, token: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let mut b = Request::builder()
            .uri(format!("http://{}/r", self.addr))
            .header("authorization", format!("Bearer {token}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let res = tokio::time::timeout(STEP, client.request(b.body(Full::default()).unwrap()))
            .await
            .expect("answer in time")
            .expect("request succeeds");
        let status = res.status();
        let body = tokio::time::timeout(STEP, res.into_body().collect())
            .await
            .expect("body in time")
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
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

#[tokio::test]
async fn real_axum_server_judges_the_connect_info_peer() {
    let issuer = issuer();
    let t = token(&issuer);

    // Loopback exempt by default: plain HTTP from 127.0.0.1 passes, and the handler does not
    // see the stripped header.
    let server = AxumServer::start(https_only(&issuer).strip_authorization(true)).await;
    assert_eq!(
        server.get(&t, &[]).await,
        (StatusCode::OK, "authorization=false".to_owned())
    );
    server.shutdown().await;

    // Strict: the loopback peer's plain connection is refused…
    let strict = |proxies: TrustedProxies| {
        BearerAuthLayer::new(jwt(&issuer)).realm(REALM).transport(
            TransportPolicy::https_only()
                .allow_loopback(false)
                .trusted_proxies(proxies),
        )
    };
    let server = AxumServer::start(strict(TrustedProxies::none())).await;
    let (status, body) = server.get(&t, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("https required"), "{body}");
    // …and its `X-Forwarded-Proto` is ignored: it is not a trusted proxy.
    let (status, _) = server.get(&t, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await;

    // With 127.0.0.1 as a trusted proxy, its `X-Forwarded-Proto` decides, both ways.
    let server = AxumServer::start(strict(TrustedProxies::new(["127.0.0.1"]).unwrap())).await;
    let forwarded = |proto| {
        [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", proto),
        ]
    };
    assert_eq!(
        server.get(&t, &forwarded("https")).await,
        (StatusCode::OK, "authorization=true".to_owned())
    );
    let (status, _) = server.get(&t, &forwarded("http")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}
