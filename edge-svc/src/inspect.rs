//! Input inspection and output masking (DLP) on the proxy path.
//!
//! Runs after the policy decision: a call's arguments are inspected before they are forwarded
//! (block → the connector never sees the call; mask → it sees the masked arguments), and its
//! result before it is returned. The rules and detectors live in the `dlp` crate; this module
//! turns their verdicts into JSON-RPC errors and audit findings (detector names and counts,
//! never the values).

#![allow(
    deprecated,
    reason = "log messages are deprecated by SEP-2577 but are live in the legacy era we serve"
)]

use std::sync::Arc;

use dlp::{Action, Direction, Dlp, Findings, MessageRun, Target, Verdict};
use proto::audit::v1::{DlpAction, DlpDirection};
use rmcp::model::{
    ErrorCode, ErrorData, JsonObject, LoggingMessageNotificationParam, ProgressNotificationParam,
};
use rmcp::{Peer, RoleServer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::audit::CallRecord;

/// JSON-RPC code of a call refused by inspection (implementation-defined server error range).
pub const DLP_BLOCKED: ErrorCode = ErrorCode(-32004);

/// The detector name findings of the external inspection hook are recorded under.
const HOOK_DETECTOR: &str = "inspection_hook";

/// The DLP rules in force, or none; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Inspector {
    dlp: Option<Arc<Dlp>>,
}

/// What the client is told was refused: the item, never the value.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// `tool`, `prompt` or `resource`.
    pub kind: &'a str,
    /// The exposed name (or URI) the client used.
    pub name: &'a str,
}

/// Masks what a downstream sends during one call (progress and log messages) before it is relayed.
///
/// One per call, shared by its rounds: the call's progress messages read as one text and its
/// log messages as another, so a value cut between two messages is still masked (see
/// [`dlp::MessageRun`]). A message whose tail could start a value is held until the next
/// message, or the call's answer, decides it; log data that is not a string is masked whole.
#[derive(Debug, Clone)]
pub struct NotificationMask {
    dlp: Arc<Dlp>,
    side: dlp::Side,
    progress: Arc<Mutex<MessageRun<ProgressNotificationParam>>>,
    logs: Arc<Mutex<MessageRun<LoggingMessageNotificationParam>>>,
}

impl NotificationMask {
    /// Relays a progress message, and any held before it that it decides, in order.
    ///
    /// The lock is held while sending, so messages reach the client in the order they were
    /// decided.
    pub async fn relay_progress(&self, peer: &Peer<RoleServer>, params: ProgressNotificationParam) {
        let mut run = self.progress.lock().await;
        let text = params.message.clone().unwrap_or_default();
        let released = run.push(&self.dlp, self.side, params, text);
        send_progress(peer, released).await;
        log_findings(run.take_findings());
    }

    /// Relays a log message, and any held before it that it decides, in order.
    pub async fn relay_log(
        &self,
        peer: &Peer<RoleServer>,
        mut params: LoggingMessageNotificationParam,
    ) {
        let mut run = self.logs.lock().await;
        let text = match &mut params.data {
            Value::String(text) => std::mem::take(text),
            structured => {
                log_findings(self.dlp.mask(structured, self.side));
                String::new()
            }
        };
        let released = run.push(&self.dlp, self.side, params, text);
        send_logs(peer, released).await;
        log_findings(run.take_findings());
    }

    /// Relays what is still held: the call has its answer, so nothing more can follow.
    pub async fn flush(&self, peer: &Peer<RoleServer>) {
        let mut progress = self.progress.lock().await;
        send_progress(peer, progress.finish(&self.dlp, self.side)).await;
        log_findings(progress.take_findings());
        let mut logs = self.logs.lock().await;
        send_logs(peer, logs.finish(&self.dlp, self.side)).await;
        log_findings(logs.take_findings());
    }
}

async fn send_progress(
    peer: &Peer<RoleServer>,
    released: Vec<(ProgressNotificationParam, String)>,
) {
    for (mut params, text) in released {
        if params.message.is_some() {
            params.message = Some(text);
        }
        let _ = peer.notify_progress(params).await;
    }
}

async fn send_logs(
    peer: &Peer<RoleServer>,
    released: Vec<(LoggingMessageNotificationParam, String)>,
) {
    for (mut params, text) in released {
        if let Value::String(data) = &mut params.data {
            *data = text;
        }
        let _ = peer.notify_logging_message(params).await;
    }
}

/// Findings are logged by name and count: a notification has no audit record.
fn log_findings(findings: Findings) {
    if !findings.is_empty() {
        tracing::info!(detectors = %findings.names(), "masked a relayed notification");
    }
}

impl Inspector {
    /// Returns an inspector that inspects nothing (no `dlp:` rules).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Enforces `dlp` on every call its rules cover.
    pub fn new(dlp: Dlp) -> Self {
        Self {
            dlp: Some(Arc::new(dlp)),
        }
    }

