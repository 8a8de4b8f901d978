//! Gatehouse audit-svc.
