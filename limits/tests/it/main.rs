//! limits' integration tests: one suite of bucket behaviour run against both stores, and the
//! failure modes against a Redis whose link the test cuts.
// Test helpers outside #[test] functions panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod failure;
mod store;
mod suite;

/// Runs every case of the shared suite against one store, as its own named tests.
macro_rules! suite_for {
    ($backend:ident, $open:expr) => {
        mod $backend {
            suite_for!(@cases $open;
                a_fresh_bucket_admits_exactly_the_burst,
                after_the_burst_each_interval_admits_one_call,
                retry_after_is_when_the_call_is_admitted_again,
                keys_do_not_share_a_budget,
                a_full_bucket_refuses_the_call_and_charges_no_other,
                the_longest_wait_is_reported,
                concurrent_callers_on_two_handles_share_one_budget,
            );
        }
    };
    (@cases $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(store) = $open(stringify!($case)).await else {
                    return;
                };
                crate::suite::$case(&store).await;
            }
        )*
    };
}

suite_for!(in_process, crate::store::Store::in_process);
suite_for!(redis, crate::store::Store::redis);
