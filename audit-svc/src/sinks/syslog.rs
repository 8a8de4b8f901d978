//! The syslog sink: RFC 5424 messages framed by octet counting (RFC 6587
//! §3.4.1), over plain TCP or TLS (RFC 5425). Syslog has no application-level
//! acknowledgement: a batch counts as delivered once written and flushed, and a
//! broken connection is reopened and the whole batch resent.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::config::{SyslogConfig, SyslogTlsConfig};
use super::{Failure, Record, Transport};
use crate::checkpoint::Checkpoint;
use crate::error::Error;

/// Is facility 13, "log audit" (RFC 5424 table 1), shifted into PRI.
const FACILITY_LOG_AUDIT: u8 = 13 * 8;
const SEVERITY_WARNING: u8 = 4;
const SEVERITY_NOTICE: u8 = 5;
const SEVERITY_INFO: u8 = 6;
/// Marks MSG as UTF-8 (RFC 5424 §6.4).
const BOM: &str = "\u{feff}";

/// Is an open connection to the receiver.
#[derive(Debug)]
enum Connection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Says whether the receiver hung up. A syslog receiver never sends, so
    /// anything readable (end of stream, a TLS alert) means the connection is
    /// over; checking before each batch keeps a batch from being written into a
    /// socket whose peer is gone, where the write would still "succeed".
    fn closed_by_peer(&self) -> bool {
        let mut byte = [0u8; 1];
        match self.tcp().try_read(&mut byte) {
            Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
            Ok(_) => true,
        }
    }

    async fn write(&mut self, frames: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(tcp) => {
                tcp.write_all(frames).await?;
                tcp.flush().await
            }
            Self::Tls(tls) => {
                tls.write_all(frames).await?;
                tls.flush().await
            }
        }
    }

    /// Ends the connection cleanly (TLS close_notify, then FIN).
    async fn close(&mut self) {
        let closed = match self {
            Self::Plain(tcp) => tcp.shutdown().await,
            Self::Tls(tls) => tls.shutdown().await,
        };
        if let Err(error) = closed {
            tracing::debug!(
                error = &error as &dyn std::error::Error,
                "syslog connection did not close cleanly"
            );
        }
    }
}

/// Holds the TLS client setup (rustls' connector has no `Debug`).
struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Delivers to one syslog receiver over one long-lived connection.
#[derive(Debug)]
pub(crate) struct SyslogTransport {
    config: SyslogConfig,
    tls: Option<Tls>,
    connection: Option<Connection>,
}

impl SyslogTransport {
    /// Returns the transport; reads the TLS files now so a bad path fails startup.
    pub(crate) fn new(config: &SyslogConfig) -> Result<Self, Error> {
        let tls = match &config.tls {
            Some(tls) => Some(connector(tls, &config.address)?),
            None => None,
        };
        Ok(Self {
            config: config.clone(),
            tls,
            connection: None,
        })
    }

    async fn connect(&self) -> Result<Connection, Failure> {
        let retry = |reason: String| Failure::Retry {
            after: None,
            reason,
        };
        let tcp = TcpStream::connect(&self.config.address)
            .await
            .map_err(|error| retry(format!("connect {}: {error}", self.config.address)))?;
        tcp.set_nodelay(true).ok();
        match &self.tls {
            None => Ok(Connection::Plain(tcp)),
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|error| retry(format!("tls handshake: {error}")))?;
                Ok(Connection::Tls(Box::new(stream)))
            }
        }
    }

    async fn send(&mut self, frames: &[u8]) -> Result<(), Failure> {
        let timeout = self.config.timeout;
        let attempt = async {
            if self
                .connection
                .as_ref()
                .is_some_and(Connection::closed_by_peer)
            {
                tracing::info!(address = %self.config.address, "syslog receiver closed the connection; reconnecting");
                self.connection = None;
            }
            if self.connection.is_none() {
                self.connection = Some(self.connect().await?);
            }
            let Some(connection) = self.connection.as_mut() else {
                return Err(Failure::Retry {
                    after: None,
                    reason: "no connection".to_owned(),
                });
            };
            connection
                .write(frames)
                .await
                .map_err(|error| Failure::Retry {
                    after: None,
                    reason: format!("write: {error}"),
                })
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Retry {
                after: None,
                reason: format!("timed out after {timeout:?}"),
            }),
        };
        if result.is_err() {
            // The stream may hold half a frame: start the next attempt afresh.
            self.connection = None;
        }
        result
    }
}

#[async_trait]
impl Transport for SyslogTransport {
    async fn deliver(&mut self, batch: &[Record<'_>]) -> Result<(), Failure> {
        let mut frames = Vec::new();
        for record in batch {
            frame(&mut frames, &message(&self.config, record));
        }
        self.send(&frames).await
    }

    async fn anchor(&mut self, checkpoint: &Checkpoint) -> Result<(), Failure> {
        let mut frames = Vec::new();
        frame(&mut frames, &checkpoint_message(&self.config, checkpoint));
        self.send(&frames).await
    }

    async fn close(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            connection.close().await;
        }
    }
}

