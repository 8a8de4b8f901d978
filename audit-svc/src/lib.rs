//! audit-svc: Gatehouse's append-only, hash-chained audit log with signed
//! RFC 6962 checkpoints, served over gRPC (`gatehouse.audit.v1.Audit`) and
//! usable as a library (`open`, `verify`, `verify_inclusion`).

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

mod checkpoint;
mod config;
mod error;
mod event;
mod grpc;
mod log;
pub mod merkle;
mod query;
pub mod retention;
pub mod sinks;
mod store;
mod verify;

pub use checkpoint::{Checkpoint, Signer, verifier_key};
pub use config::{
    CallersConfig, CheckpointConfig, Config, DEFAULT_LISTEN_ADDR, DatabaseUrl, ENV_PREFIX,
    StoreConfig, StoreLocation,
};
pub use ed25519_dalek::VerifyingKey;
pub use error::Error;
pub use event::{AppendOutcome, AuditEvent, EventId, Facets, StoredEvent};
pub use log::{AuditLog, ConsistencyProof, InclusionProof, Leaf};
pub use merkle::Hash;
pub use query::{DEFAULT_PAGE_SIZE, Filter, MAX_PAGE_SIZE, SearchPage, SearchQuery};
pub use retention::{ArchiveReport, RetentionConfig, verify_archive};
pub use sinks::{SinkConfig, SinkHandle, SinkLag};
pub use store::{DeadLetter, PostgresStore, PruneRecord, Reads, SinkCursor, SqliteStore, Store};
pub use verify::{Problem, VerifyReport, verify, verify_inclusion};

/// Is the fully qualified name of the audit gRPC service.
pub const SERVICE_NAME: &str = "gatehouse.audit.v1.Audit";

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

/// Opens the audit log `config` describes: its store and its checkpoint key
/// (generated on first use). The CLI uses this to search and verify.
pub async fn open(config: &Config) -> Result<AuditLog, Error> {
    let store = open_store(&config.store_location()).await?;
    let signer = Signer::load_or_generate(config.checkpoint.origin.clone(), &config.key_file())?;
    AuditLog::new(store, signer).await
}

/// Serves audit-svc's gRPC API on `listener` until `shutdown` is cancelled, then
/// lets in-flight requests finish, signs a last checkpoint and returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let log = open(&config).await.context("cannot open the audit log")?;
    let sinks = sinks::start(&log, &config.sinks, &shutdown).context("cannot start audit sinks")?;
    let checkpoints = tokio::spawn(
        log.clone()
            .run_checkpoints(config.checkpoint.interval, shutdown.child_token()),
    );
    let retention = tokio::spawn(retention::run(
        log.clone(),
        config.retention.clone(),
        config.archive_dir(),
        config.sinks.iter().map(|sink| sink.name.clone()).collect(),
        shutdown.child_token(),
    ));
    let audit = grpc::AuditGrpc::new(log, &config.callers, shutdown.child_token())?;
    let (health, health_service) = svc_kit::grpc::health().await;
    health
        .set_serving::<proto::audit::v1::audit_server::AuditServer<grpc::AuditGrpc>>()
        .await;
    let reflection = svc_kit::grpc::reflection(proto::FILE_DESCRIPTOR_SET, &[SERVICE_NAME])?;
    let listen_addr = listener.local_addr()?;
    tracing::info!(%listen_addr, "audit-svc serving grpc");
    svc_kit::grpc::server(&config.grpc)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(proto::audit::v1::audit_server::AuditServer::new(audit))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .context("audit-svc grpc server failed")?;
    checkpoints.await.context("audit checkpoint task failed")?;
    retention.await.context("audit retention task failed")?;
    for sink in sinks {
        sink.join().await;
    }
    tracing::info!("audit-svc stopped");
    Ok(())
}
