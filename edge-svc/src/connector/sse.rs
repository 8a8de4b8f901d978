//! Legacy HTTP+SSE connectors (protocol 2024-11-05).
//!
//! No Rust library offers this client transport (rmcp dropped it), so it is written here on
//! reqwest and `sse-stream`: `GET` the SSE URL, wait for the `endpoint` event, `POST` every
//! JSON-RPC message to that endpoint, and read every server message from the SSE stream.
//! A connector that injects a credential adds it to the `GET` and to every `POST`, asked of its
//! [`CredentialSource`] per request; a 401 is retried once with material fetched afresh.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream::BoxStream};
use reqwest::{
    header::{ACCEPT, CONTENT_TYPE, HeaderMap},
    redirect::Policy,
};
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    service::RoleClient,
    transport::Transport,
};
use sse_stream::{Sse, SseStream};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::credentials::CredentialError;

use super::{
    CredentialSource, Era, Error, SseConfig,
    config::redact,
    handler::RelayHandler,
    http::header_map,
    origin::OriginTracking,
    session::{Session, handshake},
};

/// Longest wait for the TCP connection of a `GET` or `POST`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client transport over one legacy SSE stream and its message endpoint.
pub(crate) struct SseTransport {
    client: reqwest::Client,
    headers: HeaderMap,
    credential: Credential,
    endpoint: Url,
    events: BoxStream<'static, Result<Sse, sse_stream::Error>>,
}

/// The credential of one SSE session, if its connector injects one.
#[derive(Debug, Clone)]
struct Credential {
    source: Option<Arc<dyn CredentialSource>>,
    connector: Arc<str>,
}

/// Opens an MCP session (always the `initialize` handshake) with the SSE server of `config`,
/// injecting `credential` into every request.
pub(crate) async fn open(
    name: &Arc<str>,
    config: &SseConfig,
    credential: Option<Arc<dyn CredentialSource>>,
    handler: RelayHandler,
    session_ct: CancellationToken,
) -> Result<Session, Error> {
    let timeout = config.connect_timeout;
    let credential = Credential {
        source: credential,
        connector: Arc::clone(name),
    };
    let transport = tokio::time::timeout(timeout, SseTransport::connect(config, credential))
        .await
        .map_err(|_| Error::HandshakeTimeout { timeout })??;
    let service = handshake(
        handler,
        OriginTracking::new(transport),
        Era::Legacy,
        config.connect_timeout,
        session_ct,
    )
    .await?;
    Ok(Session::new(service, None))
}

impl std::fmt::Debug for SseTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseTransport")
            .field("endpoint", &redact(&self.endpoint))
            .finish_non_exhaustive()
    }
}

impl SseTransport {
    /// Opens the SSE stream and waits for the server to announce its message endpoint.
    async fn connect(config: &SseConfig, credential: Credential) -> Result<Self, Error> {
        let url = config.url.clone();
        let request_error = |source: reqwest::Error| Error::SseRequest {
            url: redact(&url),
            source: source.without_url(),
        };
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(request_error)?;
        let headers: HeaderMap = header_map(&config.headers)?.into_iter().collect();
        let response = credential
            .send(&headers, |headers| {
                client
                    .get(url.clone())
                    .headers(headers)
                    .header(ACCEPT, "text/event-stream")
                    .send()
            })
            .await?
            .map_err(request_error)?;
        if !response.status().is_success() {
            return Err(Error::SseStatus {
                url: redact(&url),
                status: response.status().as_u16(),
            });
        }
        let mut events = SseStream::from_bytes_stream(response.bytes_stream()).boxed();
        let endpoint = loop {
            match events.next().await {
                Some(Ok(event)) if event.event.as_deref() == Some("endpoint") => {
                    break resolve_endpoint(&url, event.data.as_deref().unwrap_or_default())?;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    return Err(Error::SseNoEndpoint { url: redact(&url) });
                }
            }
        };
        tracing::debug!(sse = %redact(&url), endpoint = %redact(&endpoint), "legacy sse stream open");
        Ok(Self {
            client,
            headers,
            credential,
            endpoint,
            events,
        })
    }
}

