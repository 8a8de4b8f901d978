//! Downstream discovery: the connector's RFC 9728 protected-resource metadata
//! names its authorization server, whose RFC 8414 metadata names the endpoints.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::Endpoints;
use crate::error::Error;

#[derive(Deserialize)]
struct ResourceMetadata {
    #[serde(default)]
    authorization_servers: Vec<String>,
}

#[derive(Deserialize)]
struct ServerMetadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

/// Returns the endpoints of the authorization server protecting `resource`.
pub(crate) async fn discover(
    http: &reqwest::Client,
    resource: &str,
    timeout: Duration,
) -> Result<Endpoints, Error> {
    let resource_url =
        Url::parse(resource).map_err(|_| Error::Provider("invalid resource url".to_owned()))?;
    let metadata: ResourceMetadata = fetch(
        http,
        &well_known(&resource_url, "oauth-protected-resource"),
        timeout,
    )
    .await?;
    let issuer = metadata.authorization_servers.first().ok_or_else(|| {
        Error::Provider("resource metadata names no authorization server".to_owned())
    })?;
    let issuer_url =
        Url::parse(issuer).map_err(|_| Error::Provider("invalid issuer url".to_owned()))?;
    let server: ServerMetadata = fetch(
        http,
        &well_known(&issuer_url, "oauth-authorization-server"),
        timeout,
    )
    .await?;
    // RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
    if server.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(Error::Provider(
            "authorization server metadata names another issuer".to_owned(),
        ));
    }
    Ok(Endpoints {
        authorization_endpoint: server.authorization_endpoint,
        token_endpoint: server.token_endpoint,
    })
}

/// Returns `{origin}/.well-known/{suffix}{path}`, the well-known URI of RFC 8615
/// as RFC 9728 and RFC 8414 insert it before the path.
fn well_known(url: &Url, suffix: &str) -> String {
    let path = url.path().trim_end_matches('/');
    format!(
        "{}/.well-known/{suffix}{path}",
        url.origin().ascii_serialization()
    )
}

async fn fetch<T: for<'de> Deserialize<'de>>(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<T, Error> {
    let response = http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|_| Error::ProviderUnreachable)?;
    if !response.status().is_success() {
        return Err(Error::Provider(format!(
            "metadata answered {}",
            response.status().as_u16()
        )));
    }
    response
        .json()
        .await
        .map_err(|_| Error::Provider("metadata is not valid json".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_goes_before_the_path() {
        let url = Url::parse("https://mcp.example.com/v/github/mcp").unwrap();
        assert_eq!(
            well_known(&url, "oauth-protected-resource"),
            "https://mcp.example.com/.well-known/oauth-protected-resource/v/github/mcp"
        );
        let issuer = Url::parse("https://auth.example.com/").unwrap();
        assert_eq!(
            well_known(&issuer, "oauth-authorization-server"),
            "https://auth.example.com/.well-known/oauth-authorization-server"
        );
    }
}
