//! Builders shared by the topic modules: a vault over a backend's store, and
//! connector declarations.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use vault_svc::crypto::{Envelope, LocalKeyring};
use vault_svc::event::{ChannelSink, CredentialEvent};
use vault_svc::{ConnectorConfig, ConsentIssuer, CredentialMode, OAuthProviderConfig, Vault};

use crate::backend::Backend;

/// Returns connectors `shared` (shared) and `personal` (per member, OAuth with
/// static endpoints at `provider`).
pub(crate) fn connectors(provider: &str) -> BTreeMap<String, ConnectorConfig> {
    let mut connectors = BTreeMap::new();
    connectors.insert(
        "shared".to_owned(),
        ConnectorConfig {
            credential: CredentialMode::Shared,
            oauth: None,
            api_key: None,
            rotation: None,
        },
    );
    connectors.insert(
        "personal".to_owned(),
        ConnectorConfig {
            credential: CredentialMode::PerMember,
            oauth: Some(OAuthProviderConfig {
                client_id: "vault-client".to_owned(),
                client_secret: Some("vault-client-secret".to_owned().into()),
                authorization_endpoint: Some(format!("{provider}/authorize")),
                token_endpoint: Some(format!("{provider}/token")),
                resource: Some("https://mcp.example.com/personal".to_owned()),
                scopes: vec!["read".to_owned()],
                revocation_endpoint: Some(format!("{provider}/revoke")),
            }),
            api_key: None,
            rotation: None,
        },
    );
    connectors
}

/// Returns a vault over `backend`'s store with a key file in its scratch
/// directory, and the receiver of its events.
pub(crate) fn vault(backend: &Backend, provider: &str) -> (Vault, mpsc::Receiver<CredentialEvent>) {
    vault_with(
        backend.store(),
        &backend.dir().join("vault.kek"),
        provider,
        "http://127.0.0.1:9/vault",
    )
}

/// Returns a vault over `store` with the key file `key_file`.
pub(crate) fn vault_with(
    store: Arc<dyn vault_svc::store::Store>,
    key_file: &std::path::Path,
    provider: &str,
    public_url: &str,
) -> (Vault, mpsc::Receiver<CredentialEvent>) {
    let keyring = Arc::new(LocalKeyring::load_or_generate(key_file).unwrap());
    vault_over(store, keyring, provider, public_url)
}

/// Returns a vault over `store` sealing with `keyring`.
pub(crate) fn vault_over(
    store: Arc<dyn vault_svc::store::Store>,
    keyring: Arc<LocalKeyring>,
    provider: &str,
    public_url: &str,
) -> (Vault, mpsc::Receiver<CredentialEvent>) {
    let (sink, events) = ChannelSink::new(100_000);
    let consent = ConsentIssuer::new(
        public_url,
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let vault = Vault::new(
        "acme".to_owned(),
        store,
        Envelope::new(keyring),
        connectors(provider),
        Arc::new(sink),
        consent,
    );
    (vault, events)
}
