//! What every bucket store must do, whichever it is: the GCRA contract in calls and waits.
//!
//! Waits here are the behaviour under test (a client honouring `retry_after`), not
//! synchronisation; intervals are long enough that scheduling jitter cannot flip an answer.

use std::time::Duration;

use limits::{Backend, Check, Decision, Quota};

use crate::store::Store;

fn quota(rate: &str, burst: u32) -> Quota {
    Quota::new(rate.parse().unwrap(), burst).unwrap()
}

async fn acquire(backend: &dyn Backend, checks: &[(&str, Quota)]) -> Decision {
    let checks: Vec<Check<'_>> = checks
        .iter()
        .map(|(key, quota)| Check { key, quota: *quota })
        .collect();
    backend.acquire(&checks).await.expect("the store answers")
}

fn retry_after(decision: Decision) -> Duration {
    match decision {
        Decision::Limited { retry_after, .. } => retry_after,
        Decision::Allowed => panic!("expected the call to be limited"),
    }
}

pub(crate) async fn a_fresh_bucket_admits_exactly_the_burst(store: &Store) {
    let backend = store.handle().await;
    let budget = quota("1/hour", 5);
    for call in 1..=5 {
        assert_eq!(
            acquire(&*backend, &[("member=alice", budget)]).await,
            Decision::Allowed,
            "call {call} of the burst"
        );
    }
    let refused = acquire(&*backend, &[("member=alice", budget)]).await;
    let wait = retry_after(refused);
    assert!(
        wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600),
        "the sixth call waits one interval: {wait:?}"
    );
}

pub(crate) async fn after_the_burst_each_interval_admits_one_call(store: &Store) {
    let backend = store.handle().await;
    let budget = quota("5/second", 2);
    let bucket = [("member=bob", budget)];
    assert_eq!(acquire(&*backend, &bucket).await, Decision::Allowed);
    assert_eq!(acquire(&*backend, &bucket).await, Decision::Allowed);
    for round in 1..=3 {
        let wait = retry_after(acquire(&*backend, &bucket).await);
        assert!(
            wait <= Duration::from_millis(200),
            "round {round}: {wait:?}"
        );
        tokio::time::sleep(wait).await;
        assert_eq!(
            acquire(&*backend, &bucket).await,
            Decision::Allowed,
            "round {round}: one call per interval"
        );
        assert!(
            matches!(acquire(&*backend, &bucket).await, Decision::Limited { .. }),
            "round {round}: and only one"
        );
    }
}

pub(crate) async fn retry_after_is_when_the_call_is_admitted_again(store: &Store) {
    let backend = store.handle().await;
    let bucket = [("agent=reporter", quota("2/second", 1))];
    assert_eq!(acquire(&*backend, &bucket).await, Decision::Allowed);
    let first = retry_after(acquire(&*backend, &bucket).await);
    assert!(
        first > Duration::from_millis(400) && first <= Duration::from_millis(500),
        "one interval of 500 ms: {first:?}"
    );
    tokio::time::sleep(first / 2).await;
    let second = retry_after(acquire(&*backend, &bucket).await);
    assert!(
        second < first && second > Duration::ZERO,
        "halfway there, the wait has shrunk: {second:?} after {first:?}"
    );
    tokio::time::sleep(second).await;
    assert_eq!(acquire(&*backend, &bucket).await, Decision::Allowed);
}

pub(crate) async fn keys_do_not_share_a_budget(store: &Store) {
    let backend = store.handle().await;
    let budget = quota("1/hour", 1);
    assert_eq!(
        acquire(&*backend, &[("member=carol", budget)]).await,
        Decision::Allowed
    );
    assert!(matches!(
        acquire(&*backend, &[("member=carol", budget)]).await,
        Decision::Limited { .. }
    ));
    assert_eq!(
        acquire(&*backend, &[("member=dave", budget)]).await,
        Decision::Allowed,
        "another member's bucket is untouched"
    );
}

pub(crate) async fn a_full_bucket_refuses_the_call_and_charges_no_other(store: &Store) {
    let backend = store.handle().await;
    let strict = ("per-tool|tool=update", quota("1/hour", 1));
    let loose = ("per-member|member=erin", quota("1/hour", 3));
    assert_eq!(acquire(&*backend, &[strict]).await, Decision::Allowed);
    for _ in 0..5 {
        assert!(
            matches!(
                acquire(&*backend, &[loose, strict]).await,
                Decision::Limited { check: 1, .. }
            ),
            "the strict rule refuses and is named"
        );
    }
    for call in 1..=3 {
        assert_eq!(
            acquire(&*backend, &[loose]).await,
            Decision::Allowed,
            "the loose rule's burst is intact (call {call})"
        );
    }
}

pub(crate) async fn the_longest_wait_is_reported(store: &Store) {
    let backend = store.handle().await;
    let minute = ("per-minute|member=frank", quota("1/minute", 1));
    let hour = ("per-hour|member=frank", quota("1/hour", 1));
    assert_eq!(acquire(&*backend, &[minute, hour]).await, Decision::Allowed);
    match acquire(&*backend, &[minute, hour]).await {
        Decision::Limited { check, retry_after } => {
            assert_eq!(check, 1, "the hourly bucket frees up last");
            assert!(retry_after > Duration::from_secs(3590), "{retry_after:?}");
        }
        Decision::Allowed => panic!("both buckets are full"),
    }
}

pub(crate) async fn concurrent_callers_on_two_handles_share_one_budget(store: &Store) {
    let handles = [store.handle().await, store.handle().await];
    let budget = quota("1/hour", 7);
    let mut calls = tokio::task::JoinSet::new();
    for call in 0..40 {
        let backend = handles[call % 2].clone();
        calls.spawn(async move { acquire(&*backend, &[("global", budget)]).await });
    }
    let allowed = calls
        .join_all()
        .await
        .into_iter()
        .filter(|decision| *decision == Decision::Allowed)
        .count();
    assert_eq!(
        allowed, 7,
        "exactly the burst, however the calls interleave"
    );
}
