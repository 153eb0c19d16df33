use std::fmt;
use std::time::{Duration, SystemTime};

use redis::aio::ConnectionLike;

use super::replay::{ReplayCheck, ReplayKey, ReplayStore};
use crate::error::ConfigError;
use crate::rate_limit::StoreError;

/// DPoP `jti`s in Redis (feature `redis`), shared by every instance using the server: a proof
/// used on one instance is a replay on all the others.
///
/// One round trip per proof: `SET key 1 NX EX ttl`, atomic, with the entry expiring when the
/// proof leaves the iat window. Keys are `tower-bearer:dpop:` and a hex digest of the proof
/// key's thumbprint and the `jti`. Bounded by a timeout (default 250 ms); a failure or
/// timeout makes the layer answer 503, never let a possible replay through.
pub struct RedisReplay<C> {
    conn: C,
    timeout: Duration,
    prefix: String,
}

impl<C> fmt::Debug for RedisReplay<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplay")
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisReplay<redis::aio::ConnectionManager> {
    /// Connects to `url` through a self-healing `ConnectionManager`.
    pub async fn connect(url: &str) -> Result<Self, ConfigError> {
        let store = crate::rate_limit::RedisStore::connect(url).await?;
        Ok(Self::new(store.connection().clone()))
    }
}

impl<C> RedisReplay<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store over an existing connection (single node or cluster).
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            timeout: Duration::from_millis(250),
            prefix: "tower-bearer:dpop:".to_owned(),
        }
    }

    /// The limit on one check (default 250 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key prefix (default `tower-bearer:dpop:`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

impl<C> ReplayStore for RedisReplay<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn insert_new(&self, key: ReplayKey, _now: SystemTime, ttl: Duration) -> ReplayCheck {
        let key = format!("{}{}", self.prefix, key.to_hex());
        let ttl = ttl.as_secs().max(1);
        let mut conn = self.conn.clone();
        let timeout = self.timeout;
        ReplayCheck::pending(async move {
            let set: Option<String> = tokio::time::timeout(
                timeout,
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl)
                    .query_async(&mut conn),
            )
            .await
            .map_err(|_| StoreError::new(format!("Redis did not answer within {timeout:?}")))?
            .map_err(|e| StoreError::new(format!("Redis error: {e}")))?;
            Ok(set.is_some())
        })
    }
}
