//! Gatehouse svc-kit.
