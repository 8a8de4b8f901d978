//! Input inspection and output masking (DLP) on the proxy path.
//!
//! Runs after the policy decision: a call's arguments are inspected before they are forwarded
//! (block → the connector never sees the call; mask → it sees the masked arguments), and its
//! result before it is returned. The rules and detectors live in the `dlp` crate; this module
//! turns their verdicts into JSON-RPC errors and audit findings (detector names and counts,
//! never the values).

use std::sync::Arc;

use dlp::{Action, Direction, Dlp, Findings, Target, Verdict};
use proto::audit::v1::{DlpAction, DlpDirection};
use rmcp::model::{ErrorCode, ErrorData, JsonObject};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
/// Each message is masked whole, with the call's output rule. A relayed message cannot be
/// recalled, so a value split across two messages is found only when each part matches on its
/// own; the byte-stream case is [`dlp::TextStream`]'s carry-over window, which would change what
/// each message says and is therefore not applied to discrete notifications.
#[derive(Debug, Clone)]
pub struct NotificationMask {
    dlp: Arc<Dlp>,
    side: dlp::Side,
}

impl NotificationMask {
    /// Masks `value` in place; findings are logged by name and count (a notification has no audit record).
    pub fn apply(&self, value: &mut Value) {
        let findings = self.dlp.mask(value, self.side);
        if !findings.is_empty() {
            tracing::info!(detectors = %findings.names(), "masked a relayed notification");
        }
    }

    /// Masks an optional text in place.
    pub fn apply_text(&self, text: &mut Option<String>) {
        if let Some(text) = text {
            let mut value = Value::String(std::mem::take(text));
            self.apply(&mut value);
            if let Value::String(masked) = value {
                *text = masked;
            }
        }
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

    /// Returns the mask for what the downstream sends during a call to `target`, if the call's
    /// output is masked.
    pub fn notifications(&self, target: &Target<'_>) -> Option<NotificationMask> {
        let dlp = self.dlp.as_ref()?;
        if !dlp.covers(target.virtual_server) {
            return None;
        }
        let side = dlp.side(target, Direction::Output)?;
        (side.action == Action::Mask).then(|| NotificationMask {
            dlp: Arc::clone(dlp),
            side,
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
