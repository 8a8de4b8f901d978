//! Refresh locks: single-flight per credential across replicas. A lock is an
//! efficiency device; correctness lives in the store, which refuses a write
//! whose fencing token is not the row's latest claim.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::credential::{now_micros, random_id};
use crate::error::Error;

mod redis;

pub use self::redis::RedisLock;

/// Grants short leases on names, each with a fencing token greater than every
/// token granted before it.
///
/// Tokens start from the wall clock in microseconds (then count up), so that
/// they stay increasing across restarts of the in-process lock and across a
/// Redis that lost its counter: the store compares them with the last claim.
#[async_trait]
pub trait RefreshLock: Send + Sync + std::fmt::Debug {
    /// Returns a lease on `name` for `ttl`, or `None` while another holds it.
    async fn try_acquire(&self, name: &str, ttl: Duration) -> Result<Option<Lease>, Error>;

    /// Releases `lease` if it is still held by it (never another holder's).
    async fn release(&self, lease: &Lease) -> Result<(), Error>;
}

/// Is a held lock: its name, holder, fencing token and deadline.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Names the lock.
    pub name: String,
    /// Holds the fencing token the store checks.
    pub fence: u64,
    holder: String,
    // A monotonic clock: a wall-clock jump cannot extend a lease.
    expires: Instant,
}

/// Keeps locks in this process: the embedded default, where one process runs
/// every refresher.
#[derive(Debug)]
pub struct InProcessLock {
    held: Mutex<HashMap<String, (String, Instant)>>,
    fence: AtomicU64,
}

impl Lease {
    /// Returns how long the lease still runs, measured on the monotonic clock.
    pub fn remaining(&self) -> Duration {
        self.expires.saturating_duration_since(Instant::now())
    }

    /// Returns a lease whose clock started at `started` (before the acquiring
    /// request was sent, so the local deadline never outlives the remote one).
    fn new(name: &str, fence: u64, holder: String, started: Instant, ttl: Duration) -> Self {
        Self {
            name: name.to_owned(),
            fence,
            holder,
            expires: started + ttl,
        }
    }
}

impl Default for InProcessLock {
    fn default() -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
            fence: AtomicU64::new(u64::try_from(now_micros()).unwrap_or(0)),
        }
    }
}

#[async_trait]
impl RefreshLock for InProcessLock {
    async fn try_acquire(&self, name: &str, ttl: Duration) -> Result<Option<Lease>, Error> {
        let holder = random_id("")?;
        let now = Instant::now();
        let mut held = self.held.lock().map_err(|_| Error::Corrupt("lock table"))?;
        if held.get(name).is_some_and(|(_, expires)| *expires > now) {
            return Ok(None);
        }
        held.insert(name.to_owned(), (holder.clone(), now + ttl));
        let fence = self.fence.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Some(Lease::new(name, fence, holder, now, ttl)))
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let mut held = self.held.lock().map_err(|_| Error::Corrupt("lock table"))?;
        if held
            .get(&lease.name)
            .is_some_and(|(holder, _)| *holder == lease.holder)
        {
            held.remove(&lease.name);
        }
        Ok(())
    }
}
