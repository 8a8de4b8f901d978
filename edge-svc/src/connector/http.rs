//! Streamable HTTP connectors, on either protocol era, using rmcp's client transport.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use rmcp::transport::{
    StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
};
use tokio_util::sync::CancellationToken;

use rmcp::model::ProtocolVersion;

use super::{
    CredentialSource, Error, HttpConfig,
    direct::{DirectLine, line_client},
    handler::RelayHandler,
    inject::InjectingClient,
    origin::OriginTracking,
    session::{Session, handshake},
};

/// Builds the HTTP client of one connector: pooled keep-alive connections with `TCP_NODELAY`.
///
/// rmcp's default client disables pooling to dodge delayed-ACK stalls; with Nagle off on our
/// side the stall does not happen, and a new TCP connection per call cost the gateway ~15% of
/// its CPU (measured by `bench/run.sh`). Redirects are not followed: a connector's URL is
/// exactly what the administrator configured. HTTP/2 as [`HttpConfig::http2`] says.
fn pooled_client(config: &HttpConfig) -> Result<reqwest::Client, Error> {
    let builder = reqwest::Client::builder();
    let builder = match (config.http2, config.h2c()) {
        (false, _) => builder.http1_only(),
        (true, false) => builder,
        (true, true) => builder.http2_prior_knowledge(),
    };
    builder
        .tcp_nodelay(true)
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(Error::HttpClient)
}

/// Opens an MCP session with the streamable HTTP endpoint of `config`, adding `credential`'s
/// headers to every request when the connector injects one, and each call's trace context.
pub(crate) async fn open(
    name: &Arc<str>,
    config: &HttpConfig,
    credential: Option<Arc<dyn CredentialSource>>,
    handler: RelayHandler,
    session_ct: CancellationToken,
) -> Result<Session, Error> {
    let transport_config = StreamableHttpClientTransportConfig::with_uri(config.url.as_str())
        .custom_headers(header_map(&config.headers)?)
        .reinit_on_expired_session(true)
        // A gateway multiplexes many callers onto one connector session.
        .max_concurrent_requests(config.max_in_flight.get());
    let client = InjectingClient::new(
        pooled_client(config)?,
        credential,
        Arc::clone(name),
        config.max_in_flight,
    );
    let transport = StreamableHttpClientTransport::with_client(client.clone(), transport_config);
    let tracked = OriginTracking::new(transport);
    let service = handshake(
        handler,
        tracked,
        config.era,
        config.connect_timeout,
        session_ct,
    )
    .await?;
    let version = service
        .peer()
        .peer_info()
        .map(|info| info.protocol_version.clone())
        .filter(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str());
    let direct = match version {
        Some(version) => Some(Arc::new(DirectLine::new(
            Arc::clone(name),
            &config.url,
            header_map(&config.headers)?,
            line_client(config)?,
            client,
            version,
        )?)),
        None => None,
    };
    Ok(Session::new(service, None).with_direct(direct))
}

/// Converts configured headers, rejecting invalid names or values without echoing values.
pub(crate) fn header_map(
    headers: &BTreeMap<String, String>,
) -> Result<HashMap<HeaderName, HeaderValue>, Error> {
    headers
        .iter()
        .map(|(name, value)| {
            let invalid = || Error::InvalidHeader { name: name.clone() };
            let header = HeaderName::try_from(name.as_str()).map_err(|_| invalid())?;
            let mut value = HeaderValue::try_from(value.as_str()).map_err(|_| invalid())?;
            value.set_sensitive(true);
            Ok((header, value))
        })
        .collect()
}
