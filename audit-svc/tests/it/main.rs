//! audit-svc's integration tests: one binary, one module per topic.
// Test helpers outside #[test] functions panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backend;
mod binary;
mod callers;
mod canary;
mod lifecycle;
mod proof;
mod retention;
mod service;
mod sinks;
mod store;
mod tamper;
