//! The Splunk HTTP Event Collector sink: batches of concatenated JSON event
//! envelopes posted to `/services/collector/event` with `Authorization: Splunk
//! <token>`, and, when indexer acknowledgement is on, a request channel and
//! polling of `/services/collector/ack` until the batch's ack id is `true`.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};

use super::config::{HecConfig, Shape};
use super::{Failure, Record, Transport, classify_status, transient};
use crate::checkpoint::Checkpoint;
use crate::error::Error;

/// Is the header that names the request channel acknowledgements belong to.
const CHANNEL_HEADER: &str = "X-Splunk-Request-Channel";

/// Delivers to one HTTP Event Collector.
#[derive(Debug)]
pub(crate) struct HecTransport {
    client: reqwest::Client,
    config: HecConfig,
    event_url: String,
    ack_url: String,
    authorization: HeaderValue,
    channel: String,
    sourcetype: String,
}

impl HecTransport {
    /// Returns the transport, with a fresh request channel.
    pub(crate) fn new(config: &HecConfig, shape: Shape) -> Result<Self, Error> {
        let setup = |reason: String| Error::SinkSetup {
            field: "splunk_hec",
            reason,
        };
        let base = config.url.trim_end_matches('/');
        reqwest::Url::parse(base).map_err(|error| setup(format!("url: {error}")))?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|error| setup(format!("http client: {}", error.without_url())))?;
        let mut authorization = HeaderValue::from_str(&format!("Splunk {}", config.token.expose()))
            .map_err(|_| setup("token is not a valid header value".to_owned()))?;
        authorization.set_sensitive(true);
        let sourcetype = config.sourcetype.clone().unwrap_or_else(|| {
            match shape {
                Shape::Native => "gatehouse:audit:v1",
                Shape::Ocsf => "gatehouse:audit:ocsf",
                Shape::Cef => "gatehouse:audit:cef",
            }
            .to_owned()
        });
        Ok(Self {
            client,
            event_url: format!("{base}/services/collector/event"),
            ack_url: format!("{base}/services/collector/ack"),
            authorization,
            channel: new_channel()?,
            sourcetype,
            config: config.clone(),
        })
    }

    /// Posts one body; returns its ack id when acknowledgement is on.
    async fn post(&self, body: Vec<u8>) -> Result<Option<u64>, Failure> {
        let mut request = self
            .client
            .post(&self.event_url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if self.config.ack {
            request = request.header(CHANNEL_HEADER, &self.channel);
        }
        let response = request.send().await.map_err(transient)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(transient)?;
        if !status.is_success() {
            return Err(hec_failure(status, &headers, &text));
        }
        if !self.config.ack {
            return Ok(None);
        }
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match answer.get("ackId").and_then(Value::as_u64) {
            Some(id) => Ok(Some(id)),
            None => Err(Failure::Retry {
                after: None,
                reason: "collector answered without an ackId (is useACK on?)".to_owned(),
            }),
        }
    }

    /// Polls until every id in `pending` is acknowledged, or fails after
    /// `ack_timeout` (the batch is then resent: `false` means pending or lost).
    async fn await_acks(&self, mut pending: Vec<u64>) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + self.config.ack_timeout;
        while !pending.is_empty() {
            let response = self
                .client
                .post(format!("{}?channel={}", self.ack_url, self.channel))
                .header(AUTHORIZATION, self.authorization.clone())
                .header(CHANNEL_HEADER, &self.channel)
                .json(&json!({ "acks": pending }))
                .send()
                .await
                .map_err(transient)?;
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.text().await.map_err(transient)?;
            if !status.is_success() {
                return Err(hec_failure(status, &headers, &text));
            }
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            pending.retain(|id| {
                answer
                    .get("acks")
                    .and_then(|acks| acks.get(id.to_string()))
                    .and_then(Value::as_bool)
                    != Some(true)
            });
            if pending.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Failure::Retry {
                    after: None,
                    reason: format!("no indexer acknowledgement for ack ids {pending:?}"),
                });
            }
            tokio::time::sleep(self.config.ack_poll).await;
        }
        Ok(())
    }

    async fn send(&self, envelopes: &[String]) -> Result<(), Failure> {
        let mut pending = Vec::new();
        for body in bodies(envelopes, self.config.max_body_bytes) {
            if let Some(id) = self.post(body).await? {
                pending.push(id);
            }
        }
        self.await_acks(pending).await
    }

    fn envelope(&self, time_micros: i64, fields: Value, event: &str, is_json: bool) -> String {
        let mut head = json!({
            "time": time_micros as f64 / 1e6,
            "source": self.config.source,
            "sourcetype": self.sourcetype,
            "fields": fields,
        });
        if let (Some(index), Some(object)) = (&self.config.index, head.as_object_mut()) {
            object.insert("index".to_owned(), Value::String(index.clone()));
        }
        let head = head.to_string();
        let event = if is_json {
            event.to_owned()
        } else {
            Value::String(event.to_owned()).to_string()
        };
        // The event goes in verbatim, so a native event keeps its canonical bytes.
        format!("{},\"event\":{event}}}", &head[..head.len() - 1])
    }
}

