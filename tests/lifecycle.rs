//! Token lifecycle (ACCEPTANCE §7): revocation (memory and a real shared Redis), idle tokens,
//! maximum age, static API keys and the chain, through `oneshot`.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::json;
use support::{REALM, RedisServer, bearer, issuer, jwt, send};
use tower_bearer::BearerAuthLayer;
use tower_bearer::clock::ManualClock;
use tower_bearer::lifecycle::{Lifecycle, MemoryRevocations, RedisRevocations, Revocation};
use tower_bearer::testing::{Claims, claims};
use tower_bearer::validate::{Chain, StaticTokens};

fn c(sub: &str) -> Claims {
    claims(sub, "", Duration::from_secs(600)).aud("api")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn layer(l: &Lifecycle) -> BearerAuthLayer {
    BearerAuthLayer::new(l.clone()).realm(REALM)
}

#[tokio::test]
async fn revocation_by_token_id() {
    let store = MemoryRevocations::default();
    let lc = Lifecycle::new(jwt()).revocations(store);
    let (a, b) = (issuer().mint(c("alice")), issuer().mint(c("alice")));
    let p = send(&layer(&lc), bearer(&a)).await.assert_ok().clone();
    lc.revoke_token(&p).await.unwrap();
    send(&layer(&lc), bearer(&a))
        .await
        .assert_invalid_token("token revoked");
    // Another token of the same subject (another jti) is not affected.
    send(&layer(&lc), bearer(&b)).await.assert_ok();
}

#[tokio::test]
async fn revocation_by_fingerprint_covers_ecdsa_twins() {
    let lc = Lifecycle::new(jwt()).revocations(MemoryRevocations::default());
    let token = issuer().mint(c("alice").remove("jti"));
    let p = send(&layer(&lc), bearer(&token)).await.assert_ok().clone();
    assert_eq!(p.token_id(), None);
    lc.revoke_token(&p).await.unwrap();
    // The high-S twin of the token: same signed content, other signature bytes.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = B64.decode(sig).unwrap();
    let (r, s) = sig.split_at(32);
    let mut twin_s = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        twin_s[i] = d as u8;
    }
    let twin = format!("{input}.{}", B64.encode([r, &twin_s[..]].concat()));
    for t in [&token, &twin] {
        send(&layer(&lc), bearer(t))
            .await
            .assert_invalid_token("token revoked");
    }
}

#[tokio::test]
async fn revocation_by_subject_covers_tokens_issued_before() {
    let lc = Lifecycle::new(jwt()).revocations(MemoryRevocations::default());
    let old = issuer().mint(c("alice").set("iat", now() - 100));
    let newer = issuer().mint(c("alice").set("iat", now() + 5));
    let other = issuer().mint(c("bob").set("iat", now() - 100));
    lc.revoke(Revocation::Subject {
        issuer: None,
        subject: "alice".into(),
        issued_before: SystemTime::now(),
        until: SystemTime::now() + Duration::from_secs(3600),
    })
    .await
    .unwrap();
    send(&layer(&lc), bearer(&old))
        .await
        .assert_invalid_token("token revoked");
    send(&layer(&lc), bearer(&newer)).await.assert_ok();
    send(&layer(&lc), bearer(&other)).await.assert_ok();
}

#[test]
fn memory_entries_expire_with_the_token_and_the_list_is_bounded() {
    use tower_bearer::lifecycle::RevocationStore;
    let store = MemoryRevocations::new(2);
    let past = SystemTime::now() - Duration::from_secs(1);
    let soon = SystemTime::now() + Duration::from_secs(60);
    let rev = |jti: &str, until| Revocation::TokenId {
        jti: jti.into(),
        until,
    };
    futures_executor::block_on(store.revoke(rev("expired", past))).unwrap();
    assert_eq!(store.len(), 0, "an already expired token needs no entry");
    futures_executor::block_on(store.revoke(rev("a", soon))).unwrap();
    futures_executor::block_on(store.revoke(rev("b", soon))).unwrap();
    assert_eq!(store.len(), 2);
    // Full: refused, never an eviction that would un-revoke a token.
    assert!(futures_executor::block_on(store.revoke(rev("c", soon))).is_err());
}

