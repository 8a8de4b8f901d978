//! Turns every refusal into the spec's shape: a JSON-RPC error object, never bare text.
//!
//! rmcp's transport refuses unparseable bodies with `415` and plain text; MCP clients expect
//! `400` with a JSON-RPC error (`-32700` parse error, `-32600` invalid request). This step
//! checks the body before rmcp sees it and rewrites any plain-text refusal rmcp still makes.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use serde::de::IgnoredAny;
use serde_json::json;

/// JSON-RPC: the body is not JSON.
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the body is JSON but not one request, notification or response.
const INVALID_REQUEST: i64 = -32600;

/// Rejects malformed POST bodies with JSON-RPC errors and normalises rmcp's text refusals.
pub(crate) async fn spec_shaped(
    max_body_bytes: usize,
    request: Request<Body>,
    next: impl AsyncFnOnce(Request<Body>) -> Response,
) -> Response {
    let request = if request.method() == Method::POST {
        match checked(max_body_bytes, request).await {
            Ok(request) => request,
            Err(refusal) => return refusal,
        }
    } else {
        request
    };
    let response = next(request).await;
    if response.status().is_client_error()
        && !is_json(&response)
        && response.status() != StatusCode::UNAUTHORIZED
    {
        // Boxed for the reason `open` is on the lane: rare, and it would size every request.
        return Box::pin(rewrite(response)).await;
    }
    response
}

async fn checked(max_body_bytes: usize, request: Request<Body>) -> Result<Request<Body>, Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, max_body_bytes)
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID_REQUEST,
                &format!("request body exceeds {max_body_bytes} bytes"),
            )
        })?;
    if let Err(parse) = serde_json::from_slice::<IgnoredAny>(&bytes) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            PARSE_ERROR,
            &format!("parse error: {parse}"),
        ));
    }
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(error(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "invalid request: the body must be one JSON-RPC object (batches are not supported)",
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

async fn rewrite(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    let message = if message.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("refused")
            .to_owned()
    } else {
        message
    };
    let mut rewritten = error(refusal_status(parts.status), INVALID_REQUEST, &message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

/// A body rmcp could not decode is the client's malformed request, so `415` becomes `400`.
fn refusal_status(status: StatusCode) -> StatusCode {
    if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        StatusCode::BAD_REQUEST
    } else {
        status
    }
}

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}
