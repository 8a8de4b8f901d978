//! dlp's integration tests: one binary, one module per topic.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod document;
mod hook;
mod messages;
mod rule;
mod stream;

use dlp::{Dlp, DlpConfig};

/// Compiles a `dlp:` section written as JSON.
fn dlp(config: serde_json::Value) -> Dlp {
    let config: DlpConfig = serde_json::from_value(config).expect("dlp config");
    Dlp::new(&config).expect("valid dlp config")
}