#[tokio::test]
async fn idle_tokens_are_refused() {
    let clock = ManualClock::new();
    let lc = Lifecycle::new(jwt())
        .idle_timeout(Duration::from_secs(300))
        .clock(clock.clone());
    let token = issuer().mint(claims("alice", "", Duration::from_secs(3600)).aud("api"));
    send(&layer(&lc), bearer(&token)).await.assert_ok();
    clock.advance(Duration::from_secs(299));
    send(&layer(&lc), bearer(&token)).await.assert_ok();
    clock.advance(Duration::from_secs(299));
    send(&layer(&lc), bearer(&token)).await.assert_ok();
    clock.advance(Duration::from_secs(301));
    let out = send(&layer(&lc), bearer(&token)).await;
    out.assert_invalid_token("token idle for too long");
    // It stays refused; another token is unaffected.
    clock.advance(Duration::from_secs(1));
    send(&layer(&lc), bearer(&token))
        .await
        .assert_invalid_token("token idle for too long");
    send(&layer(&lc), bearer(&issuer().mint(c("alice"))))
        .await
        .assert_ok();

    // Uses less than a second apart are recorded once: the timeout may end a token up to a
    // second early, never late.
    let bob = issuer().mint(c("bob"));
    send(&layer(&lc), bearer(&bob)).await.assert_ok();
    clock.advance(Duration::from_millis(500));
    send(&layer(&lc), bearer(&bob)).await.assert_ok();
    clock.advance(Duration::from_millis(299_501));
    send(&layer(&lc), bearer(&bob))
        .await
        .assert_invalid_token("token idle for too long");
    let carol = issuer().mint(c("carol"));
    send(&layer(&lc), bearer(&carol)).await.assert_ok();
    clock.advance(Duration::from_secs(1));
    send(&layer(&lc), bearer(&carol)).await.assert_ok();
    clock.advance(Duration::from_secs(300));
    send(&layer(&lc), bearer(&carol)).await.assert_ok();
}

#[tokio::test]
async fn maximum_age_since_iat() {
    let lc = Lifecycle::new(jwt()).max_age(Duration::from_secs(3600));
    send(
        &layer(&lc),
        bearer(&issuer().mint(c("a").set("iat", now() - 3000))),
    )
    .await
    .assert_ok();
    for token in [
        issuer().mint(c("a").set("iat", now() - 4000)),
        issuer().mint(c("a").remove("iat")),
    ] {
        send(&layer(&lc), bearer(&token))
            .await
            .assert_invalid_token("token too old");
    }
}

#[tokio::test]
async fn redis_revocation_is_shared_between_instances() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let store = |url: String| async move { RedisRevocations::connect(&url).await.unwrap() };
    let a = Lifecycle::new(jwt()).revocations(store(redis.url()).await);
    let b = Lifecycle::new(jwt()).revocations(store(redis.url()).await);
    let token = issuer().mint(c("alice"));
    let p = send(&layer(&b), bearer(&token)).await.assert_ok().clone();
    a.revoke_token(&p).await.unwrap();
    send(&layer(&b), bearer(&token))
        .await
        .assert_invalid_token("token revoked");
    send(&layer(&a), bearer(&issuer().mint(c("alice"))))
        .await
        .assert_ok();

    // Nothing outlives the token, and nothing is stored in clear.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert!(!keys[0].contains(p.token_id().unwrap()) && !keys[0].contains("alice"));
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((590..=602).contains(&ttl), "{ttl}");

    // Redis down: fail closed (503) by default, or open when chosen.
    let open = Lifecycle::new(jwt())
        .revocations(RedisRevocations::connect(&redis.url()).await.unwrap())
        .fail_open(true);
    redis.kill();
    let started = std::time::Instant::now();
    let out = send(&layer(&b), bearer(&issuer().mint(c("bob")))).await;
    assert_eq!(out.status, 503);
    assert!(!out.called);
    send(&layer(&open), bearer(&issuer().mint(c("bob"))))
        .await
        .assert_ok();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "decided at once, no hang"
    );
}

