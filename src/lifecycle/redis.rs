use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use redis::aio::ConnectionLike;

use super::store::{
    Lookup, Revocation, RevocationStore, WriteFuture, key_of, keys_of, revoked, unix,
};
use crate::error::ConfigError;
use crate::principal::Principal;
use crate::rate_limit::StoreError;

/// Revocations in Redis (feature `redis`), shared by every instance that uses the server: a
/// revocation made on one instance takes effect on the others at their next request.
///
/// A check is one round trip (`MGET` of the token-id, fingerprint and subject keys), bounded
/// by a timeout (default 250 ms). By default nothing is cached, so there is no staleness
/// window; [`cache_answers`](Self::cache_answers) trades a bounded one for one round trip per
/// token per interval instead of one per request. Entries are written with `SET … EX`, the
/// time until the token would have expired, so nothing outlives the tokens it concerns. Keys
/// are `tower-bearer:rv:` and a hex digest: no token, token id or subject is stored in clear.
pub struct RedisRevocations<C> {
    conn: C,
    timeout: Duration,
    prefix: String,
    answers: Option<Arc<Answers>>,
}

impl<C> fmt::Debug for RedisRevocations<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocations")
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .field("cache_answers", &self.answers.as_ref().map(|a| a.max_age))
            .finish_non_exhaustive()
    }
}

/// "Not revoked" answers from Redis, each used for at most `max_age`, keyed by the token's
/// fingerprint key (a digest of verified data: it names one token, and so its `jti`, `sub`
/// and `iat`).
struct Answers {
    max_age: Duration,
    map: quick_cache::sync::Cache<[u8; 16], Answer>,
    /// Generations of the revocation keys, one per stripe of the key space. A revocation made
    /// through this store moves its key's stripe, before and after it is written; an answer
    /// taken under an older generation of the stripe of any of its token's keys is never
    /// used. A revocation so voids the answers that may concern it (its key's stripe: about
    /// 3 in 64 of the others), not all of them.
    generations: [AtomicU64; STRIPES],
}

/// Stripes of [`Answers::generations`].
const STRIPES: usize = 64;

/// The stripe of a revocation key (a digest: its bytes are uniform).
fn stripe(key: &[u8; 16]) -> usize {
    usize::from(key[0]) % STRIPES
}

/// Voids the cached answers that may concern one revocation key when made to, and when
/// dropped.
struct VoidOnDrop(Option<(Arc<Answers>, usize)>);

impl VoidOnDrop {
    fn void(&self) {
        if let Some((a, stripe)) = &self.0 {
            a.generations[*stripe].fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for VoidOnDrop {
    fn drop(&mut self) {
        self.void();
    }
}

#[derive(Clone, Copy)]
struct Answer {
    at: quanta::Instant,
    /// For each of the token's revocation keys, its stripe and that stripe's generation when
    /// the question was asked.
    stamps: [Option<(u8, u64)>; 3],
}

impl Answers {
    fn fresh(&self, key: &[u8; 16]) -> bool {
        self.map.get(key).is_some_and(|a| {
            a.stamps.iter().flatten().all(|&(stripe, generation)| {
                self.generations[usize::from(stripe)].load(Ordering::Acquire) == generation
            }) && quanta::Instant::now().saturating_duration_since(a.at) < self.max_age
        })
    }

    /// The stamps of a question about a token with these keys, taken before it is asked.
    fn stamps(&self, keys: &[Option<[u8; 16]>; 3]) -> [Option<(u8, u64)>; 3] {
        keys.map(|k| {
            k.map(|k| {
                let stripe = stripe(&k);
                let generation = self.generations[stripe].load(Ordering::Acquire);
                (stripe as u8, generation)
            })
        })
    }
}

impl RedisRevocations<redis::aio::ConnectionManager> {
    /// Connects to `url` through a self-healing `ConnectionManager`.
    pub async fn connect(url: &str) -> Result<Self, ConfigError> {
        let store = crate::rate_limit::RedisStore::connect(url).await?;
        Ok(Self::new(store.connection().clone()))
    }
}

impl<C> RedisRevocations<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store over an existing connection (single node or cluster).
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            timeout: Duration::from_millis(250),
            prefix: "tower-bearer:rv:".to_owned(),
            answers: None,
        }
    }

    /// Keeps each "not revoked" answer for up to `max_age`, for at most `max_entries` tokens
    /// (least recently useful first out): a token used many times a second costs one round
    /// trip per `max_age` instead of one per request, and keeps working for up to `max_age`
    /// while Redis is unreachable.
    ///
    /// The price is a staleness window: a revocation made through *another* instance (or
    /// straight in Redis) takes effect here up to `max_age` later. One made through this store
    /// takes effect here at once, and drops only the cached answers that may concern it
    /// (about 3 in 64 of the others), so frequent logouts cost other callers little. "Revoked" answers are never cached (they are final anyway).
    /// Off by default; `max_age` of zero turns it off.
    #[must_use]
    pub fn cache_answers(mut self, max_age: Duration, max_entries: usize) -> Self {
        self.answers = (!max_age.is_zero() && max_entries > 0).then(|| {
            Arc::new(Answers {
                max_age,
                map: quick_cache::sync::Cache::new(max_entries),
                generations: std::array::from_fn(|_| AtomicU64::new(0)),
            })
        });
        self
    }

