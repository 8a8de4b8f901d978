//! authz-svc's integration tests: one binary, one module per topic.

// Test helpers outside #[test] functions fail by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent_admin;
mod agents;
mod assertion;
mod authorize;
mod binary;
mod client_documents;
mod data_plane;
mod directory;
mod exchange;
mod federation;
mod harness;
mod lifecycle;
mod metadata;
mod pdp;
mod peers;
mod register;
mod revocation;
mod scim;
mod secrets;
mod store;
mod token;
