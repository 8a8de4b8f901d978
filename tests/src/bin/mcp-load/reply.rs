//! Decoding of JSON-RPC replies carried either as one `application/json` body or as the
//! `data:` of `text/event-stream` events, and the check that a tool call echoed its input.

use anyhow::{Context, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The result of a `tools/call`, as far as the echo check needs it.
#[derive(Debug, Deserialize)]
pub(crate) struct ToolResult {
    #[serde(default)]
    content: Vec<ContentBlock>,
    #[serde(default, rename = "isError")]
    is_error: bool,
}

/// The result of an `initialize`, as far as a legacy-era session needs it.
#[derive(Debug, Deserialize)]
pub(crate) struct InitializeResult {
    /// The protocol revision the server agreed to speak.
    #[serde(rename = "protocolVersion")]
    pub(crate) protocol_version: String,
}

#[derive(Debug, Deserialize)]
struct ContentBlock {
    #[serde(default)]
    text: Option<String>,
}

/// One JSON-RPC message: a response when `result` or `error` is present.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    id: Option<serde_json::Value>,
    result: Option<T>,
    error: Option<RpcError>,
}

/// Only the `id` of a message, read first so that events answering other requests or
/// carrying notifications are skipped without decoding their payloads.
#[derive(Debug, Deserialize)]
struct IdOnly {
    id: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RpcError {
    code: i64,
    message: String,
}

impl ToolResult {
    /// Returns an error unless the call succeeded and its first text block equals `expected`.
    pub(crate) fn check_echo(&self, expected: &str) -> anyhow::Result<()> {
        if self.is_error {
            bail!(
                "tool reported an error: {:?}",
                self.content.first().and_then(|c| c.text.as_deref())
            );
        }
        match self.content.first().and_then(|block| block.text.as_deref()) {
            Some(text) if text == expected => Ok(()),
            other => bail!("tool echoed {other:?} instead of {expected:?}"),
        }
    }
}

/// Returns the `result` of the reply to request `id` in a response body of `content_type`.
pub(crate) fn result_for<T: DeserializeOwned>(
    content_type: &str,
    body: &[u8],
    id: u64,
) -> anyhow::Result<T> {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        let envelope: Envelope<T> =
            serde_json::from_slice(body).context("reply is not a json-rpc message")?;
        return envelope.into_result(id);
    }
    if media_type.eq_ignore_ascii_case("text/event-stream") {
        let text = std::str::from_utf8(body).context("event stream is not utf-8")?;
        for data in event_data(text) {
            let Ok(IdOnly { id: Some(event_id) }) = serde_json::from_str::<IdOnly>(&data) else {
                continue;
            };
            if event_id.as_u64() == Some(id) {
                let envelope: Envelope<T> =
                    serde_json::from_str(&data).context("event is not a json-rpc message")?;
                return envelope.into_result(id);
            }
        }
        bail!("no reply to request {id} in the event stream");
    }
    bail!("unexpected content type {content_type:?}")
}

impl<T> Envelope<T> {
    fn into_result(self, id: u64) -> anyhow::Result<T> {
        if self.id.as_ref().and_then(serde_json::Value::as_u64) != Some(id) {
            bail!("reply id {:?} does not answer request {id}", self.id);
        }
        if let Some(RpcError { code, message }) = self.error {
            bail!("json-rpc error {code}: {message}");
        }
        self.result
            .with_context(|| format!("reply to request {id} has neither result nor error"))
    }
}

/// Returns the data of each event in an SSE body, multi-line data joined with `\n` as the
/// SSE specification says; events without data (such as priming events) are skipped.
fn event_data(body: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in body
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
    {
        if line.is_empty() {
            events.extend(data.take());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field != "data" {
            continue;
        }
        let value = value.strip_prefix(' ').unwrap_or(value);
        match data.as_mut() {
            Some(existing) => {
                existing.push('\n');
                existing.push_str(value);
            }
            None => data = Some(value.to_owned()),
        }
    }
    events.extend(data);
    events.retain(|event| !event.is_empty());
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"w0-1"}],"isError":false}}"#;

    #[test]
    fn json_reply_with_matching_echo_passes() {
        let result: ToolResult = result_for("application/json", ECHO.as_bytes(), 7).unwrap();
        result.check_echo("w0-1").unwrap();
    }

    #[test]
    fn sse_reply_after_priming_event_and_notification_is_found() {
        let body = format!(
            "id: 0\ndata:\n\n\
             event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{}}}}\n\n\
             id: 1\r\nevent: message\r\ndata: {ECHO}\r\n\r\n"
        );
        let result: ToolResult =
            result_for("text/event-stream; charset=utf-8", body.as_bytes(), 7).unwrap();
        result.check_echo("w0-1").unwrap();
    }

    #[test]
    fn multi_line_data_is_joined() {
        assert_eq!(
            event_data("data: {\"a\":\ndata: 1}\n\n"),
            vec!["{\"a\":\n1}".to_owned()]
        );
    }

    #[test]
    fn wrong_echo_is_an_error() {
        let result: ToolResult = result_for("application/json", ECHO.as_bytes(), 7).unwrap();
        assert!(result.check_echo("w0-2").is_err());
    }

    #[test]
    fn reply_to_another_request_is_an_error() {
        assert!(result_for::<ToolResult>("application/json", ECHO.as_bytes(), 8).is_err());
        assert!(
            result_for::<ToolResult>(
                "text/event-stream",
                format!("data: {ECHO}\n\n").as_bytes(),
                8
            )
            .is_err()
        );
    }

    #[test]
    fn json_rpc_error_is_reported_with_its_code() {
        let body = r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"unknown tool"}}"#;
        let error = result_for::<ToolResult>("application/json", body.as_bytes(), 3).unwrap_err();
        assert!(error.to_string().contains("-32602"), "{error}");
    }

    #[test]
    fn tool_error_result_is_an_error() {
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x"}],"isError":true}}"#;
        let result: ToolResult = result_for("application/json", body.as_bytes(), 1).unwrap();
        assert!(result.check_echo("x").is_err());
    }
}
