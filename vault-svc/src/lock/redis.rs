//! The Redis lock for replicas: `SET key holder NX PX ttl` to acquire, a
//! fencing token from `INCR`, and release by a Lua compare-and-delete.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Lease, RefreshLock};
use crate::credential::{now_micros, random_id};
use crate::error::Error;

/// Deletes the lock only if it still names this holder.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Seeds a lost counter from the wall clock, then increments it.
const FENCE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('INCR', KEYS[1])";

/// Keeps locks in Redis, shared by every replica.
#[derive(Clone)]
pub struct RedisLock {
    connection: ConnectionManager,
    prefix: String,
    release: Script,
    fence: Script,
}

impl std::fmt::Debug for RedisLock {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisLock")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLock {
    /// Connects to Redis at `url`; every key starts with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(Error::Lock)?;
        let connection = ConnectionManager::new(client).await.map_err(Error::Lock)?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            release: Script::new(RELEASE),
            fence: Script::new(FENCE),
        })
    }

    fn lock_key(&self, name: &str) -> String {
        format!("{}lock:{name}", self.prefix)
    }

    // The fencing counter is the one key without a TTL: it must outlive every
    // lease it numbered.
    fn fence_key(&self) -> String {
        format!("{}fence", self.prefix)
    }
}

#[async_trait]
impl RefreshLock for RedisLock {
    async fn try_acquire(&self, name: &str, ttl: Duration) -> Result<Option<Lease>, Error> {
        // The holder names the process, so an operator can tell who holds what.
        let holder = format!("{}:{}", std::process::id(), random_id("")?);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut connection = self.connection.clone();
        let started = tokio::time::Instant::now();
        let acquired: Option<String> = redis::cmd("SET")
            .arg(self.lock_key(name))
            .arg(&holder)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .query_async(&mut connection)
            .await
            .map_err(Error::Lock)?;
        if acquired.is_none() {
            return Ok(None);
        }
        let fence: u64 = self
            .fence
            .key(self.fence_key())
            .arg(now_micros())
            .invoke_async(&mut connection)
            .await
            .map_err(Error::Lock)?;
        Ok(Some(Lease::new(name, fence, holder, started, ttl)))
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: i64 = self
            .release
            .key(self.lock_key(&lease.name))
            .arg(&lease.holder)
            .invoke_async(&mut connection)
            .await
            .map_err(Error::Lock)?;
        Ok(())
    }
}
