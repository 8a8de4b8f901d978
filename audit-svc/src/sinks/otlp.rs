//! The OTLP logs sink: one `ExportLogsServiceRequest` per batch, over OTLP/HTTP
//! (protobuf posted to `<endpoint>/v1/logs`) or OTLP/gRPC (`LogsService/Export`).
//! Each event is one log record: the rendering as body, the facets, id, sequence
//! and leaf hash as attributes, and the trace id when it is a W3C one.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use reqwest::header::CONTENT_TYPE;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use super::config::{OtlpConfig, OtlpProtocol};
use super::{Failure, Record, Transport, classify_status, transient, truncate};
use crate::checkpoint::Checkpoint;
use crate::error::Error;

/// Is OTLP's severity number for INFO.
const SEVERITY_INFO: i32 = 9;
/// Is OTLP's severity number for WARN.
const SEVERITY_WARN: i32 = 13;

/// Delivers to one OTLP logs receiver.
#[derive(Debug)]
pub(crate) struct OtlpTransport {
    exporter: Exporter,
    service_name: String,
}

/// Is the wire an [`OtlpTransport`] speaks.
#[derive(Debug)]
enum Exporter {
    Http {
        client: reqwest::Client,
        url: String,
    },
    Grpc {
        client: LogsServiceClient<Channel>,
    },
}

impl OtlpTransport {
    /// Returns the transport; a gRPC channel connects on first use, so a receiver
    /// that starts later is simply retried.
    pub(crate) fn new(config: &OtlpConfig) -> Result<Self, Error> {
        let setup = |reason: String| Error::SinkSetup {
            field: "otlp",
            reason,
        };
        let base = config.endpoint.trim_end_matches('/');
        reqwest::Url::parse(base).map_err(|error| setup(format!("endpoint: {error}")))?;
        let exporter = match config.protocol {
            OtlpProtocol::HttpProtobuf => Exporter::Http {
                client: reqwest::Client::builder()
                    .timeout(config.timeout)
                    .build()
                    .map_err(|error| setup(format!("http client: {}", error.without_url())))?,
                url: format!("{base}/v1/logs"),
            },
            OtlpProtocol::Grpc => {
                let channel = tonic::transport::Endpoint::from_shared(base.to_owned())
                    .map_err(|error| setup(format!("endpoint: {error}")))?
                    .connect_timeout(config.timeout)
                    .timeout(config.timeout)
                    .tcp_nodelay(true)
                    .connect_lazy();
                Exporter::Grpc {
                    client: LogsServiceClient::new(channel),
                }
            }
        };
        Ok(Self {
            exporter,
            service_name: config.service_name.clone(),
        })
    }

    async fn export(&mut self, records: Vec<LogRecord>) -> Result<(), Failure> {
        let request = export_request(&self.service_name, records);
        let answer = match &mut self.exporter {
            Exporter::Http { client, url } => export_http(client, url, request).await?,
            Exporter::Grpc { client } => client
                .export(request)
                .await
                .map_err(|status| grpc_failure(&status))?
                .into_inner(),
        };
        rejected(answer.partial_success)
    }
}

async fn export_http(
    client: &reqwest::Client,
    url: &str,
    request: ExportLogsServiceRequest,
) -> Result<ExportLogsServiceResponse, Failure> {
    let response = client
        .post(url)
        .header(CONTENT_TYPE, "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .map_err(transient)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(transient)?;
    if !status.is_success() {
        return Err(classify_status(
            status,
            &headers,
            &String::from_utf8_lossy(&body),
        ));
    }
    Ok(ExportLogsServiceResponse::decode(body.as_ref()).unwrap_or_default())
}

/// A partial success names records the receiver dropped for good.
fn rejected(partial: Option<ExportLogsPartialSuccess>) -> Result<(), Failure> {
    match partial {
        Some(partial) if partial.rejected_log_records > 0 => Err(Failure::Reject {
            reason: format!(
                "receiver rejected {} log records: {}",
                partial.rejected_log_records, partial.error_message
            ),
        }),
        _ => Ok(()),
    }
}

/// Classifies a gRPC status as the OTLP specification's "Failures" section does:
/// these codes are retryable, `RESOURCE_EXHAUSTED` only when the receiver sends
/// `RetryInfo`, whose delay is honoured; every other code is a permanent refusal.
fn grpc_failure(status: &tonic::Status) -> Failure {
    use tonic::Code;
    let reason = format!(
        "grpc {:?}: {}",
        status.code(),
        truncate(status.message(), 200)
    );
    let retry_info = status.get_details_retry_info();
    let after = retry_info
        .as_ref()
        .and_then(|info| info.retry_delay)
        .map(|delay| delay.min(Duration::from_secs(300)));
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Failure::Retry { after, reason },
        Code::ResourceExhausted if retry_info.is_some() => Failure::Retry { after, reason },
        _ => Failure::Reject { reason },
    }
}

