//! audit-svc as the audit sink of a standalone authz-svc: events (tokens issued,
//! exchanged and revoked; agent bundle changes) are written to a durable spool on
//! local disk and delivered from there to audit-svc's `Append`, authenticated by
//! authz-svc's service token, until acknowledged.
//!
//! An event is accepted once it is in the spool (written through to the kernel), so a
//! `kill -9` of authz-svc loses no event of a token it issued: the restarted process
//! delivers it. A full spool refuses the change it records (the token is not issued),
//! as edge fails closed. Under `gatehouse up` authz-svc writes to edge's spool instead,
//! one spool per process.

use audit_spool::{Delivery, Spool, SpoolLimits};
use proto::audit::v1::AuditEvent;
use svc_kit::callers::PresentToken;
use tokio_util::sync::CancellationToken;

use crate::config::{AuditForwardConfig, StoreSection};
use crate::events::AuditSink;

/// Bounds one `Append` batch.
const BATCH: usize = 500;

/// Spools authz-svc's audit events for audit-svc.
#[derive(Debug, Clone)]
pub(crate) struct AuditForwarder {
    spool: Spool,
}

impl AuditSink for AuditForwarder {
    fn record(&self, event: AuditEvent) -> Result<(), String> {
        self.spool
            .record(&event)
            .map(drop)
            .map_err(|error| error.to_string())
    }
}

/// Opens the spool (delivering what an earlier run left in it) and delivers it to
/// audit-svc until `shutdown`; `None` when no audit-svc is configured.
pub(crate) fn start(
    config: &AuditForwardConfig,
    store: &StoreSection,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<AuditForwarder>> {
    let Some(url) = &config.url else {
        return Ok(None);
    };
    let dir = config
        .spool_dir
        .clone()
        .unwrap_or_else(|| store.data_dir.join("authz-audit-spool"));
    let limits = SpoolLimits {
        max_bytes: config.max_spool_bytes,
        ..SpoolLimits::default()
    };
    let delivery = Delivery {
        endpoint: url.clone(),
        token: PresentToken::new(config.token.as_ref())?,
        batch_size: BATCH,
    };
    let spool = audit_spool::start(&dir, limits, delivery, shutdown)?;
    Ok(Some(AuditForwarder { spool }))
}
