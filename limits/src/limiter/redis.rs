//! Buckets in Redis: the same GCRA as in process, run by one atomic Lua script per call.
//!
//! The script reads the clock with `TIME` on the Redis server, so replicas whose own clocks
//! disagree still share one timeline. All of a call's buckets are checked and charged in one
//! script run, so the budget is exact across replicas and all-or-nothing; under Redis Cluster
//! that would need every key of a call in one slot, so a single primary (or Sentinel) is assumed.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use secrecy::ExposeSecret as _;

use super::{Backend, Check, Decision};
use crate::config::RedisConfig;
use crate::error::Error;

/// Checks every bucket (KEYS, with interval and tolerance in µs as ARGV pairs), then charges
/// all of them or none. Returns `{0, 0}` when allowed, else `{index, wait_µs}` (1-based index
/// of the bucket that frees up last). Each key expires when its bucket would be full again.
const ACQUIRE: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local booked = {}
local worst, worst_at = 0, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local arrival = tonumber(redis.call('GET', KEYS[i]) or now)
  if arrival < now then arrival = now end
  local next = arrival + interval
  local wait = next - now - tolerance
  if wait > worst then worst, worst_at = wait, i end
  booked[i] = next
end
if worst_at > 0 then return {worst_at, worst} end
for i = 1, #KEYS do
  local ttl = math.ceil((booked[i] - now) / 1000)
  redis.call('SET', KEYS[i], string.format('%.0f', booked[i]), 'PX', ttl)
end
return {0, 0}
";

/// Buckets in a Redis every replica shares.
#[derive(Clone)]
pub struct RedisBackend {
    connection: ConnectionManager,
    prefix: String,
    script: Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to the configured Redis (failing now when it is unreachable).
    pub async fn connect(config: &RedisConfig) -> Result<Self, Error> {
        let client = Client::open(config.url.expose_secret()).map_err(Error::Config)?;
        // Few, short retries: a call waits on this, and the failure mode decides what then.
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(config.timeout);
        let connection = ConnectionManager::new_with_config(client, settings)
            .await
            .map_err(Error::Store)?;
        Ok(Self {
            connection,
            prefix: config.key_prefix.clone(),
            script: Script::new(ACQUIRE),
        })
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn acquire(&self, checks: &[Check<'_>]) -> Result<Decision, Error> {
        let mut invocation = self.script.prepare_invoke();
        for check in checks {
            invocation
                .key(format!("{}{}", self.prefix, check.key))
                .arg(micros(check.quota.interval()).max(1))
                .arg(micros(check.quota.tolerance()));
        }
        let mut connection = self.connection.clone();
        let (index, wait): (usize, u64) = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(Error::Store)?;
        Ok(match index.checked_sub(1) {
            None => Decision::Allowed,
            Some(check) => Decision::Limited {
                check,
                retry_after: Duration::from_micros(wait),
            },
        })
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
