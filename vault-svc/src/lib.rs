//! Gatehouse vault-svc.
