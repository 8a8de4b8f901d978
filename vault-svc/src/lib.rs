//! vault-svc: Gatehouse's credential broker, the only place downstream
//! credentials live. It stores them envelope-encrypted, releases them only to
//! edge-svc (gRPC `gatehouse.vault.v1.Vault`), refreshes OAuth credentials in
//! the background (single-flight across replicas), re-wraps them when the KEK
//! rotates, and runs the per-member consent flow on its HTTP face.
//!
//! Embedding (the product binary): [`open`] a [`Vault`] from a [`Config`], then
//! [`serve_vault`] it on a listener (gRPC, refresh engine, start-up re-wrap),
//! and merge [`http::router`] under the path of `http.public_url`.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

pub mod audit;
mod config;
mod consent;
pub mod credential;
pub mod crypto;
mod error;
pub mod event;
mod grpc;
pub mod http;
pub mod lock;
mod metrics;
mod oauth;
mod refresh;
mod rotation;
pub mod secret;
pub mod secret_rotation;
pub mod store;
mod vault;

pub use config::{
    ApiKeyConfig, AuditConfig, CallersConfig, Config, ConnectorConfig, CredentialMode,
    DEFAULT_LISTEN_ADDR, ENV_PREFIX, HttpConfig, KekConfig, OAuthProviderConfig, RefreshConfig,
    RotationConfig, RotationHook, SecretSetting, StoreConfig, StoreLocation,
};
pub use consent::{ConsentIssuer, ConsentLink};
pub use error::Error;
pub use grpc::{SERVICE_TOKEN_METADATA, VaultGrpc};
pub use refresh::{RefreshEngine, RefreshOutcome};
pub use rotation::{KekStatus, RewrapProgress};
pub use secret_rotation::RotationEngine;
pub use vault::{
    ConnectorHealth, CredentialOutcome, CredentialQuery, HealthState, Released, RevokeReport, Vault,
};

use crate::crypto::{Envelope, KeyEncryptionKey, LocalKeyring};
use crate::event::{EventSink, LogSink};
use crate::lock::{InProcessLock, RedisLock, RefreshLock};
use crate::store::{PostgresStore, SqliteStore, Store};

/// Is the fully qualified name of the vault gRPC service.
pub const SERVICE_NAME: &str = "gatehouse.vault.v1.Vault";

/// Opens the store `location` names, migrating it.
pub async fn open_store(location: &StoreLocation) -> Result<Arc<dyn Store>, Error> {
    Ok(match location {
        StoreLocation::Sqlite(path) => {
            if let Some(parent) = path
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).map_err(|source| Error::DataDir {
                    path: parent.to_owned(),
                    source,
                })?;
            }
            Arc::new(SqliteStore::open(path).await?)
        }
        StoreLocation::Postgres(url) => Arc::new(PostgresStore::connect(url.expose()).await?),
    })
}

/// Returns the KEK source `config` names: the environment variable when set,
/// otherwise the key file (generated on first start).
pub fn open_keyring(config: &Config) -> Result<Arc<dyn KeyEncryptionKey>, Error> {
    Ok(match &config.kek.env_var {
        Some(name) => {
            let value = std::env::var(name).map_err(|_| Error::InvalidKekEnv("is not set"))?;
            Arc::new(LocalKeyring::from_env_value(&value)?)
        }
        None => Arc::new(LocalKeyring::load_or_generate(&config.key_file())?),
    })
}

/// Opens the vault `config` describes, emitting events on `events`.
///
/// Refuses to return (so the service refuses to serve) when the active KEK
/// fails its self-test or when a stored credential is wrapped by a KEK version
/// the keyring lacks.
pub async fn open(config: &Config, events: Arc<dyn EventSink>) -> Result<Vault, Error> {
    let envelope = Envelope::new(open_keyring(config)?);
    envelope.self_test().await?;
    let store = open_store(&config.store_location()).await?;
    for version in store.kek_versions().await? {
        if !envelope.kek().has_version(version) {
            return Err(Error::KekUnavailable(version));
        }
    }
    let consent = ConsentIssuer::new(
        &config.http.public_url,
        config.http.consent_ttl,
        config.refresh.http_timeout,
    )?;
    Ok(Vault::new(
        config.tenant.clone(),
        store,
        envelope,
        config.connectors.clone(),
        events,
        consent,
    ))
}

/// Returns the refresh lock `config` names: Redis when `refresh.redis_url` is
/// set, otherwise in-process.
pub async fn open_lock(config: &RefreshConfig) -> Result<Arc<dyn RefreshLock>, Error> {
    Ok(match &config.redis_url {
        Some(url) => Arc::new(RedisLock::connect(url.expose(), &config.redis_key_prefix).await?),
        None => Arc::new(InProcessLock::default()),
    })
}

/// Serves vault-svc's gRPC API on `listener` until `shutdown` is cancelled, then
/// lets in-flight requests finish and returns. Credential events go to audit-svc
/// when `audit.endpoint` is set, and are logged otherwise.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let events: Arc<dyn EventSink> = match config.audit.endpoint {
        Some(_) => Arc::new(
            audit::AuditForwarder::start(&config, &shutdown)
                .context("cannot set up delivery to audit-svc")?,
        ),
        None => Arc::new(LogSink),
    };
    let vault = open(&config, events)
        .await
        .context("cannot open the vault")?;
    serve_vault(vault, &config, listener, shutdown).await
}

/// Serves an opened `vault`: gRPC on `listener`, the refresh and shared-secret
/// rotation engines (when `refresh.enabled`) and a start-up re-wrap of credentials on an older KEK, until
/// `shutdown`.
pub async fn serve_vault(
    vault: Vault,
    config: &Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut background = Vec::new();
    if config.refresh.enabled {
        let lock = open_lock(&config.refresh)
            .await
            .context("cannot open the refresh lock")?;
        let engine = RefreshEngine::new(vault.clone(), lock.clone(), config.refresh.clone())?;
        background.push(tokio::spawn(engine.run(shutdown.child_token())));
        if !vault.rotating_connectors().is_empty() {
            let rotation = RotationEngine::new(vault.clone(), lock, config.refresh.poll_interval)?;
            background.push(tokio::spawn(rotation.run(shutdown.child_token())));
        }
    }
    if let Some(addr) = config.http.listen_addr {
        let router = http::router(vault.clone());
        let (_, serving) = svc_kit::http::serve_in_background(
            "vault http face",
            addr,
            router,
            shutdown.child_token(),
        )
        .await?;
        background.push(serving);
    }
    let rewrap = vault.clone();
    let batch = config.kek.rewrap_batch;
    tokio::spawn(async move {
        if let Err(error) = rewrap.rewrap_all(batch).await {
            tracing::error!(error = %error, "start-up kek re-wrap failed");
        }
    });
    let (health, health_service) = svc_kit::grpc::health().await;
    health
        .set_serving::<proto::vault::v1::vault_server::VaultServer<VaultGrpc>>()
        .await;
    let reflection = svc_kit::grpc::reflection(proto::FILE_DESCRIPTOR_SET, &[SERVICE_NAME])?;
    let listen_addr = listener.local_addr()?;
    tracing::info!(%listen_addr, "vault-svc serving grpc");
    svc_kit::grpc::server(&config.grpc)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(proto::vault::v1::vault_server::VaultServer::new(
            VaultGrpc::new(vault, &config.callers),
        ))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .context("vault-svc grpc server failed")?;
    for task in background {
        task.await.context("vault-svc background task failed")?;
    }
    tracing::info!("vault-svc stopped");
    Ok(())
}