#[async_trait]
impl Transport for HecTransport {
    async fn deliver(&mut self, batch: &[Record<'_>]) -> Result<(), Failure> {
        let envelopes: Vec<String> = batch
            .iter()
            .map(|record| {
                let stored = record.event;
                let facets = &stored.event.facets;
                let fields = json!({
                    "event_id": stored.event.id.as_str(),
                    "seq": stored.sequence.to_string(),
                    "leaf_hash": STANDARD.encode(stored.leaf_hash),
                    "kind": facets.kind,
                    "verdict": facets.verdict,
                    "outcome": facets.outcome,
                    "member": facets.member_id,
                    "agent": facets.agent_client_id,
                    "virtual_server": facets.virtual_server,
                    "connector": facets.connector,
                    "tool": facets.tool,
                });
                self.envelope(
                    stored.event.time_micros,
                    fields,
                    &record.rendered.text,
                    record.rendered.is_json,
                )
            })
            .collect();
        self.send(&envelopes).await
    }

    async fn anchor(&mut self, checkpoint: &Checkpoint) -> Result<(), Failure> {
        let event = json!({
            "checkpoint": checkpoint.signed_note,
            "treeSize": checkpoint.tree_size.to_string(),
            "rootHash": STANDARD.encode(checkpoint.root_hash),
        });
        let fields = json!({ "kind": "checkpoint", "tree_size": checkpoint.tree_size.to_string() });
        let envelope = self.envelope(checkpoint.time_micros, fields, &event.to_string(), true);
        self.send(&[envelope]).await
    }
}

/// Returns what an HEC error status means. Besides the generic rules, 401, 403
/// and 404 are retried rather than refused: a wrong token or URL is the
/// operator's to fix, and must not dead-letter every event.
fn hec_failure(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> Failure {
    match classify_status(status, headers, body) {
        Failure::Reject { reason } if matches!(status.as_u16(), 401 | 403 | 404) => {
            Failure::Retry {
                after: None,
                reason,
            }
        }
        other => other,
    }
}

/// Returns the envelopes packed into bodies of at most `limit` bytes
/// (concatenated objects, no array); an envelope larger than `limit` goes alone.
fn bodies(envelopes: &[String], limit: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for envelope in envelopes {
        if !current.is_empty() && current.len() + envelope.len() > limit {
            bodies.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(envelope.as_bytes());
    }
    if !current.is_empty() {
        bodies.push(current);
    }
    bodies
}

/// Returns a random GUID for the request channel.
fn new_channel() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| Error::Randomness)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_stay_under_the_limit_and_keep_order() {
        let envelopes: Vec<String> = (0..5).map(|i| format!("{{\"event\":{i}}}")).collect();
        let packed = bodies(&envelopes, 25);
        assert_eq!(packed.len(), 3);
        assert!(packed.iter().all(|body| body.len() <= 25));
        assert_eq!(packed.concat(), envelopes.concat().into_bytes());
    }

    #[test]
    fn channel_is_a_guid() {
        let channel = new_channel().unwrap();
        assert_eq!(channel.len(), 36);
        assert_eq!(channel.matches('-').count(), 4);
    }
}
