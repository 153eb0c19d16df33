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
    /// Moved by every revocation made through this store, before and after it is written:
    /// an answer fetched under an older generation is never used.
    generation: AtomicU64,
}

/// Voids every cached answer when made to, and when dropped.
struct VoidOnDrop(Option<Arc<Answers>>);

impl VoidOnDrop {
    fn void(&self) {
        if let Some(a) = &self.0 {
            a.generation.fetch_add(1, Ordering::AcqRel);
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
    generation: u64,
}

impl Answers {
    fn fresh(&self, key: &[u8; 16]) -> bool {
        self.map.get(key).is_some_and(|a| {
            a.generation == self.generation.load(Ordering::Acquire)
                && quanta::Instant::now().saturating_duration_since(a.at) < self.max_age
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
    /// takes effect here at once. "Revoked" answers are never cached (they are final anyway).
    /// Off by default; `max_age` of zero turns it off.
    #[must_use]
    pub fn cache_answers(mut self, max_age: Duration, max_entries: usize) -> Self {
        self.answers = (!max_age.is_zero() && max_entries > 0).then(|| {
            Arc::new(Answers {
                max_age,
                map: quick_cache::sync::Cache::new(max_entries),
                generation: AtomicU64::new(0),
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
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(self.prefix.len() + 32);
        out.push_str(&self.prefix);
        for b in digest {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
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
        // Both taken before asking: the generation (a revocation through this store while Redis
        // answers makes the answer unusable) and the time (an answer is as old as its question).
        let remember = cached.map(|(answers, key)| {
            let answer = Answer {
                at: quanta::Instant::now(),
                generation: answers.generation.load(Ordering::Acquire),
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
        let key = self.key(key_of(&revocation));
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
        // Every cached answer is void from now on, and again once the write is over, done or
        // dropped half-way (an answer fetched while it was under way may predate it).
        let again = VoidOnDrop(self.answers.clone());
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
