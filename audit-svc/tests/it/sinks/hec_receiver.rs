//! A test receiver for the Splunk HTTP Event Collector protocol — not Splunk (no
//! Splunk can run here), but an implementation of its documented contract, so
//! the HEC sink is tested against the protocol rather than against itself:
//!
//! * `POST /services/collector/event` with `Authorization: Splunk <token>`
//!   (401 `{"text":"Invalid token","code":4}` otherwise); the body is JSON event
//!   envelopes concatenated without separators; an envelope without `event` is
//!   refused with 400 `{"text":"Invalid data format","code":6,
//!   "invalid-event-number":N}`;
//! * with acknowledgement on, `X-Splunk-Request-Channel` is required (400
//!   code 10 otherwise) and each request answers `{"text":"Success","code":0,
//!   "ackId":N}` with a per-channel counter; `POST /services/collector/ack
//!   ?channel=…` with `{"acks":[…]}` answers `{"acks":{"N":bool}}`, `true` only
//!   once the batch is "indexed" (here: from the second poll) and then forgotten;
//! * scripted failures: the next requests can be answered 429 or 503 with a
//!   `Retry-After`, and events whose `fields.tool` is `poison` are refused
//!   (400 code 6), as an indexer refuses an unparsable event.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// Is what the receiver saw and what it is told to do.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    /// Holds every indexed envelope, in arrival order.
    pub(crate) events: Vec<Value>,
    /// Holds when each event request arrived (accepted or not).
    pub(crate) requests: Vec<Instant>,
    /// Holds the Authorization headers seen.
    pub(crate) authorizations: Vec<String>,
    /// Counts ack polls.
    pub(crate) ack_polls: u32,
    /// Holds scripted answers for the next event requests: (status, Retry-After).
    pub(crate) fail_next: Vec<(u16, Option<u64>)>,
    channels: HashMap<String, Channel>,
}

#[derive(Debug, Default)]
struct Channel {
    next_ack: u64,
    /// ack id → polls seen while pending.
    pending: HashMap<u64, u32>,
}

/// Is a running receiver.
#[derive(Debug, Clone)]
pub(crate) struct HecReceiver {
    pub(crate) url: String,
    pub(crate) state: Arc<Mutex<Recorded>>,
}

#[derive(Debug, Clone)]
struct Shared {
    token: String,
    ack: bool,
    state: Arc<Mutex<Recorded>>,
}

impl HecReceiver {
    /// Starts a receiver on an ephemeral loopback port expecting `token`.
    pub(crate) async fn start(token: &str, ack: bool) -> Self {
        let state = Arc::new(Mutex::new(Recorded::default()));
        let shared = Shared {
            token: token.to_owned(),
            ack,
            state: state.clone(),
        };
        let app = Router::new()
            .route("/services/collector/event", post(event))
            .route("/services/collector/ack", post(ack_poll))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}"),
            state,
        }
    }

    pub(crate) fn events(&self) -> Vec<Value> {
        self.state.lock().unwrap().events.clone()
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(format!("Splunk {}", shared.token).as_str())
}

/// Splits concatenated JSON objects (`{..}{..}`) as HEC does.
fn envelopes(body: &[u8]) -> Result<Vec<Value>, usize> {
    let mut parsed = Vec::new();
    for (index, value) in serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .enumerate()
    {
        parsed.push(value.map_err(|_| index)?);
    }
    Ok(parsed)
}

async fn event(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut state = shared.state.lock().unwrap();
    state.requests.push(Instant::now());
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    state.authorizations.push(authorization);
    if !authorized(&shared, &headers) {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"text": "Invalid token", "code": 4}),
        );
    }
    if !state.fail_next.is_empty() {
        let (status, retry_after) = state.fail_next.remove(0);
        let mut response = answer(
            StatusCode::from_u16(status).unwrap(),
            json!({"text": "Server is busy", "code": 9}),
        );
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
        }
        return response;
    }
    let channel = headers
        .get("x-splunk-request-channel")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if shared.ack && channel.is_none() {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"text": "Data channel is missing", "code": 10}),
        );
    }
    let parsed = match envelopes(&body) {
        Ok(parsed) => parsed,
        Err(index) => {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"text": "Invalid data format", "code": 6, "invalid-event-number": index}),
            );
        }
    };
    // Events before the invalid one are indexed, as Splunk does.
    for (index, envelope) in parsed.into_iter().enumerate() {
        let poison = envelope["fields"]["tool"] == "poison";
        if envelope.get("event").is_none() || poison {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"text": "Invalid data format", "code": 6, "invalid-event-number": index}),
            );
        }
        state.events.push(envelope);
    }
    if !shared.ack {
        return answer(StatusCode::OK, json!({"text": "Success", "code": 0}));
    }
    let channel = state
        .channels
        .entry(channel.unwrap_or_default())
        .or_default();
    let id = channel.next_ack;
    channel.next_ack += 1;
    channel.pending.insert(id, 0);
    answer(
        StatusCode::OK,
        json!({"text": "Success", "code": 0, "ackId": id}),
    )
}

async fn ack_poll(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&shared, &headers) {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"text": "Invalid token", "code": 4}),
        );
    }
    let Some(channel_id) = query.get("channel") else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"text": "Data channel is missing", "code": 10}),
        );
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut state = shared.state.lock().unwrap();
    state.ack_polls += 1;
    let channel = state.channels.entry(channel_id.clone()).or_default();
    let mut acks = serde_json::Map::new();
    for id in request["acks"].as_array().into_iter().flatten() {
        let Some(id) = id.as_u64() else { continue };
        let done = match channel.pending.get_mut(&id) {
            // Indexed from the second poll on; `true` is answered once.
            Some(polls) if *polls >= 1 => {
                channel.pending.remove(&id);
                true
            }
            Some(polls) => {
                *polls += 1;
                false
            }
            None => false,
        };
        acks.insert(id.to_string(), Value::Bool(done));
    }
    answer(StatusCode::OK, json!({ "acks": acks }))
}
