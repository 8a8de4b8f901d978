//! Connector health as refreshes fail: a provider whose token endpoint cannot be reached makes
//! its connector `unreachable`; a provider that refuses the client makes it `auth_failing`.
//! Neither report, nor any event, carries the client secret.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use vault_svc::credential::{ClientCredentials, CredentialStatus, Material};
use vault_svc::lock::InProcessLock;
use vault_svc::secret::SecretText;
use vault_svc::store::ListQuery;
use vault_svc::{HealthState, RefreshConfig, RefreshEngine, RefreshOutcome, Vault};

use crate::backend::{Backend, conformance};
use crate::fixture;

conformance!(
    an_unreachable_token_endpoint_makes_the_connector_unreachable,
    a_refused_client_makes_the_connector_auth_failing,
);

const SECRET: &str = "client-secret-health-canary-8e41";

fn engine(vault: &Vault) -> RefreshEngine {
    let config = RefreshConfig {
        enabled: true,
        redis_url: None,
        redis_key_prefix: String::new(),
        poll_interval: Duration::from_millis(100),
        lock_ttl: Duration::from_secs(4),
        http_timeout: Duration::from_secs(1),
        concurrency: 4,
        batch: 10,
    };
    RefreshEngine::new(vault.clone(), Arc::new(InProcessLock::default()), config).unwrap()
}

/// Stores a shared client-credentials pair for `shared` at `token_endpoint` and runs its first
/// exchange (due at once), returning the outcome.
async fn exchange_once(vault: &Vault, token_endpoint: String) -> RefreshOutcome {
    let material = Material::OauthClientCredentials(ClientCredentials {
        token_endpoint,
        client_id: "svc".to_owned(),
        client_secret: SecretText::from(SECRET),
        scopes: vec!["read".to_owned()],
        audience: None,
        access_token: None,
    });
    let record = vault
        .set_shared("shared", &material, None, "service account".into())
        .await
        .unwrap();
    engine(vault).refresh_one(record).await.unwrap()
}

async fn shared_status(vault: &Vault) -> CredentialStatus {
    let records = vault
        .list(ListQuery {
            connector: Some("shared".to_owned()),
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    records[0].status
}

async fn an_unreachable_token_endpoint_makes_the_connector_unreachable(backend: &Backend) {
    let (vault, mut events) = fixture::vault(backend, "http://127.0.0.1:9");
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);

    let outcome = exchange_once(&vault, format!("http://127.0.0.1:{port}/token")).await;

    assert_eq!(outcome, RefreshOutcome::Failed);
    assert_eq!(shared_status(&vault).await, CredentialStatus::Unreachable);
    let health = vault.health(&["shared".to_owned()]).await.unwrap();
    assert_eq!(health[0].state, HealthState::Unreachable, "{health:?}");
    assert_eq!(health[0].state.as_str(), "unreachable");
    assert!(health[0].shared_credential_failing);
    assert!(health[0].detail.contains("unreachable"), "{health:?}");
    let personal = vault.health(&["personal".to_owned()]).await.unwrap();
    assert_eq!(personal[0].state, HealthState::Healthy);
    let mut seen = format!("{health:?}");
    while let Ok(event) = events.try_recv() {
        seen.push_str(&format!("{event:?}"));
    }
    assert!(seen.contains("unreachable"), "{seen}");
    assert!(!seen.contains(SECRET), "the client secret leaked");
}

async fn a_refused_client_makes_the_connector_auth_failing(backend: &Backend) {
    let (vault, mut events) = fixture::vault(backend, "http://127.0.0.1:9");
    let provider = axum::Router::new().route(
        "/token",
        post(|| async {
            (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": "invalid_client"})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, provider).await });

    let outcome = exchange_once(&vault, format!("http://{address}/token")).await;

    assert_eq!(outcome, RefreshOutcome::Rejected);
    assert_eq!(
        shared_status(&vault).await,
        CredentialStatus::NeedsAttention
    );
    let health = vault.health(&["shared".to_owned()]).await.unwrap();
    assert_eq!(health[0].state, HealthState::AuthFailing, "{health:?}");
    assert!(health[0].shared_credential_failing);
    // Setting a working credential again clears the state.
    vault
        .set_shared(
            "shared",
            &Material::Bearer {
                token: SecretText::from("replacement-token"),
            },
            None,
            String::new(),
        )
        .await
        .unwrap();
    let health = vault.health(&["shared".to_owned()]).await.unwrap();
    assert_eq!(health[0].state, HealthState::Healthy, "{health:?}");
    let mut seen = String::new();
    while let Ok(event) = events.try_recv() {
        seen.push_str(&format!("{event:?}"));
    }
    assert!(seen.contains("invalid_grant"), "{seen}");
    assert!(!seen.contains(SECRET), "the client secret leaked");
    server.abort();
}
