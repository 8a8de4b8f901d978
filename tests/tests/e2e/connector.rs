//! Connector scenarios.
