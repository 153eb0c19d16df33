use std::fmt;
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
/// A check is one round trip (`MGET` of the token-id, fingerprint and subject keys), with no
/// local cache, so there is no staleness window; it is bounded by a timeout (default 250 ms).
/// Entries are written with `SET … EX`, the time until the token would have expired, so
/// nothing outlives the tokens it concerns. Keys are `tower-bearer:rv:` and a hex digest: no
/// token, token id or subject is stored in clear.
pub struct RedisRevocations<C> {
    conn: C,
    timeout: Duration,
    prefix: String,
}

impl<C> fmt::Debug for RedisRevocations<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocations")
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
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
        }
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
        let keys: Vec<String> = keys_of(p)
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
            Ok(revoked(&p, get(0).is_some(), get(1).is_some(), get(2)))
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
        Box::pin(async move {
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
