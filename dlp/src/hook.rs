//! The external inspection hook: an enterprise DLP or guardrail service asked about a call.
//!
//! Gatehouse POSTs `{direction, virtual_server, connector, tool, payload}` as JSON and acts on
//! the answer `{action: allow|block|replace, payload?}`. The payload is the call's own content
//! (after Gatehouse's detectors have masked it where they mask); nothing of Gatehouse's own —
//! tokens, credentials — is ever sent. When the service fails or is slow, `on_error` decides:
//! there is no default, because either choice is a security decision the operator must make.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::error::{ConfigError, HookError};
use crate::rule::{Direction, Target};

/// A hook as written in a rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// The service's endpoint (http or https).
    pub url: Url,
    /// How long the service has to answer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// What a failure or a timeout means.
    pub on_error: OnError,
    /// Which sides of a call are sent; both when omitted.
    #[serde(default = "both_directions")]
    pub directions: Vec<Direction>,
}

/// What a hook failure means for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The call is refused: nothing passes that the service has not seen.
    FailClosed,
    /// The call proceeds as if the service had allowed it, and a warning is logged.
    FailOpen,
}

/// What the hook decided about one payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Pass the payload on unchanged.
    Allow,
    /// Refuse the call.
    Block,
    /// Pass this payload on instead (the service's masked version).
    Replace(Value),
}

/// A compiled hook with its HTTP client.
#[derive(Debug)]
pub struct Hook {
    url: Url,
    timeout: Duration,
    on_error: OnError,
    directions: Vec<Direction>,
    client: reqwest::Client,
}

#[derive(Debug, Serialize)]
struct HookRequest<'a> {
    direction: Direction,
    virtual_server: &'a str,
    connector: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
    payload: &'a Value,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum HookAnswer {
    Allow,
    Block,
    Replace { payload: Value },
}

fn default_timeout_ms() -> u64 {
    500
}

fn both_directions() -> Vec<Direction> {
    vec![Direction::Input, Direction::Output]
}

impl Hook {
    pub(crate) fn new(
        config: &HookConfig,
        client: reqwest::Client,
        field: &str,
    ) -> Result<Self, ConfigError> {
        if !matches!(config.url.scheme(), "http" | "https") {
            return Err(ConfigError::invalid(
                format!("{field}.url"),
                "must be an http or https URL".to_owned(),
            ));
        }
        if config.timeout_ms == 0 {
            return Err(ConfigError::invalid(
                format!("{field}.timeout_ms"),
                "must be at least 1".to_owned(),
            ));
        }
        Ok(Self {
            url: config.url.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            on_error: config.on_error,
            directions: config.directions.clone(),
            client,
        })
    }

    /// Says whether this hook is asked about `direction`.
    pub fn covers(&self, direction: Direction) -> bool {
        self.directions.contains(&direction)
    }

    /// Asks the service about `payload`; a failure becomes the verdict `on_error` names.
    pub async fn verdict(
        &self,
        direction: Direction,
        target: &Target<'_>,
        payload: &Value,
    ) -> Verdict {
        match self.ask(direction, target, payload).await {
            Ok(verdict) => verdict,
            Err(error) => {
                let verdict = match self.on_error {
                    OnError::FailClosed => Verdict::Block,
                    OnError::FailOpen => Verdict::Allow,
                };
                tracing::warn!(
                    %error,
                    hook = %self.url,
                    virtual_server = target.virtual_server,
                    on_error = ?self.on_error,
                    "inspection hook failed"
                );
                verdict
            }
        }
    }

    /// Asks the service about `payload` and returns its verdict, or why there is none.
    pub async fn ask(
        &self,
        direction: Direction,
        target: &Target<'_>,
        payload: &Value,
    ) -> Result<Verdict, HookError> {
        let request = HookRequest {
            direction,
            virtual_server: target.virtual_server,
            connector: target.connector,
            tool: target.tool,
            payload,
        };
        let sent = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .json(&request)
            .send()
            .await
            .map_err(classify)?;
        let status = sent.status();
        if !status.is_success() {
            return Err(HookError::Status(status.as_u16()));
        }
        let body = sent.bytes().await.map_err(classify)?;
        let answer: HookAnswer =
            serde_json::from_slice(&body).map_err(|error| HookError::Verdict(error.to_string()))?;
        Ok(match answer {
            HookAnswer::Allow => Verdict::Allow,
            HookAnswer::Block => Verdict::Block,
            HookAnswer::Replace { payload } => Verdict::Replace(payload),
        })
    }
}

fn classify(error: reqwest::Error) -> HookError {
    if error.is_timeout() {
        HookError::Timeout
    } else {
        HookError::Unreachable(error)
    }
}
