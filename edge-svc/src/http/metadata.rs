//! RFC 9728 protected-resource metadata: how a client finds the authorization server.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Answers the metadata document of one virtual server, with the scopes its policy declares.
pub(crate) fn document(resource: &str, issuer: &str, name: &str, scopes: &[String]) -> Response {
    let mut body = json!({
        "resource": resource,
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": format!("Gatehouse virtual server {name}"),
    });
    if !scopes.is_empty() {
        body["scopes_supported"] = json!(scopes);
    }
    ([(http::header::CACHE_CONTROL, "max-age=300")], Json(body)).into_response()
}
