//! The bearer layer's own scope policy and rate limit (`require_scopes`, `rate_limit`): the
//! same answers as a `ScopeGuardLayer` and a `RateLimitLayer` inside it, from one service.

mod support;

use std::time::Duration;

use support::{REALM, RedisServer, bearer, issuer, jwt, send};
use tower_bearer::BearerAuthLayer;
use tower_bearer::clock::ManualClock;
use tower_bearer::extract::BearerToken;
use tower_bearer::rate_limit::{MemoryStore, Quota, RateLimitLayer, RedisStore};
use tower_bearer::scope::ScopePolicy;
use tower_bearer::testing::claims;
use tower_bearer::validate::{Authenticator, Jwt};

fn token(sub: &str, scope: &str) -> String {
    issuer().mint(claims(sub, scope, Duration::from_secs(600)).aud("api"))
}

fn header<'a>(out: &'a support::Outcome, name: &str) -> &'a str {
    out.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn frozen_limit(burst: u32) -> RateLimitLayer {
    let store = MemoryStore::new().clock(ManualClock::at_unix(1_800_000_000));
    RateLimitLayer::new(Quota::per(Duration::from_secs(10), burst)).store(store)
}

#[tokio::test]
async fn the_scope_policy_refuses_with_the_guards_challenge() {
    let layer = BearerAuthLayer::new(jwt())
        .realm(REALM)
        .require_scopes(ScopePolicy::parse("items:write").unwrap());
    let out = send(&layer, bearer(&token("alice", "items:read"))).await;
    assert_eq!(out.status, 403);
    assert_eq!(
        out.challenge(),
        format!(
            r#"Bearer realm="{REALM}", error="insufficient_scope", error_description="insufficient scope: requires items:write", scope="items:write""#
        )
    );
    assert!(!out.called);
    send(&layer, bearer(&token("alice", "items:read items:write")))
        .await
        .assert_ok();
    // Credentials are still checked first: no token is 401, not 403.
    let out = send(&layer, support::get(None)).await;
    assert_eq!(out.status, 401);
}

#[tokio::test]
async fn the_rate_limit_admits_n_with_the_limiters_fields_then_429() {
    let layer = BearerAuthLayer::new(jwt())
        .realm(REALM)
        .rate_limit(frozen_limit(3));
    let t = token("alice", "");
    // One request per 10/3 s: after each, the quota is whole again in 4, 7, then 10 s.
    for (remaining, reset) in [(2, 4), (1, 7), (0, 10)] {
        let out = send(&layer, bearer(&t)).await;
        out.assert_ok();
        assert_eq!(header(&out, "ratelimit-policy"), r#""default";q=3;w=10"#);
        assert_eq!(
            header(&out, "ratelimit"),
            format!(r#""default";r={remaining};t={reset}"#)
        );
    }
    let out = send(&layer, bearer(&t)).await;
    assert_eq!(out.status, 429);
    assert!(!out.called);
    assert_eq!(header(&out, "retry-after"), "4");
    assert_eq!(header(&out, "ratelimit"), r#""default";r=0;t=10"#);
    assert_eq!(header(&out, "ratelimit-policy"), r#""default";q=3;w=10"#);
    // Another caller has a quota of its own.
    send(&layer, bearer(&token("bob", ""))).await.assert_ok();
}

#[tokio::test]
async fn a_caller_refused_by_the_scope_policy_spends_no_quota() {
    let layer = BearerAuthLayer::new(jwt())
        .realm(REALM)
        .require_scopes(ScopePolicy::parse("items:read").unwrap())
        .rate_limit(frozen_limit(1));
    for _ in 0..3 {
        assert_eq!(send(&layer, bearer(&token("alice", ""))).await.status, 403);
    }
    send(&layer, bearer(&token("alice", "items:read")))
        .await
        .assert_ok();
    assert_eq!(
        send(&layer, bearer(&token("alice", "items:read")))
            .await
            .status,
        429
    );
}

#[tokio::test]
async fn grpc_calls_get_resource_exhausted() {
    let layer = BearerAuthLayer::new(jwt())
        .realm(REALM)
        .rate_limit(frozen_limit(1));
    let t = token("alice", "");
    let grpc = || {
        let mut req = bearer(&t);
        req.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        req
    };
    send(&layer, grpc()).await.assert_ok();
    let out = send(&layer, grpc()).await;
    assert_eq!(out.status, 200);
    assert_eq!(header(&out, "grpc-status"), "8");
    assert_eq!(header(&out, "grpc-message"), "rate limit exceeded");
    assert_eq!(header(&out, "retry-after"), "10");
    assert!(!out.called);
}

/// An authenticator that answers later: the layer's checks run once it has.
#[derive(Clone)]
struct Later(Jwt);

impl Authenticator for Later {
    fn authenticate(&self, token: &BearerToken) -> tower_bearer::validate::Authentication {
        let jwt = self.0.clone();
        let token = token.as_str().to_owned();
        tower_bearer::validate::Authentication::pending(async move {
            tokio::task::yield_now().await;
            jwt.verify(&token)
        })
    }
}

#[tokio::test]
async fn checks_run_after_an_asynchronous_authentication_too() {
    let layer = BearerAuthLayer::new(Later(jwt()))
        .realm(REALM)
        .require_scopes(ScopePolicy::parse("items:read").unwrap())
        .rate_limit(frozen_limit(2));
    let t = token("alice", "items:read");
    for _ in 0..2 {
        let out = send(&layer, bearer(&t)).await;
        out.assert_ok();
        assert!(header(&out, "ratelimit").starts_with(r#""default";r="#));
    }
    assert_eq!(send(&layer, bearer(&t)).await.status, 429);
    assert_eq!(send(&layer, bearer(&token("bob", ""))).await.status, 403);
}

/// With a Redis store the decision is a future: the layer waits for it, exactly N are
/// admitted among concurrent requests, and the fields are the limiter's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_exactly_n_of_many_concurrent_requests() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&redis.url())
        .await
        .unwrap()
        .timeout(Duration::from_secs(5));
    let layer = BearerAuthLayer::new(jwt())
        .realm(REALM)
        .rate_limit(RateLimitLayer::new(Quota::per(Duration::from_secs(3600), 20)).store(store));
    let t = token("alice", "");
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let layer = layer.clone();
            let req = bearer(&t);
            tokio::spawn(async move { send(&layer, req).await })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for task in tasks {
        let out = task.await.unwrap();
        match out.status.as_u16() {
            200 => {
                assert!(out.called);
                assert_eq!(header(&out, "ratelimit-policy"), r#""default";q=20;w=3600"#);
                ok += 1;
            }
            429 => {
                assert!(!out.called);
                limited += 1;
            }
            other => panic!("status {other}"),
        }
    }
    assert_eq!((ok, limited), (20, 180));
}
