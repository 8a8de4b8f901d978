//! Gatehouse's gRPC contracts: generated messages, clients and servers for every
//! service, and the descriptor set that reflection serves.
//!
//! The module tree mirrors the proto packages without the leading `gatehouse`:
//! `gatehouse.authz.v1` is [`authz::v1`]. Nothing here is written by hand except
//! this tree and the redacting `Debug` of [`common::v1::Secret`].

use std::fmt;

/// Shared wire messages: principals, request metadata, targets, decisions, paging and secrets.
pub mod common {
    /// Version 1 of the shared messages (`gatehouse.common.v1`).
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/gatehouse.common.v1.rs"));
    }
}

/// authz-svc's contracts: token validation, policy decisions and feeds, token exchange, agent bundles.
pub mod authz {
    /// Version 1 of authz-svc's contracts (`gatehouse.authz.v1`).
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/gatehouse.authz.v1.rs"));
    }
}

/// vault-svc's contracts: credential release, storage, revocation and health.
pub mod vault {
    /// Version 1 of vault-svc's contracts (`gatehouse.vault.v1`).
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/gatehouse.vault.v1.rs"));
    }
}

/// audit-svc's contracts: events, append, search, tail and proofs.
pub mod audit {
    /// Version 1 of audit-svc's contracts (`gatehouse.audit.v1`).
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/gatehouse.audit.v1.rs"));
    }
}

/// The administration API `gatehouse up` serves: policies, virtual servers, connectors, shared
/// credentials, agent bundles, audit search and connector health.
pub mod admin {
    /// Version 1 of the administration API (`gatehouse.admin.v1`).
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/gatehouse.admin.v1.rs"));
    }
}

/// Holds the encoded `FileDescriptorSet` of every Gatehouse proto file (with
/// imports and source info), for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gatehouse_descriptor.bin"));

// Secrets must never reach logs, so the generated Debug is replaced by one that
// shows only whether a value is present.
impl fmt::Debug for common::v1::Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if self.value.is_empty() {
            "empty"
        } else {
            "redacted"
        };
        formatter.debug_tuple("Secret").field(&shown).finish()
    }
}

#[cfg(test)]
mod tests;