/// How many `MGET`s (revocation checks) the Redis server has answered since the last reset.
async fn mget_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_mget:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn redis_answers_cached_for_a_bounded_time() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let connect = || async { RedisRevocations::connect(&redis.url()).await.unwrap() };
    let a = Lifecycle::new(jwt()).revocations(connect().await);
    let cached = |max_age| async move {
        Lifecycle::new(jwt()).revocations(connect().await.cache_answers(max_age, 100))
    };
    let b = cached(Duration::from_secs(60)).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();

    // One round trip per token per interval, not per request.
    let token = issuer().mint(c("alice"));
    let before = mget_calls(&mut conn).await;
    for _ in 0..20 {
        send(&layer(&b), bearer(&token)).await.assert_ok();
    }
    assert_eq!(mget_calls(&mut conn).await - before, 1);

    // Revoked through another instance: this one sees it once its answer is `max_age` old.
    let short = cached(Duration::from_millis(300)).await;
    let p = send(&layer(&short), bearer(&token))
        .await
        .assert_ok()
        .clone();
    a.revoke_token(&p).await.unwrap();
    send(&layer(&a), bearer(&token))
        .await
        .assert_invalid_token("token revoked");
    send(&layer(&b), bearer(&token)).await.assert_ok();
    tokio::time::sleep(Duration::from_millis(350)).await;
    send(&layer(&short), bearer(&token))
        .await
        .assert_invalid_token("token revoked");

    // Revoked through this store: at once, cached answer or not.
    let bob = issuer().mint(c("bob"));
    let p = send(&layer(&b), bearer(&bob)).await.assert_ok().clone();
    b.revoke_token(&p).await.unwrap();
    send(&layer(&b), bearer(&bob))
        .await
        .assert_invalid_token("token revoked");

    // ... and drops only the answers that may concern it: other callers' stay cached (each
    // answer names up to three keys; a revocation voids one stripe in 64 of them).
    let others: Vec<String> = (0..20)
        .map(|i| issuer().mint(c(&format!("user{i}"))))
        .collect();
    for t in &others {
        send(&layer(&b), bearer(t)).await.assert_ok();
    }
    let erin = issuer().mint(c("erin"));
    let p = send(&layer(&b), bearer(&erin)).await.assert_ok().clone();
    let before = mget_calls(&mut conn).await;
    // "Log out everywhere" for Erin: her cached answer is keyed by her token, voided through
    // her subject's key.
    b.revoke(Revocation::Subject {
        issuer: p.issuer().map(str::to_owned),
        subject: "erin".into(),
        issued_before: SystemTime::now() + Duration::from_secs(1),
        until: SystemTime::now() + Duration::from_secs(3600),
    })
    .await
    .unwrap();
    for t in &others {
        send(&layer(&b), bearer(t)).await.assert_ok();
    }
    let asked = mget_calls(&mut conn).await - before;
    assert!(
        asked <= 8,
        "{asked} of 20 cached answers dropped by one revocation"
    );
    send(&layer(&b), bearer(&erin))
        .await
        .assert_invalid_token("token revoked");

    // Redis down: a fresh answer still serves its token; any other token fails closed.
    let carol = issuer().mint(c("carol"));
    send(&layer(&b), bearer(&carol)).await.assert_ok();
    redis.kill();
    send(&layer(&b), bearer(&carol)).await.assert_ok();
    let out = send(&layer(&b), bearer(&issuer().mint(c("dave")))).await;
    assert_eq!(out.status, 503);
    assert!(!out.called);
}

#[tokio::test]
async fn static_api_keys_and_the_chain() {
    let key = "svc-key-0123456789-abcdefghijkl";
    let file = format!(
        r#"[{{"sha256": "{}", "sub": "billing", "scope": "items:read"}}]"#,
        StaticTokens::digest_hex(key)
    );
    assert!(!file.contains(key));
    let keys = StaticTokens::builder().from_json(&file).build().unwrap();
    let l = BearerAuthLayer::new(keys.clone()).realm(REALM);
    let p = send(&l, bearer(key)).await.assert_ok().clone();
    assert_eq!(p.subject(), Some("billing"));
    assert!(p.scopes().contains("items:read"));
    send(&l, bearer("svc-key-0123456789-abcdefghijkL"))
        .await
        .assert_invalid_token("unknown api key");
    assert!(
        StaticTokens::builder()
            .token("short", json!({}))
            .build()
            .is_err()
    );
    assert!(
        StaticTokens::builder()
            .from_json("[{\"sub\": \"x\"}]")
            .build()
            .is_err()
    );

    let chain = Chain::new().jwt(jwt()).fallback(keys);
    let l = BearerAuthLayer::new(Lifecycle::new(chain).revocations(MemoryRevocations::default()))
        .realm(REALM);
    send(&l, bearer(key)).await.assert_ok();
    send(&l, bearer(&issuer().mint(c("alice"))))
        .await
        .assert_ok();
    send(&l, bearer("eyJhbGciOiJub25lIn0.e30.x"))
        .await
        .assert_invalid_token("algorithm not allowed");
    send(&l, bearer("some-opaque-token-nobody-knows"))
        .await
        .assert_invalid_token("unknown api key");
}