impl Credential {
    /// Sends a request built by `build` with the configured `headers` plus the credential;
    /// on a 401, once more with material fetched afresh. A second 401 is
    /// [`CredentialError::Rejected`]; other statuses are left to the caller.
    async fn send<F, Fut>(
        &self,
        headers: &HeaderMap,
        build: F,
    ) -> Result<Result<reqwest::Response, reqwest::Error>, Error>
    where
        F: Fn(HeaderMap) -> Fut,
        Fut: Future<Output = Result<reqwest::Response, reqwest::Error>>,
    {
        let Some(source) = &self.source else {
            return Ok(build(headers.clone()).await);
        };
        let with_credential = || async {
            let mut all = headers.clone();
            all.extend(source.headers().await.map_err(Error::Credential)?);
            Ok::<_, Error>(all)
        };
        let first = build(with_credential().await?).await;
        if !is_rejection(&first) {
            return Ok(first);
        }
        tracing::info!(connector = %self.connector, "downstream rejected its credential; fetching it again");
        source.rejected().await;
        let second = build(with_credential().await?).await;
        if is_rejection(&second) {
            tracing::warn!(connector = %self.connector, "downstream rejected a freshly fetched credential");
            return Err(Error::Credential(CredentialError::Rejected(
                self.connector.to_string(),
            )));
        }
        Ok(second)
    }
}

fn is_rejection(response: &Result<reqwest::Response, reqwest::Error>) -> bool {
    matches!(response, Ok(response) if response.status() == reqwest::StatusCode::UNAUTHORIZED)
}

/// Resolves the announced endpoint against the SSE URL; it must stay on the same origin so
/// that configured headers (which may hold credentials) never go elsewhere.
fn resolve_endpoint(url: &Url, announced: &str) -> Result<Url, Error> {
    let invalid = || Error::SseEndpoint {
        endpoint: announced.to_owned(),
    };
    let endpoint = url.join(announced.trim()).map_err(|_| invalid())?;
    if endpoint.origin() != url.origin() {
        return Err(invalid());
    }
    Ok(endpoint)
}

impl Transport<RoleClient> for SseTransport {
    type Error = Error;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let client = self.client.clone();
        let headers = self.headers.clone();
        let credential = self.credential.clone();
        let endpoint = self.endpoint.clone();
        async move {
            let body = serde_json::to_vec(&item).map_err(Error::Encode)?;
            let response = credential
                .send(&headers, |headers| {
                    client
                        .post(endpoint.clone())
                        .headers(headers)
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                })
                .await?
                .map_err(|source| Error::SseRequest {
                    url: redact(&endpoint),
                    source: source.without_url(),
                })?;
            if !response.status().is_success() {
                return Err(Error::SseStatus {
                    url: redact(&endpoint),
                    status: response.status().as_u16(),
                });
            }
            Ok(())
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            let event = match self.events.next().await? {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(endpoint = %redact(&self.endpoint), %error, "legacy sse stream broke");
                    return None;
                }
            };
            if !matches!(event.event.as_deref(), None | Some("message")) {
                continue;
            }
            let Some(data) = event.data else {
                continue;
            };
            match serde_json::from_str(&data) {
                Ok(message) => return Some(message),
                Err(error) => {
                    tracing::warn!(endpoint = %redact(&self.endpoint), %error, "ignoring malformed sse message")
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.events = futures::stream::empty().boxed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_endpoint;

    #[test]
    fn endpoint_resolves_relative_to_the_sse_url() {
        let sse = "http://127.0.0.1:9000/sse".parse().unwrap();
        let endpoint = resolve_endpoint(&sse, "/messages/?session_id=abc\n").unwrap();
        assert_eq!(
            endpoint.as_str(),
            "http://127.0.0.1:9000/messages/?session_id=abc"
        );
    }

    #[test]
    fn endpoint_on_another_origin_is_refused() {
        let sse = "http://127.0.0.1:9000/sse".parse().unwrap();
        assert!(resolve_endpoint(&sse, "http://evil.example/messages").is_err());
        assert!(resolve_endpoint(&sse, "https://127.0.0.1:9000/messages").is_err());
    }
}
