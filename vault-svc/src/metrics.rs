//! vault-svc's metrics: credential reads by connector and outcome (the credential health an
//! operator watches: `consent_required` and refusals rising), and background refresh outcomes.

use std::sync::LazyLock;

use svc_kit::telemetry::metrics::{Counter, Gauge, KeyValue};

use crate::refresh::RefreshOutcome;
use crate::secret_rotation::{RotationState, RotationStep};
use crate::vault::HealthState;

/// The vault instruments, made on first use (after telemetry is installed).
struct Instruments {
    reads: Counter<u64>,
    refreshes: Counter<u64>,
    rotations: Counter<u64>,
    rotation_attention: Gauge<u64>,
    health: Gauge<u64>,
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| {
    let meter = svc_kit::telemetry::metrics::meter("vault-svc");
    Instruments {
        reads: meter
            .u64_counter("gatehouse.vault.credential.reads")
            .with_description("Credential reads for a call, by connector and outcome")
            .build(),
        refreshes: meter
            .u64_counter("gatehouse.vault.refreshes")
            .with_description("Background token refresh attempts, by outcome")
            .build(),
        rotations: meter
            .u64_counter("gatehouse.vault.rotations")
            .with_description("Shared-secret rotation steps, by connector and outcome")
            .build(),
        rotation_attention: meter
            .u64_gauge("gatehouse.vault.rotation.needs_attention")
            .with_description("1 while a connector's secret rotation needs an operator, else 0")
            .build(),
        health: meter
            .u64_gauge("gatehouse.vault.connector.health")
            .with_description(
                "1 for the credential health state a connector is in, 0 for the others",
            )
            .build(),
    }
});

/// Counts one credential read for `connector` that ended with `outcome` (`ok` or a refusal).
pub(crate) fn credential_read(connector: &str, outcome: &'static str) {
    INSTRUMENTS.reads.add(
        1,
        &[
            KeyValue::new("connector", connector.to_owned()),
            KeyValue::new("outcome", outcome),
        ],
    );
}

/// Counts one refresh attempt: its outcome, or `error` when it could not be made.
pub(crate) fn refresh_attempted(outcome: Option<RefreshOutcome>) {
    let label = match outcome {
        Some(RefreshOutcome::Refreshed) => "refreshed",
        Some(RefreshOutcome::Skipped) => "skipped",
        Some(RefreshOutcome::Failed) => "failed",
        Some(RefreshOutcome::Rejected) => "rejected",
        None => "error",
    };
    INSTRUMENTS
        .refreshes
        .add(1, &[KeyValue::new("outcome", label)]);
}

/// Counts one rotation step of `connector` that did something.
pub(crate) fn rotation_step(connector: &str, step: RotationStep) {
    let label = match step {
        RotationStep::Idle => return,
        RotationStep::Rotated => "rotated",
        RotationStep::Retired => "retired",
        RotationStep::Failed => "failed",
        RotationStep::NeedsAttention => "needs_attention",
    };
    INSTRUMENTS.rotations.add(
        1,
        &[
            KeyValue::new("connector", connector.to_owned()),
            KeyValue::new("outcome", label),
        ],
    );
}

/// Records whether `connector`'s rotation needs an operator.
pub(crate) fn rotation_state(connector: &str, state: RotationState) {
    INSTRUMENTS.rotation_attention.record(
        u64::from(state == RotationState::NeedsAttention),
        &[KeyValue::new("connector", connector.to_owned())],
    );
}

/// Records `connector`'s credential health: 1 for `current`, 0 for every other state, so a
/// dashboard sums or alerts per state.
pub(crate) fn connector_health(connector: &str, current: HealthState) {
    for state in HealthState::ALL {
        INSTRUMENTS.health.record(
            u64::from(state == current),
            &[
                KeyValue::new("connector", connector.to_owned()),
                KeyValue::new("state", state.as_str()),
            ],
        );
    }
}
