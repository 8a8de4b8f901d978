//! audit-svc's integration tests: one binary, one module per topic.

mod binary;
mod lifecycle;
