//! A bounded, durable spool of audit events on local disk, and its in-order delivery to
//! audit-svc — shared by every producer of audit events (edge-svc, and authz-svc and vault-svc
//! when they run on their own), so that an event any of them accepted survives `kill -9` and
//! reaches audit-svc at least once (audit-svc is idempotent by event id).
//!
//! A small crate of its own rather than part of svc-kit: it depends on `proto` (the events and
//! audit-svc's client), which svc-kit must not.

use std::path::Path;

use svc_kit::callers::PresentToken;
use tokio_util::sync::CancellationToken;

mod forward;
pub mod spool;

pub use spool::{Reservation, Spool, SpoolError, SpoolLimits, SpooledRecord};

/// Where and how a spool is delivered.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// audit-svc's gRPC endpoint, such as `http://127.0.0.1:50053`.
    pub endpoint: String,
    /// The service token presented to audit-svc (its `callers.*_token` for this producer).
    pub token: PresentToken,
    /// Most events sent in one append.
    pub batch_size: usize,
}

/// Opens (or recovers) the spool in `dir`, then until `shutdown` fsyncs it every
/// `limits.sync_interval` and delivers it to audit-svc, reconnecting with backoff.
///
/// Events written before a crash are delivered after the restart: the spool's cursor moves
/// only when audit-svc acknowledges.
pub fn start(
    dir: &Path,
    limits: SpoolLimits,
    delivery: Delivery,
    shutdown: &CancellationToken,
) -> Result<Spool, SpoolError> {
    let spool = Spool::open(dir, limits)?;
    spool.spawn_sync(shutdown.child_token());
    forward::spawn(
        spool.clone(),
        delivery.endpoint,
        delivery.token,
        delivery.batch_size.max(1),
        shutdown.child_token(),
    );
    Ok(spool)
}
