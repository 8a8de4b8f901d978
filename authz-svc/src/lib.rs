//! Gatehouse authz-svc.