#[async_trait]
impl Transport for OtlpTransport {
    async fn deliver(&mut self, batch: &[Record<'_>]) -> Result<(), Failure> {
        self.export(batch.iter().map(log_record).collect()).await
    }

    async fn anchor(&mut self, checkpoint: &Checkpoint) -> Result<(), Failure> {
        let time = nanos(checkpoint.time_micros);
        let record = LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            severity_number: SEVERITY_INFO,
            severity_text: "INFO".to_owned(),
            body: Some(string_value(&checkpoint.signed_note)),
            attributes: vec![
                attribute("gatehouse.audit.kind", "checkpoint"),
                attribute(
                    "gatehouse.audit.tree_size",
                    &checkpoint.tree_size.to_string(),
                ),
                attribute(
                    "gatehouse.audit.root_hash",
                    &STANDARD.encode(checkpoint.root_hash),
                ),
            ],
            ..LogRecord::default()
        };
        self.export(vec![record]).await
    }
}

/// Returns the request carrying `records` under one resource and scope.
pub(crate) fn export_request(
    service_name: &str,
    records: Vec<LogRecord>,
) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![attribute("service.name", service_name)],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "gatehouse.audit".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// Returns one event as an OTLP log record.
pub(crate) fn log_record(record: &Record<'_>) -> LogRecord {
    let stored = record.event;
    let facets = &stored.event.facets;
    let denied = facets.verdict == "VERDICT_DENY";
    let mut attributes = vec![
        attribute("gatehouse.audit.event_id", stored.event.id.as_str()),
        attribute("gatehouse.audit.sequence", &stored.sequence.to_string()),
        attribute(
            "gatehouse.audit.leaf_hash",
            &STANDARD.encode(stored.leaf_hash),
        ),
    ];
    for (key, value) in [
        ("gatehouse.audit.kind", &facets.kind),
        ("gatehouse.audit.verdict", &facets.verdict),
        ("gatehouse.audit.outcome", &facets.outcome),
        ("enduser.id", &facets.member_id),
        ("gatehouse.agent.client_id", &facets.agent_client_id),
        ("gatehouse.virtual_server", &facets.virtual_server),
        ("gatehouse.connector", &facets.connector),
        ("gen_ai.tool.name", &facets.tool),
    ] {
        if !value.is_empty() {
            attributes.push(attribute(key, value));
        }
    }
    LogRecord {
        time_unix_nano: nanos(stored.event.time_micros),
        observed_time_unix_nano: nanos(stored.recorded_at_micros),
        severity_number: if denied { SEVERITY_WARN } else { SEVERITY_INFO },
        severity_text: if denied { "WARN" } else { "INFO" }.to_owned(),
        body: Some(string_value(&record.rendered.text)),
        attributes,
        trace_id: trace_id(&facets.trace_id),
        ..LogRecord::default()
    }
}

fn nanos(micros: i64) -> u64 {
    u64::try_from(micros).unwrap_or(0).saturating_mul(1000)
}

fn string_value(value: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(value.to_owned())),
    }
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(string_value(value)),
        ..KeyValue::default()
    }
}

/// Returns a W3C trace id (32 hex digits, not all zero) as 16 bytes; anything
/// else stays an attribute-free empty id.
fn trace_id(text: &str) -> Vec<u8> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Vec::new();
    }
    let bytes: Vec<u8> = (0..16)
        .filter_map(|i| u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok())
        .collect();
    if bytes.iter().all(|b| *b == 0) {
        Vec::new()
    } else {
        bytes
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Code;
    use tonic_types::{ErrorDetails, StatusExt as _};

    use super::{Failure, grpc_failure};

    fn retried_after(failure: Failure) -> Option<Option<Duration>> {
        match failure {
            Failure::Retry { after, .. } => Some(after),
            Failure::Reject { .. } => None,
        }
    }

    #[test]
    fn otlp_grpc_retryable_codes_are_retried_and_the_rest_refused_for_good() {
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            let failure = grpc_failure(&tonic::Status::new(code, "busy"));
            assert_eq!(retried_after(failure), Some(None), "{code:?} is retryable");
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::ResourceExhausted,
        ] {
            let failure = grpc_failure(&tonic::Status::new(code, "no"));
            assert_eq!(retried_after(failure), None, "{code:?} is not retryable");
        }
    }

    #[test]
    fn resource_exhausted_with_retry_info_is_retried_after_the_receivers_delay() {
        let status = tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(7))),
        );
        assert_eq!(
            retried_after(grpc_failure(&status)),
            Some(Some(Duration::from_secs(7)))
        );
    }
}
