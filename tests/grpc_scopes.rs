//! The gRPC method table with a real tonic client and server on 127.0.0.1: two methods with
//! different policies, each allowed, denied (PERMISSION_DENIED) and unauthenticated.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower_bearer::BearerAuthLayer;
use tower_bearer::scope::{MethodScopes, ScopeGuardLayer, ScopePolicy};
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;

const BOUND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn two_methods_two_policies_real_client() {
    let issuer = TestIssuer::rs256().with_kid("k1");
    let jwt = Jwt::builder()
        .key(issuer.key())
        .audience("health")
        .build()
        .unwrap();
    let guard = ScopeGuardLayer::methods(
        MethodScopes::new()
            .method(
                "/grpc.health.v1.Health/Check",
                ScopePolicy::scope("health:read"),
            )
            .method(
                "/grpc.health.v1.Health/Watch",
                ScopePolicy::parse("health:read AND health:watch").unwrap(),
            ),
    )
    .unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder()
            .layer(BearerAuthLayer::new(jwt).realm("grpc"))
            .layer(guard)
            .add_service(health)
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = stopped.await;
            }),
    );

    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(BOUND)
        .timeout(BOUND)
        .connect()
        .await
        .unwrap();
    let token =
        |scope: &str| issuer.mint(claims("svc", scope, Duration::from_secs(600)).aud("health"));
    let request = |token: Option<&str>| {
        let mut req = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        req
    };
    let mut client = HealthClient::new(channel);

    // Check: health:read.
    let reader = token("health:read");
    let watcher = token("health:read health:watch");
    let nobody = token("profile");
    assert!(client.check(request(Some(&reader))).await.is_ok());
    let denied = client.check(request(Some(&nobody))).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(denied.message(), "insufficient scope: requires health:read");
    let unauth = client.check(request(None)).await.unwrap_err();
    assert_eq!(unauth.code(), Code::Unauthenticated);
    let bad = client
        .check(request(Some("not.a.token")))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::Unauthenticated);

    // Watch: health:read AND health:watch.
    let mut stream = client
        .watch(request(Some(&watcher)))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(BOUND, stream.message()).await.unwrap();
    assert!(first.unwrap().is_some());
    drop(stream);
    let denied = client.watch(request(Some(&reader))).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        "insufficient scope: requires health:read AND health:watch"
    );
    let unauth = client.watch(request(None)).await.unwrap_err();
    assert_eq!(unauth.code(), Code::Unauthenticated);

    let _ = stop.send(());
    tokio::time::timeout(BOUND, server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}
