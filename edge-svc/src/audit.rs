//! Edge's audit trail: one event per MCP request that reaches a decision.
//!
//! Each event is written to a durable spool on local disk before the call is answered, then
//! delivered to audit-svc in order (at least once, idempotent by event id). When the spool is
//! full because audit-svc has been away too long, edge refuses new calls (fail closed, the
//! default, as Vault does) or serves them unrecorded and raises an alarm (fail open).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use audit_spool::Delivery;
use prost::Message as _;
use proto::audit::v1::{AuditEvent, Emitter};
use serde::Deserialize;
use svc_kit::callers::{InvalidToken, PresentToken, SecretSetting};
use tokio_util::sync::CancellationToken;

mod call;

pub use audit_spool::{Reservation, Spool, SpoolError, SpoolLimits};
pub(crate) use call::json_len;
pub use call::{CallRecord, Subject};

/// Settings of edge's audit trail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// audit-svc's gRPC endpoint, such as `http://127.0.0.1:50053`.
    pub endpoint: String,
    /// Directory of the durable spool; it must be on local disk and private to this edge.
    pub spool_dir: PathBuf,
    /// Most unacknowledged bytes the spool keeps before `when_full` applies.
    #[serde(default = "default_max_spool_bytes")]
    pub max_spool_bytes: u64,
    /// Size of one spool segment file.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// How often the spool is fsynced; `0s` fsyncs every event before the call is answered.
    ///
    /// Every event reaches the kernel before its call is answered, so a killed edge loses
    /// nothing; this interval bounds only what a power loss can take.
    #[serde(with = "humantime_serde", default = "default_sync_interval")]
    pub sync_interval: Duration,
    /// What edge does when the spool is full.
    #[serde(default)]
    pub when_full: WhenFull,
    /// Longest a call waits for the audit trail to catch up once the backlog is past an eighth
    /// of `max_spool_bytes` while audit-svc is connected ([`Recorder::paced`]); `0s` never waits.
    ///
    /// A second is enough for a trail starved of CPU to deliver a batch once calls pause, and
    /// short enough that an audit-svc that hangs with its stream open costs each call a second
    /// rather than its client's timeout.
    #[serde(with = "humantime_serde", default = "default_pace_patience")]
    pub pace_patience: Duration,
    /// Most events sent to audit-svc in one append.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Names this replica in events' emitter; defaults to the host name and process id.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The service token edge presents to audit-svc (its `callers.edge_token`).
    #[serde(default)]
    pub token: Option<SecretSetting>,
}

fn default_max_spool_bytes() -> u64 {
    SpoolLimits::default().max_bytes
}

fn default_segment_bytes() -> u64 {
    SpoolLimits::default().segment_bytes
}

fn default_sync_interval() -> Duration {
    SpoolLimits::default().sync_interval
}

fn default_pace_patience() -> Duration {
    Duration::from_secs(1)
}

fn default_batch_size() -> usize {
    500
}

impl AuditConfig {
    /// Returns the defaults for delivering to `endpoint` through a spool in `spool_dir`.
    pub fn new(endpoint: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: endpoint.into(),
            spool_dir: spool_dir.into(),
            max_spool_bytes: default_max_spool_bytes(),
            segment_bytes: default_segment_bytes(),
            sync_interval: default_sync_interval(),
            when_full: WhenFull::default(),
            pace_patience: default_pace_patience(),
            batch_size: default_batch_size(),
            instance_id: None,
            token: None,
        }
    }

    /// Returns these settings presenting `token` to audit-svc.
    #[must_use]
    pub fn with_token(mut self, token: SecretSetting) -> Self {
        self.token = Some(token);
        self
    }

    fn limits(&self) -> SpoolLimits {
        SpoolLimits {
            max_bytes: self.max_spool_bytes,
            segment_bytes: self.segment_bytes,
            sync_interval: self.sync_interval,
        }
    }
}

/// What edge does with new calls while it cannot record them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Refuse them: nothing runs that the audit trail cannot show.
    #[default]
    FailClosed,
    /// Serve them unrecorded and log an error-level alarm once per outage.
    FailOpen,
}

/// Why a call cannot be served or its event kept.
#[derive(Debug, thiserror::Error)]
pub enum Unrecordable {
    /// The spool is full (audit-svc unreachable for too long) and edge fails closed.
    #[error("the audit spool is full: audit-svc has not acknowledged {backlog} bytes")]
    Full {
        /// Unacknowledged bytes in the spool.
        backlog: u64,
    },
    /// The spool could not take the event.
    #[error("the audit trail cannot record this call: {0}")]
    Spool(#[from] SpoolError),
}

/// Why the audit trail cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The spool directory cannot be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The configured service token cannot be sent.
    #[error("audit.token: {0}")]
    Token(#[from] InvalidToken),
}

/// Writes audit events; cheap to clone, shared by every handler.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    active: Option<Arc<Active>>,
}

#[derive(Debug)]
struct Active {
    spool: Spool,
    /// The backlog past which calls wait for acknowledgements ([`Recorder::paced`]).
    pace_above: u64,
    /// Longest one call waits for them.
    pace_patience: Duration,
    when_full: WhenFull,
    emitter: Emitter,
    /// Set while fail-open mode is dropping events, so the alarm fires once per outage.
    alarmed: AtomicBool,
}

