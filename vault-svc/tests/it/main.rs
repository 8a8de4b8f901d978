//! vault-svc's integration tests: one binary, one module per topic.
// Test helpers outside #[test] functions panic on setup failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_key;
mod backend;
mod binary;
mod consent;
mod fixture;
mod health;
mod lifecycle;
mod lock;
mod peer;
mod refresh;
mod rotation;
mod schedule;
mod service;
mod store;