    /// Inspects a call's arguments before they are forwarded, masking them in place.
    ///
    /// When anything is found, the audit record's argument metadata is recomputed from the
    /// masked arguments, so not even the digest is taken over a sensitive value.
    pub async fn input(
        &self,
        target: &Target<'_>,
        item: Item<'_>,
        arguments: &mut Option<JsonObject>,
        record: &mut CallRecord,
    ) -> Result<(), ErrorData> {
        let Some(dlp) = self.covering(target, Direction::Input) else {
            return Ok(());
        };
        let Some(object) = arguments.take() else {
            return Ok(());
        };
        let mut value = Value::Object(object);
        let inspected = inspect(dlp, target, Direction::Input, &mut value, record).await;
        let Value::Object(object) = value else {
            return Err(refusal(
                item,
                Direction::Input,
                "the inspection service's replacement is not an object",
            ));
        };
        *arguments = Some(object);
        inspected.map_err(|names| refusal(item, Direction::Input, &names))
    }

    /// Inspects a result before it is returned, masking it in place.
    pub async fn output<T: Serialize + DeserializeOwned>(
        &self,
        target: &Target<'_>,
        item: Item<'_>,
        result: &mut T,
        record: &mut CallRecord,
    ) -> Result<(), ErrorData> {
        let Some(dlp) = self.covering(target, Direction::Output) else {
            return Ok(());
        };
        // A result that cannot be inspected is withheld: masking fails closed.
        let mut value = serde_json::to_value(&*result)
            .map_err(|_| refusal(item, Direction::Output, "uninspectable content"))?;
        let original = value.clone();
        inspect(dlp, target, Direction::Output, &mut value, record)
            .await
            .map_err(|names| refusal(item, Direction::Output, &names))?;
        if value != original {
            *result = serde_json::from_value(value).map_err(|_| {
                refusal(
                    item,
                    Direction::Output,
                    "a replacement that is not a valid result",
                )
            })?;
        }
        Ok(())
    }

    /// Returns a fresh mask for what the downstream sends during one call to `target`, if the
    /// call's output is masked.
    pub fn notifications(&self, target: &Target<'_>) -> Option<NotificationMask> {
        let dlp = self.dlp.as_ref()?;
        if !dlp.covers(target.virtual_server) {
            return None;
        }
        let side = dlp.side(target, Direction::Output)?;
        (side.action == Action::Mask).then(|| NotificationMask {
            dlp: Arc::clone(dlp),
            side,
            progress: Arc::default(),
            logs: Arc::default(),
        })
    }

    /// Returns the rules when any of them applies to `direction` of calls to `target`, so an
    /// uncovered call pays for no serialization.
    fn covering(&self, target: &Target<'_>, direction: Direction) -> Option<&Dlp> {
        self.dlp.as_deref().filter(|dlp| {
            dlp.covers(target.virtual_server)
                && (dlp.side(target, direction).is_some() || dlp.hook(target, direction).is_some())
        })
    }
}

/// Applies the detectors, then the hook; `Err` carries what the client is told blocked it.
async fn inspect(
    dlp: &Dlp,
    target: &Target<'_>,
    direction: Direction,
    value: &mut Value,
    record: &mut CallRecord,
) -> Result<(), String> {
    if let Some(side) = dlp.side(target, direction) {
        let mut masked = value.clone();
        let findings = dlp.mask(&mut masked, side);
        if !findings.is_empty() {
            record_findings(record, direction, side.action, &findings);
            if direction == Direction::Input {
                record.arguments(masked.as_object());
            }
            match side.action {
                Action::Block => return Err(findings.names()),
                Action::Mask => *value = masked,
                Action::Flag => {}
            }
        }
    }
    let Some(hook) = dlp.hook(target, direction) else {
        return Ok(());
    };
    let mut verdict = Findings::default();
    verdict.add(HOOK_DETECTOR, 1);
    match hook.verdict(direction, target, value).await {
        Verdict::Allow => Ok(()),
        Verdict::Block => {
            record_findings(record, direction, Action::Block, &verdict);
            Err("the inspection service".to_owned())
        }
        Verdict::Replace(replacement) => {
            record_findings(record, direction, Action::Mask, &verdict);
            if direction == Direction::Input {
                record.arguments(replacement.as_object());
            }
            *value = replacement;
            Ok(())
        }
    }
}

fn record_findings(
    record: &mut CallRecord,
    direction: Direction,
    action: Action,
    findings: &Findings,
) {
    let direction = match direction {
        Direction::Input => DlpDirection::Input,
        Direction::Output => DlpDirection::Output,
    };
    let action = match action {
        Action::Block => DlpAction::Block,
        Action::Mask => DlpAction::Mask,
        Action::Flag => DlpAction::Flag,
    };
    record.dlp_findings(direction, action, findings.iter());
}

/// The client's error: names the item and the detector classes, never a matched value.
fn refusal(item: Item<'_>, direction: Direction, why: &str) -> ErrorData {
    let side = match direction {
        Direction::Input => "input was blocked",
        Direction::Output => "result was withheld",
    };
    let message = format!(
        "{} `{}`: the {side} by data loss prevention ({why})",
        item.kind, item.name
    );
    let data = serde_json::json!({"reason": "dlp", "direction": direction});
    ErrorData::new(DLP_BLOCKED, message, Some(data))
}
