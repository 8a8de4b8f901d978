//! Cross-service scenarios: one integration binary, one module per topic.

mod connector;
mod gateway;
