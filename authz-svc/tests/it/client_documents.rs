//! Client ID metadata documents: URL client ids whose metadata a test server on
//! this machine publishes (the dev opt-out `allow_local`), and the SSRF rules that
//! refuse the same URL without it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use authz_svc::{AuthorizationConfig, ClientDocumentsConfig};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::harness::{Harness, REDIRECT, VERIFIER, oauth_error, test_config};

/// Serves client metadata documents and counts the requests it gets.
struct DocumentServer {
    base: String,
    hits: Arc<AtomicUsize>,
}

impl DocumentServer {
    async fn start() -> Self {
        let (listener, addr) = svc_kit::testing::bind_ephemeral().await;
        let base = format!("http://{addr}");
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = |hits: Arc<AtomicUsize>, answer: fn(&str) -> Response| {
            let base = base.clone();
            move || {
                hits.fetch_add(1, Ordering::SeqCst);
                let response = answer(&base);
                async move { response }
            }
        };
        let router = axum::Router::new()
            .route(
                "/cached.json",
                get(counted(hits.clone(), |base| {
                    document(base, "/cached.json", "max-age=300")
                })),
            )
            .route(
                "/uncached.json",
                get(counted(hits.clone(), |base| {
                    document(base, "/uncached.json", "no-store")
                })),
            )
            .route(
                "/other-id.json",
                get(counted(hits.clone(), |base| {
                    document(base, "/cached.json", "max-age=300")
                })),
            )
            .route(
                "/moved.json",
                get(counted(hits.clone(), |base| {
                    let mut response = StatusCode::FOUND.into_response();
                    let target = HeaderValue::from_str(&format!("{base}/cached.json")).unwrap();
                    response.headers_mut().insert(header::LOCATION, target);
                    response
                })),
            )
            .route(
                "/huge.json",
                get(counted(hits.clone(), |base| {
                    let mut body = doc_json(base, "/huge.json");
                    body["client_name"] = json!("x".repeat(64 * 1024));
                    axum::Json(body).into_response()
                })),
            );
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { base, hits }
    }

    fn id(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn doc_json(base: &str, path: &str) -> Value {
    json!({
        "client_id": format!("{base}{path}"),
        "client_name": "Document App",
        "redirect_uris": [REDIRECT],
        "application_type": "native",
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    })
}

fn document(base: &str, path: &str, cache_control: &'static str) -> Response {
    let mut response = axum::Json(doc_json(base, path)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    response
}

fn local_documents() -> AuthorizationConfig {
    AuthorizationConfig {
        client_metadata_documents: ClientDocumentsConfig {
            enabled: true,
            allow_local: true,
            ca_file: None,
        },
        ..test_config()
    }
}

/// Asserts that /authorize showed an error page (no redirect to the client) naming `reason`.
async fn shown_error(harness: &Harness, client_id: &str, reason: &str) {
    let response = harness
        .authorize(&harness.authorize_params(client_id))
        .await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get(header::LOCATION).is_none());
    let page = response.text().await.unwrap();
    assert!(page.contains(reason), "{page}");
}

#[tokio::test]
async fn metadata_advertises_documents_unless_disabled() {
    let harness = Harness::start().await;
    let metadata: Value = harness
        .http
        .get(harness.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["client_id_metadata_document_supported"], true);

    let documents = DocumentServer::start().await;
    let harness = Harness::with_config(AuthorizationConfig {
        client_metadata_documents: ClientDocumentsConfig {
            enabled: false,
            allow_local: true,
            ca_file: None,
        },
        ..test_config()
    })
    .await;
    let metadata: Value = harness
        .http
        .get(harness.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["client_id_metadata_document_supported"], false);
    shown_error(&harness, &documents.id("/cached.json"), "unknown client").await;
    assert_eq!(documents.hits(), 0, "a disabled AS must not fetch");
}

#[tokio::test]
async fn a_url_client_id_completes_the_code_flow_and_its_document_is_cached() {
    let documents = DocumentServer::start().await;
    let harness = Harness::with_config(local_documents()).await;
    let client_id = documents.id("/cached.json");
    let code = harness.code_for(&client_id).await;
    let response = harness.redeem(&client_id, &code, VERIFIER).await;
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    let claims = harness
        .state
        .verify_access_token(token["access_token"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claims.client_id, client_id);
    // max-age=300: one fetch served the authorization and the token request.
    assert_eq!(documents.hits(), 1);
}

#[tokio::test]
async fn a_no_store_document_is_fetched_on_every_use() {
    let documents = DocumentServer::start().await;
    let harness = Harness::with_config(local_documents()).await;
    let client_id = documents.id("/uncached.json");
    harness.code_for(&client_id).await;
    harness.code_for(&client_id).await;
    assert_eq!(documents.hits(), 2);
}

#[tokio::test]
async fn unusable_documents_are_refused_without_redirecting_or_issuing() {
    let documents = DocumentServer::start().await;
    let harness = Harness::with_config(local_documents()).await;
    shown_error(
        &harness,
        &documents.id("/other-id.json"),
        "client_id is not its URL",
    )
    .await;
    shown_error(&harness, &documents.id("/moved.json"), "did not answer 200").await;
    shown_error(&harness, &documents.id("/huge.json"), "too large").await;
    shown_error(
        &harness,
        &documents.id("/missing.json"),
        "did not answer 200",
    )
    .await;
    // The redirect was not followed: the target document was never asked for.
    assert_eq!(documents.hits(), 3);

    // An unregistered redirect URI is shown, never followed.
    let client_id = documents.id("/cached.json");
    let mut params = harness.authorize_params(&client_id);
    params.retain(|(name, _)| *name != "redirect_uri");
    params.push(("redirect_uri", "http://127.0.0.1:4242/elsewhere".to_owned()));
    let response = harness.authorize(&params).await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get(header::LOCATION).is_none());

    // At the token endpoint the same documents make the client unauthenticated.
    let refused = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", "no-such-code"),
                ("code_verifier", VERIFIER),
                ("client_id", &documents.id("/other-id.json")),
                ("redirect_uri", REDIRECT),
            ],
            None,
        )
        .await;
    let body = oauth_error(refused, 401, "invalid_client").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("client_id is not its URL"),
        "{body}"
    );
}

#[tokio::test]
async fn without_the_dev_opt_out_local_and_plain_http_documents_are_never_fetched() {
    let documents = DocumentServer::start().await;
    let harness = Harness::start().await;
    // http on loopback: refused before any connection.
    shown_error(
        &harness,
        &documents.id("/cached.json"),
        "not a valid metadata document URL",
    )
    .await;
    // https to a name that resolves to loopback: refused at resolution.
    let port = documents.base.rsplit(':').next().unwrap();
    shown_error(
        &harness,
        &format!("https://localhost:{port}/cached.json"),
        "may not be fetched",
    )
    .await;
    shown_error(
        &harness,
        "https://169.254.169.254/latest/meta-data/client.json",
        "may not be fetched",
    )
    .await;
    assert_eq!(documents.hits(), 0);
}
