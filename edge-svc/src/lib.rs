//! Gatehouse edge-svc.