/// Appends `message` as an octet-counted frame: `MSG-LEN SP SYSLOG-MSG`.
pub(crate) fn frame(out: &mut Vec<u8>, message: &str) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// Returns the RFC 5424 message for one event: PRI (log audit; warning for a
/// denial), the event time, a `gatehouse@PEN` structured element with the
/// event's id, sequence, leaf hash and facets, and the rendering as MSG.
pub(crate) fn message(config: &SyslogConfig, record: &Record<'_>) -> String {
    let event = record.event;
    let verdict = &event.event.facets.verdict;
    let severity = if verdict == "VERDICT_DENY" {
        SEVERITY_WARNING
    } else {
        SEVERITY_INFO
    };
    let kind = &event.event.facets.kind;
    let msgid = kind.strip_prefix("EVENT_KIND_").unwrap_or(kind);
    let params = [
        ("eventId", event.event.id.as_str().to_owned()),
        ("seq", event.sequence.to_string()),
        ("leaf", STANDARD.encode(event.leaf_hash)),
        ("verdict", verdict.clone()),
        ("outcome", event.event.facets.outcome.clone()),
        ("member", event.event.facets.member_id.clone()),
        ("agent", event.event.facets.agent_client_id.clone()),
        ("virtualServer", event.event.facets.virtual_server.clone()),
        ("tool", event.event.facets.tool.clone()),
    ];
    format!(
        "<{}>1 {} {} {} - {} {} {BOM}{}",
        FACILITY_LOG_AUDIT + severity,
        timestamp(event.event.time_micros),
        header_field(config.hostname.as_deref().unwrap_or("-"), 255),
        header_field(&config.app_name, 48),
        header_field(msgid, 32),
        structured_data(config.enterprise_number, &params),
        record.rendered.text,
    )
}

/// Returns the message carrying a signed checkpoint (MSGID `CHECKPOINT`, the
/// note as MSG).
pub(crate) fn checkpoint_message(config: &SyslogConfig, checkpoint: &Checkpoint) -> String {
    let params = [
        ("treeSize", checkpoint.tree_size.to_string()),
        ("root", STANDARD.encode(checkpoint.root_hash)),
    ];
    format!(
        "<{}>1 {} {} {} - CHECKPOINT {} {BOM}{}",
        FACILITY_LOG_AUDIT + SEVERITY_NOTICE,
        timestamp(checkpoint.time_micros),
        header_field(config.hostname.as_deref().unwrap_or("-"), 255),
        header_field(&config.app_name, 48),
        structured_data(config.enterprise_number, &params),
        checkpoint.signed_note,
    )
}

/// Returns an RFC 3339 UTC timestamp with microseconds.
fn timestamp(micros: i64) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    humantime::format_rfc3339_micros(time).to_string()
}

/// Returns a header field as printable US-ASCII without spaces, at most `limit`
/// characters, or `-` when nothing is left.
fn header_field(value: &str, limit: usize) -> String {
    let field: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(limit)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// Returns one SD-ELEMENT `[gatehouse@PEN k="v" …]`, values escaped per RFC 5424
/// §6.3.3 (`"`, `\` and `]`), empty values left out.
fn structured_data(pen: u32, params: &[(&str, String)]) -> String {
    let mut element = format!("[gatehouse@{pen}");
    for (name, value) in params.iter().filter(|(_, value)| !value.is_empty()) {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace(']', "\\]");
        element.push_str(&format!(" {name}=\"{escaped}\""));
    }
    element.push(']');
    element
}

fn connector(tls: &SyslogTlsConfig, address: &str) -> Result<Tls, Error> {
    let setup = |reason: String| Error::SinkSetup {
        field: "syslog.tls",
        reason,
    };
    let mut roots = RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(&tls.ca_file)
        .map_err(|error| setup(format!("ca_file {}: {error}", tls.ca_file.display())))?;
    for certificate in certificates {
        let certificate = certificate
            .map_err(|error| setup(format!("ca_file {}: {error}", tls.ca_file.display())))?;
        roots
            .add(certificate)
            .map_err(|error| setup(format!("ca_file {}: {error}", tls.ca_file.display())))?;
    }
    // An explicit provider: with several enabled in the build, rustls cannot
    // pick a process default and `ClientConfig::builder()` would panic.
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| setup(format!("tls versions: {error}")))?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = CertificateDer::pem_file_iter(cert_file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|error| {
                    setup(format!("client_cert_file {}: {error}", cert_file.display()))
                })?;
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| {
                setup(format!("client_key_file {}: {error}", key_file.display()))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| setup(format!("client certificate: {error}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    let host = match &tls.server_name {
        Some(name) => name.clone(),
        None => host_of(address).to_owned(),
    };
    let name =
        ServerName::try_from(host).map_err(|error| setup(format!("server_name: {error}")))?;
    Ok(Tls {
        connector: TlsConnector::from(Arc::new(config)),
        server_name: name,
    })
}

/// Returns the host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}