    /// The limit on one check or write (default 250 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn key(&self, digest: [u8; 16]) -> String {
        crate::hash::prefixed_hex(&self.prefix, &digest)
    }
}

impl<C> RevocationStore for RedisRevocations<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn is_revoked(&self, p: &Principal) -> Lookup {
        let digests = keys_of(p);
        // The fingerprint key is always there; it names this one token.
        let cached = self.answers.as_ref().zip(digests[1]);
        if let Some((answers, key)) = &cached
            && answers.fresh(key)
        {
            return Lookup::ready(Ok(false));
        }
        // Both taken before asking: the generations (a revocation through this store while
        // Redis answers makes the answer unusable) and the time (an answer is as old as its
        // question).
        let remember = cached.map(|(answers, key)| {
            let answer = Answer {
                at: quanta::Instant::now(),
                stamps: answers.stamps(&digests),
            };
            (answers.clone(), key, answer)
        });
        let keys: Vec<String> = digests
            .iter()
            .map(|k| k.map_or_else(|| format!("{}-", self.prefix), |d| self.key(d)))
            .collect();
        let mut conn = self.conn.clone();
        let timeout = self.timeout;
        let p = p.clone();
        Lookup::pending(async move {
            let values: Vec<Option<u64>> = tokio::time::timeout(
                timeout,
                redis::cmd("MGET").arg(&keys).query_async(&mut conn),
            )
            .await
            .map_err(|_| StoreError::new(format!("Redis did not answer within {timeout:?}")))?
            .map_err(|e| StoreError::new(format!("Redis error: {e}")))?;
            let get = |i: usize| values.get(i).copied().flatten();
            let is_revoked = revoked(&p, get(0).is_some(), get(1).is_some(), get(2));
            if let Some((answers, key, answer)) = remember
                && !is_revoked
            {
                answers.map.insert(key, answer);
            }
            Ok(is_revoked)
        })
    }

    fn revoke(&self, revocation: Revocation) -> WriteFuture {
        let digest = key_of(&revocation);
        let key = self.key(digest);
        let now = SystemTime::now();
        let ttl = revocation
            .until()
            .duration_since(now)
            .map_or(0, |d| d.as_secs() + 1);
        let value = match &revocation {
            Revocation::Subject { issued_before, .. } => unix(*issued_before),
            _ => 1,
        };
        let mut conn = self.conn.clone();
        let timeout = self.timeout;
        // Every cached answer that may concern this key is void from now on, and again once
        // the write is over, done or dropped half-way (an answer fetched while it was under
        // way may predate it).
        let again = VoidOnDrop(self.answers.clone().map(|a| (a, stripe(&digest))));
        again.void();
        Box::pin(async move {
            let _again = again;
            if ttl == 0 {
                return Ok(());
            }
            tokio::time::timeout(
                timeout,
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<()>(&mut conn),
            )
            .await
            .map_err(|_| StoreError::new(format!("Redis did not answer within {timeout:?}")))?
            .map_err(|e| StoreError::new(format!("Redis error: {e}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Answers {
        Answers {
            max_age: Duration::from_secs(60),
            map: quick_cache::sync::Cache::new(16),
            generations: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// A key in `stripe`.
    fn key(stripe: u8, tag: u8) -> [u8; 16] {
        let mut k = [tag; 16];
        k[0] = stripe;
        k
    }

    fn remember(a: &Answers, keys: [Option<[u8; 16]>; 3]) -> [u8; 16] {
        let fingerprint = keys[1].unwrap();
        let answer = Answer {
            at: quanta::Instant::now(),
            stamps: a.stamps(&keys),
        };
        a.map.insert(fingerprint, answer);
        fingerprint
    }

    #[test]
    fn a_revocation_voids_the_answers_of_its_stripe_only() {
        let a = Arc::new(answers());
        // Alice: a jti, a fingerprint and a subject in stripes 1, 2, 3; Bob's in 4, 5, 6.
        let alice = remember(&a, [Some(key(1, 1)), Some(key(2, 1)), Some(key(3, 1))]);
        let bob = remember(&a, [Some(key(4, 2)), Some(key(5, 2)), Some(key(6, 2))]);
        assert!(a.fresh(&alice) && a.fresh(&bob));

        // Alice's subject revoked (any key of stripe 3: the stripe is all that counts).
        VoidOnDrop(Some((a.clone(), stripe(&key(3, 9))))).void();
        assert!(!a.fresh(&alice));
        assert!(a.fresh(&bob));

        // An answer asked before a revocation and stored after it is void too.
        let keys = [None, Some(key(7, 3)), Some(key(8, 3))];
        let stamps = a.stamps(&keys);
        drop(VoidOnDrop(Some((a.clone(), 8))));
        let carol = keys[1].unwrap();
        a.map.insert(
            carol,
            Answer {
                at: quanta::Instant::now(),
                stamps,
            },
        );
        assert!(!a.fresh(&carol));
        assert!(a.fresh(&bob));
        // Asked again after it: fresh.
        let carol = remember(&a, keys);
        assert!(a.fresh(&carol));
    }

    #[test]
    fn answers_age_out() {
        let mut a = answers();
        a.max_age = Duration::ZERO;
        let k = remember(&a, [None, Some(key(1, 1)), None]);
        assert!(!a.fresh(&k));
    }
}