impl Recorder {
    /// Returns a recorder that keeps nothing (a standalone edge with no audit-svc configured).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Opens the spool and starts fsyncing it and delivering it to audit-svc until `shutdown`.
    pub fn start(config: &AuditConfig, shutdown: &CancellationToken) -> Result<Self, StartError> {
        let token = PresentToken::new(config.token.as_ref())?;
        let delivery = Delivery {
            endpoint: config.endpoint.clone(),
            token,
            batch_size: config.batch_size,
        };
        let spool = audit_spool::start(&config.spool_dir, config.limits(), delivery, shutdown)?;
        crate::telemetry::watch_spool(spool.clone());
        let instance_id = config.instance_id.clone().unwrap_or_else(default_instance);
        Ok(Self {
            active: Some(Arc::new(Active {
                spool,
                pace_above: config.max_spool_bytes / PACE_FRACTION,
                pace_patience: config.pace_patience,
                when_full: config.when_full,
                emitter: Emitter {
                    service: "edge-svc".to_owned(),
                    instance_id,
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                },
                alarmed: AtomicBool::new(false),
            })),
        })
    }

    /// Says whether events are kept at all.
    pub fn is_enabled(&self) -> bool {
        self.active.is_some()
    }

    /// Returns the spool, for health reporting and tests.
    pub fn spool(&self) -> Option<&Spool> {
        self.active.as_deref().map(|active| &active.spool)
    }

    /// Waits while the audit trail is behind but moving: with the backlog past an eighth of the
    /// spool's bound and a delivery stream to audit-svc open, a call first waits (at most
    /// `pace_patience`) for acknowledgements to bring the backlog back under that mark.
    ///
    /// A trail that runs behind the data plane (`gatehouse up` runs it under `SCHED_IDLE`)
    /// catches up only on CPU the calls leave idle; under sustained overload calls would fill
    /// the spool and then be refused. Slowing them instead gives the trail that CPU, so an
    /// overloaded gateway answers more slowly rather than refusing. With audit-svc away there is
    /// nothing to wait for: calls run on until the spool is full, as `when_full` says.
    pub async fn paced(&self) {
        let Some(active) = self.active.as_deref() else {
            return;
        };
        if active.pace_patience.is_zero()
            || active.spool.backlog() <= active.pace_above
            || !active.spool.is_delivering()
        {
            return;
        }
        crate::telemetry::count_paced();
        active
            .spool
            .drained_to(active.pace_above, active.pace_patience)
            .await;
    }

    /// Admits a call before it is forwarded: sets room aside for its event, or refuses it
    /// when the spool is full and edge fails closed.
    pub fn admit(&self) -> Result<Admission, Unrecordable> {
        let Some(active) = self.active.as_deref() else {
            return Ok(Admission(None));
        };
        match active.spool.reserve(CALL_RESERVATION) {
            Ok(reservation) => Ok(Admission(Some(reservation))),
            Err(_) if active.when_full == WhenFull::FailOpen => Ok(Admission(None)),
            Err(_) => Err(Unrecordable::Full {
                backlog: active.spool.backlog(),
            }),
        }
    }

    /// Writes an event that no admitted call reserved room for (another service's, say),
    /// within the spool's bound.
    pub fn record_event(&self, event: AuditEvent) -> Result<(), Unrecordable> {
        self.record(event, Admission(None))
    }

    /// Writes one event to the spool, stamping it with this edge as emitter unless it names one.
    pub fn record(&self, mut event: AuditEvent, admission: Admission) -> Result<(), Unrecordable> {
        let Some(active) = self.active.as_deref() else {
            return Ok(());
        };
        if event.emitter.is_none() {
            event.emitter = Some(active.emitter.clone());
        }
        let payload = event.encode_to_vec();
        let written = match admission.0 {
            Some(reservation) => active.spool.append_reserved(&payload, reservation),
            None => active.spool.append(&payload),
        };
        match written {
            Ok(_) => {
                if active.alarmed.swap(false, Ordering::Relaxed) {
                    tracing::warn!("audit spool has room again: calls are recorded again");
                }
                Ok(())
            }
            Err(error) if active.when_full == WhenFull::FailOpen => {
                if !active.alarmed.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        %error,
                        event_id = %event.event_id,
                        "AUDIT ALARM: calls are being served WITHOUT an audit record (when_full: fail_open)"
                    );
                }
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Room promised to an admitted call's event (nothing when edge keeps no audit trail).
#[derive(Debug)]
pub struct Admission(Option<Reservation>);

/// The spool's bound divided by this is the backlog past which calls are paced: far above what
/// a trail that keeps up holds (a few batches), far below the bound, so pacing starts long before
/// a refusal would.
const PACE_FRACTION: u64 = 8;

/// Room set aside per admitted call; events are smaller, so this only bounds the overshoot.
const CALL_RESERVATION: u64 = 4096;

fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "edge".to_owned());
    format!("{host}/{}", std::process::id())
}
