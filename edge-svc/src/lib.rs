//! edge-svc: the MCP front door of Gatehouse.

pub mod connector;
