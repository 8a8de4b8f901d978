//! The refresh-lock suite, run against the in-process lock and Redis.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use vault_svc::credential::random_id;
use vault_svc::lock::{InProcessLock, RedisLock, RefreshLock};

use crate::backend::{forget_redis_prefix, redis_url};

/// Is where a test's Redis keys live, deleted when it ends.
struct RedisKeys(Option<(String, String)>);

impl RedisKeys {
    async fn forget(self) {
        if let Some((url, prefix)) = self.0 {
            forget_redis_prefix(&url, &prefix).await;
        }
    }
}

async fn locks() -> (Vec<(&'static str, Arc<dyn RefreshLock>)>, RedisKeys) {
    let mut locks: Vec<(&'static str, Arc<dyn RefreshLock>)> =
        vec![("in-process", Arc::new(InProcessLock::default()))];
    if let Some(url) = redis_url() {
        let prefix = format!("vault-it:{}:", random_id("").unwrap());
        let lock = RedisLock::connect(&url, &prefix)
            .await
            .expect("REDIS_URL is set but Redis is unreachable");
        locks.push(("redis", Arc::new(lock)));
        return (locks, RedisKeys(Some((url, prefix))));
    }
    (locks, RedisKeys(None))
}

#[tokio::test]
async fn one_holder_at_a_time_with_increasing_fences() {
    let (locks, keys) = locks().await;
    for (name, lock) in locks {
        let first = lock
            .try_acquire("cred_a", Duration::from_secs(10))
            .await
            .unwrap()
            .expect(name);
        assert!(
            lock.try_acquire("cred_a", Duration::from_secs(10))
                .await
                .unwrap()
                .is_none(),
            "{name}"
        );
        let other = lock
            .try_acquire("cred_b", Duration::from_secs(10))
            .await
            .unwrap()
            .expect(name);
        assert!(other.fence > first.fence, "{name}");
        lock.release(&first).await.unwrap();
        let second = lock
            .try_acquire("cred_a", Duration::from_secs(10))
            .await
            .unwrap()
            .expect(name);
        assert!(second.fence > other.fence, "{name}");
        assert!(second.remaining() > Duration::from_secs(9), "{name}");
    }
    keys.forget().await;
}

#[tokio::test]
async fn an_expired_holder_cannot_release_the_next_holders_lock() {
    let (locks, keys) = locks().await;
    for (name, lock) in locks {
        let stale = lock
            .try_acquire("cred_x", Duration::from_millis(50))
            .await
            .unwrap()
            .expect(name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let fresh = loop {
            if let Some(lease) = lock
                .try_acquire("cred_x", Duration::from_secs(10))
                .await
                .unwrap()
            {
                break lease;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: lease never expired"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(fresh.fence > stale.fence, "{name}");
        assert_eq!(stale.remaining(), Duration::ZERO, "{name}");
        lock.release(&stale).await.unwrap();
        assert!(
            lock.try_acquire("cred_x", Duration::from_secs(10))
                .await
                .unwrap()
                .is_none(),
            "{name}: stale release freed it"
        );
        lock.release(&fresh).await.unwrap();
        assert!(
            lock.try_acquire("cred_x", Duration::from_secs(10))
                .await
                .unwrap()
                .is_some(),
            "{name}"
        );
    }
    keys.forget().await;
}

#[tokio::test]
async fn concurrent_contenders_get_exactly_one_lease() {
    let (locks, keys) = locks().await;
    for (name, lock) in locks {
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let lock = lock.clone();
            tasks.push(tokio::spawn(async move {
                lock.try_acquire("cred_race", Duration::from_secs(10))
                    .await
                    .unwrap()
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(task.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "{name}");
        let fences: HashSet<u64> = winners.iter().map(|lease| lease.fence).collect();
        assert_eq!(fences.len(), 1);
    }
    keys.forget().await;
}
