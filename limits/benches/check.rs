//! What a rate-limit check costs a call: the in-process GCRA (one bucket, three buckets, and
//! ten thousand distinct callers) and the Redis script round trip, measured in one run.
//!
//! `cargo bench -p limits`; the Redis group runs when REDIS_URL is set and says so when not.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use limits::{Backend, Check, InProcess, Quota, RedisBackend, RedisConfig};

/// Generous enough that every benchmarked call is admitted (the common case).
fn roomy() -> Quota {
    Quota::new("1000000000/second".parse().unwrap(), 1_000_000).unwrap()
}

fn in_process(criterion: &mut Criterion) {
    let limiter = InProcess::default();
    let mut group = criterion.benchmark_group("in_process");
    group.bench_function("one_bucket", |bench| {
        let checks = [Check {
            key: "per-member|member=alice",
            quota: roomy(),
        }];
        bench.iter(|| limiter.acquire_at(&checks, tokio::time::Instant::now()));
    });
    group.bench_function("three_buckets", |bench| {
        let checks = [
            Check {
                key: "per-member|member=alice",
                quota: roomy(),
            },
            Check {
                key: "per-tool|tool=update_contact",
                quota: roomy(),
            },
            Check {
                key: "crm-total|virtual_server=crm",
                quota: roomy(),
            },
        ];
        bench.iter(|| limiter.acquire_at(&checks, tokio::time::Instant::now()));
    });
    let callers: Vec<String> = (0..10_000)
        .map(|n| format!("per-member|member=m{n}"))
        .collect();
    group.bench_function("ten_thousand_callers", |bench| {
        let mut next = callers.iter().cycle();
        bench.iter(|| {
            let checks = [Check {
                key: next.next().unwrap(),
                quota: roomy(),
            }];
            limiter.acquire_at(&checks, tokio::time::Instant::now())
        });
    });
    group.finish();
}

fn redis(criterion: &mut Criterion) {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("SKIPPED: REDIS_URL is not set; the Redis limiter was not benchmarked");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = RedisConfig::new(url);
    config.key_prefix = format!("gatehouse:bench:{}:", std::process::id());
    let backend: Arc<dyn Backend> = Arc::new(
        runtime
            .block_on(RedisBackend::connect(&config))
            .expect("REDIS_URL is set but Redis is unreachable"),
    );
    let mut group = criterion.benchmark_group("redis");
    for (name, keys) in [("one_bucket", 1), ("three_buckets", 3)] {
        let keys: Vec<String> = (0..keys)
            .map(|n| format!("rule-{n}|member=alice"))
            .collect();
        group.bench_function(name, |bench| {
            bench.to_async(&runtime).iter(|| {
                let backend = Arc::clone(&backend);
                let keys = keys.clone();
                async move {
                    let checks: Vec<Check<'_>> = keys
                        .iter()
                        .map(|key| Check {
                            key,
                            quota: roomy(),
                        })
                        .collect();
                    backend.acquire(&checks).await.unwrap()
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, in_process, redis);
criterion_main!(benches);
