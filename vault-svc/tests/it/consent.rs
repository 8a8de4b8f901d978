//! Per-member first use: two members each connect their own account at a real
//! provider (authlib) through the authorization-code + PKCE flow, once with
//! static endpoints and once with RFC 9728 → RFC 8414 discovery; each gets only
//! their own token, and no token appears in any response or event.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::routing::get;
use tokio::net::TcpListener;
use vault_svc::credential::Material;
use vault_svc::crypto::{Envelope, LocalKeyring};
use vault_svc::event::ChannelSink;
use vault_svc::{
    ConnectorConfig, ConsentIssuer, CredentialMode, CredentialOutcome, CredentialQuery,
    OAuthProviderConfig, Vault,
};

use crate::backend::Backend;
use crate::peer::Provider;

/// Serves `router` on an ephemeral port; returns its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn oauth(provider: &str, resource: String, discovered: bool) -> OAuthProviderConfig {
    OAuthProviderConfig {
        client_id: "vault-client".to_owned(),
        client_secret: Some("vault-client-secret".to_owned().into()),
        authorization_endpoint: (!discovered).then(|| format!("{provider}/authorize")),
        token_endpoint: (!discovered).then(|| format!("{provider}/token")),
        resource: Some(resource),
        scopes: vec!["read".to_owned()],
        revocation_endpoint: Some(format!("{provider}/revoke")),
    }
}

fn query(member: &str, connector: &str) -> CredentialQuery {
    CredentialQuery {
        member_id: Some(member.to_owned()),
        connector: connector.to_owned(),
        ..CredentialQuery::default()
    }
}

/// Collects every log line written while installed.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime, so the capturing subscriber (a thread default) sees
// every task: vault-svc's handlers, its HTTP client and the callback server.
#[tokio::test]
async fn two_members_connect_their_own_accounts_and_no_token_leaks() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let Some(provider) = Provider::start(600).await else {
        return;
    };
    let backend = Backend::sqlite().await;
    // The downstream MCP server publishes RFC 9728 metadata naming the provider.
    let issuer = provider.url.clone();
    let downstream = serve(axum::Router::new().route(
        "/.well-known/oauth-protected-resource/mcp",
        get(move || {
            let issuer = issuer.clone();
            async move {
                Json(serde_json::json!({"resource": "ignored", "authorization_servers": [issuer]}))
            }
        }),
    ))
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://{}/vault", listener.local_addr().unwrap());
    let mut connectors = BTreeMap::new();
    connectors.insert(
        "static".to_owned(),
        ConnectorConfig {
            credential: CredentialMode::PerMember,
            oauth: Some(oauth(&provider.url, format!("{downstream}/mcp"), false)),
            api_key: None,
            rotation: None,
        },
    );
    connectors.insert(
        "discovered".to_owned(),
        ConnectorConfig {
            credential: CredentialMode::PerMember,
            oauth: Some(oauth(&provider.url, format!("{downstream}/mcp"), true)),
            api_key: None,
            rotation: None,
        },
    );
    let keyring =
        Arc::new(LocalKeyring::load_or_generate(&backend.dir().join("vault.kek")).unwrap());
    let (sink, mut events) = ChannelSink::new(10_000);
    let consent = ConsentIssuer::new(
        &public_url,
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let vault = Vault::new(
        "acme".to_owned(),
        backend.store(),
        Envelope::new(keyring),
        connectors,
        Arc::new(sink),
        consent,
    );
    let router = axum::Router::new().nest("/vault", vault_svc::http::router(vault.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut seen = Vec::new();
    let mut tokens = Vec::new();
    for connector in ["static", "discovered"] {
        for member in ["alice", "bob"] {
            let CredentialOutcome::ConsentRequired(link) = vault
                .get_credential(&query(member, connector))
                .await
                .unwrap()
            else {
                panic!("{member} has no credential yet");
            };
            assert!(
                link.url
                    .starts_with(&format!("{}/authorize?", provider.url)),
                "{}",
                link.url
            );
            // The member logs in at the provider, which redirects to vault-svc's callback.
            let authorized = browser
                .get(format!("{}&user={member}", link.url))
                .send()
                .await
                .unwrap();
            assert_eq!(authorized.status(), 302);
            let callback = authorized.headers()["location"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                callback.starts_with(&format!("{public_url}/oauth/callback?")),
                "{callback}"
            );
            let page = browser.get(&callback).send().await.unwrap();
            assert_eq!(page.status(), 200);
            seen.push(page.text().await.unwrap());
            // The state is single-use.
            let replay = browser.get(&callback).send().await.unwrap();
            assert_eq!(replay.status(), 400);
            seen.push(replay.text().await.unwrap());
            let CredentialOutcome::Released(released) = vault
                .get_credential(&query(member, connector))
                .await
                .unwrap()
            else {
                panic!("{member} connected but got no credential");
            };
            let Material::Bearer { token } = released.material else {
                panic!("not a bearer token")
            };
            assert_eq!(
                provider.whoami(token.expose()).await.as_deref(),
                Some(member),
                "{member} got another's token"
            );
            tokens.push(token.expose().to_owned());
        }
    }
    assert_eq!(provider.stats().await["codes_redeemed"], 4);
    // Offboarding alice purges her grants and revokes them at the provider (RFC 7009).
    let report = vault
        .revoke_principal(
            vault_svc::secret::Owner::Member("alice".into()),
            "offboarded",
        )
        .await
        .unwrap();
    assert_eq!(
        (
            report.credentials_revoked,
            report.upstream_revocations_failed
        ),
        (2, 0)
    );
    assert_eq!(provider.stats().await["revocations"], 2);
    assert_eq!(provider.whoami(&tokens[0]).await, None);
    assert_eq!(provider.whoami(&tokens[2]).await, None);
    assert_eq!(provider.whoami(&tokens[1]).await.as_deref(), Some("bob"));
    let unique: std::collections::HashSet<&String> = tokens.iter().collect();
    assert_eq!(unique.len(), 4);
    let bogus = browser
        .get(format!("{public_url}/oauth/callback?code=x&state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 400);
    seen.push(bogus.text().await.unwrap());
    events.close();
    while let Some(event) = events.recv().await {
        seen.push(format!("{event:?}"));
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("member connected an account"),
        "logs were not captured"
    );
    seen.push(logs);
    for token in &tokens {
        assert!(
            seen.iter().all(|text| !text.contains(token.as_str())),
            "a token leaked"
        );
    }
}
