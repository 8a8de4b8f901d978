//! Buckets in this process: GCRA over a sharded map of theoretical arrival times.
//!
//! A small GCRA rather than the `governor` crate: a call may touch several buckets and must
//! charge all or none, which governor's one-key-at-a-time check cannot do, and the arithmetic
//! here is the same the Redis script runs, so both backends pass one test suite.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Backend, Check, Decision};
use crate::error::Error;

/// Shards keep unrelated callers from queueing on one lock (a power of two, for the mask).
const SHARDS: usize = 16;

/// Fewest insertions between sweeps of a shard's expired buckets.
const SWEEP_EVERY: usize = 1024;

/// Buckets in memory; exact for one process, one budget per replica when there are several.
#[derive(Debug)]
pub struct InProcess {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

#[derive(Debug, Default)]
struct Shard {
    /// Each bucket's theoretical arrival time; a bucket at or before now is full and dropped.
    arrivals: HashMap<String, Instant>,
    inserted_since_sweep: usize,
}

impl Default for InProcess {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl InProcess {
    /// Decides `checks` as of `now` (tokio's clock, so paused-time tests drive it).
    pub fn acquire_at(&self, checks: &[Check<'_>], now: Instant) -> Decision {
        let homes: Vec<usize> = checks
            .iter()
            .map(|check| self.shard_of(check.key))
            .collect();
        let mut order = homes.clone();
        order.sort_unstable();
        order.dedup();
        // Ascending shard order: two calls locking overlapping shards cannot deadlock.
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> = order
            .into_iter()
            .map(|index| (index, lock(&self.shards[index])))
            .collect();
        let mut booked = Vec::with_capacity(checks.len());
        let mut worst: Option<(usize, Duration)> = None;
        for (index, check) in checks.iter().enumerate() {
            let shard = shard_mut(&mut guards, homes[index]);
            let arrival = shard
                .arrivals
                .get(check.key)
                .map_or(now, |arrival| (*arrival).max(now));
            let next = arrival + check.quota.interval();
            let ahead = next - now;
            if ahead > check.quota.tolerance() {
                let wait = ahead - check.quota.tolerance();
                if worst.is_none_or(|(_, longest)| wait > longest) {
                    worst = Some((index, wait));
                }
            }
            booked.push(next);
        }
        if let Some((check, retry_after)) = worst {
            return Decision::Limited { check, retry_after };
        }
        for (index, (check, next)) in checks.iter().zip(booked).enumerate() {
            shard_mut(&mut guards, homes[index]).book(check.key, next, now);
        }
        Decision::Allowed
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) & (SHARDS - 1)
    }
}

impl Shard {
    fn book(&mut self, key: &str, next: Instant, now: Instant) {
        if let Some(arrival) = self.arrivals.get_mut(key) {
            *arrival = next;
            return;
        }
        self.arrivals.insert(key.to_owned(), next);
        self.inserted_since_sweep += 1;
        // Sweeping once per len()/2 insertions keeps the amortised cost per call constant.
        if self.inserted_since_sweep >= SWEEP_EVERY.max(self.arrivals.len() / 2) {
            self.arrivals.retain(|_, arrival| *arrival > now);
            self.inserted_since_sweep = 0;
        }
    }
}

#[async_trait::async_trait]
impl Backend for InProcess {
    async fn acquire(&self, checks: &[Check<'_>]) -> Result<Decision, Error> {
        Ok(self.acquire_at(checks, Instant::now()))
    }
}

/// Locks a shard; a panic elsewhere cannot leave arrival times inconsistent, so poison is ignored.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn shard_mut<'a, 'g>(
    guards: &'a mut [(usize, MutexGuard<'g, Shard>)],
    index: usize,
) -> &'a mut Shard {
    let position = guards
        .binary_search_by_key(&index, |(shard, _)| *shard)
        .unwrap_or_else(|position| position);
    &mut guards[position].1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Quota;

    fn quota(rate: &str, burst: u32) -> Quota {
        Quota::new(rate.parse().unwrap(), burst).unwrap()
    }

    #[test]
    fn a_fresh_bucket_admits_the_burst_then_paces_to_the_rate() {
        let limiter = InProcess::default();
        let check = [Check {
            key: "k",
            quota: quota("10/second", 3),
        }];
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.acquire_at(&check, start), Decision::Allowed);
        }
        assert_eq!(
            limiter.acquire_at(&check, start),
            Decision::Limited {
                check: 0,
                retry_after: Duration::from_millis(100)
            }
        );
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.acquire_at(&check, later), Decision::Allowed);
        assert!(matches!(
            limiter.acquire_at(&check, later),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn expired_buckets_are_swept_so_memory_follows_active_callers() {
        let limiter = InProcess::default();
        let start = Instant::now();
        let keys: Vec<String> = (0..SHARDS * SWEEP_EVERY * 2)
            .map(|n| format!("caller-{n}"))
            .collect();
        for key in &keys {
            let check = [Check {
                key,
                quota: quota("1/second", 1),
            }];
            assert_eq!(limiter.acquire_at(&check, start), Decision::Allowed);
        }
        let later = start + Duration::from_secs(2);
        for key in &keys {
            let check = [Check {
                key: &format!("again-{key}"),
                quota: quota("1/second", 1),
            }];
            limiter.acquire_at(&check, later);
        }
        let kept: usize = limiter
            .shards
            .iter()
            .map(|shard| lock(shard).arrivals.len())
            .sum();
        assert!(
            kept < keys.len() * 2,
            "expired buckets were dropped: {kept}"
        );
    }
}
