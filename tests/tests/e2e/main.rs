//! Cross-service scenarios: one integration binary, one module per topic.

// Harness helpers (starting servers, building clients) fail the test the same way the test
// bodies do; clippy's allow-expect-in-tests only covers `#[test]` functions themselves.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod admin;
mod agents;
mod audit;
mod authz_grpc;
mod connector;
mod console;
mod credential_kinds;
mod credentials;
mod deploy;
mod dlp;
mod exchange;
mod gateway;
mod injection;
mod launch;
mod limits;
mod oauth;
mod policy;
mod replicas;
mod scaleout;
mod scim;
mod telemetry;

/// The header `name` of `response`, when it is present and readable.
fn header_of(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}
