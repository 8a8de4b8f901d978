//! The three backend services, started in this process on loopback ports for `gatehouse up`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One backend service running inside the product binary.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) name: &'static str,
    pub(crate) addr: SocketAddr,
    pub(crate) task: JoinHandle<anyhow::Result<()>>,
}

/// The backends and the one audit path every service of this process writes to.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) backends: Vec<Backend>,
    /// Edge's durable spool, delivering to the in-process audit-svc; token and credential
    /// events take the same path as call events.
    pub(crate) recorder: edge_svc::audit::Recorder,
    /// Edge's vault-svc client, authenticated by this process's random edge token, which
    /// also exchanges tokens at authz-svc for `token_exchange` connectors.
    pub(crate) credentials: edge_svc::credentials::Credentials,
    /// vault-svc itself, whose HTTP face (the consent callback) the public listener serves.
    pub(crate) vault: vault_svc::Vault,
    /// authz-svc's configuration and bound gRPC listener: it is served once the
    /// authorization server's state is open (it needs the gateway's virtual servers).
    pub(crate) authz: (authz_svc::Config, TcpListener),
    /// audit-svc's log, opened on the same store, for the admin API's search.
    pub(crate) audit_log: audit_svc::AuditLog,
}

/// What vault-svc learns from the gateway file and the public listener.
#[derive(Debug)]
pub(crate) struct VaultFacts {
    /// The connectors that declare credentials, as vault-svc configures them.
    pub(crate) connectors: std::collections::BTreeMap<String, vault_svc::ConnectorConfig>,
    /// Where members' browsers reach vault-svc's HTTP face (`{public}/vault`).
    pub(crate) public_url: String,
}

/// How long edge reuses released material before asking vault-svc again.
const CREDENTIAL_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Builds the runtime the audit trail's work runs on in this process: audit-svc (its ingest,
/// chain hashing, store, checkpoints and sinks) and the spool's delivery and fsyncs.
///
/// None of that work is waited for by a call (the spool holds each event durably until
/// audit-svc acknowledges it), yet on the request path's workers and at the kernel's default
/// policy each batch held a core for a millisecond or more while calls waited behind it (a
/// running thread keeps its slice before a waking one gets the CPU). Its one thread, and every
/// thread it starts (SQLite's connection threads, the blocking pool's), run under `SCHED_IDLE`,
/// which any waking thread of the data plane preempts at once; when the data plane leaves the
/// CPU idle, as it does below saturation, the trail keeps up (`bench/notes.md`).
pub(crate) fn audit_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("audit-trail")
        .on_thread_start(behind_the_data_plane)
        .enable_all()
        .build()
}

/// Moves the calling thread to `SCHED_IDLE`; threads it starts inherit the policy. Best effort:
/// where the kernel refuses, the thread keeps the process's policy.
fn behind_the_data_plane() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy, thread_native_id,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(error) = thread_priority::set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        idle,
    ) {
        tracing::debug!(?error, "cannot move an audit trail thread to SCHED_IDLE");
    }
}

/// Starts audit-svc, the audit spool and vault-svc on ephemeral loopback ports, and binds
/// authz-svc's. audit-svc and the spool's delivery run on `audit_runtime` ([`audit_runtime`]).
///
/// Each reads its usual `GATEHOUSE_<SVC>__*` settings, so the embedded default and a standalone
/// deployment configure a service the same way; only the listener is chosen here.
pub(crate) async fn start(
    shutdown: &CancellationToken,
    audit_runtime: &tokio::runtime::Handle,
    data: &std::path::Path,
    audit_section: crate::oauth::AuditSection,
    facts: VaultFacts,
) -> anyhow::Result<Started> {
    let mut authz = authz_svc::Config::load(svc_kit::config_sources(authz_svc::ENV_PREFIX, None))?;
    let vault_config =
        vault_svc::Config::load(svc_kit::config_sources(vault_svc::ENV_PREFIX, None))?
            .with_data_dir(data);
    let mut vault_config = vault_config;
    // The gateway file is the one source of truth for connectors; the edge token is random per
    // process, so only this process's edge can ever receive material.
    let vault_token = svc_kit::callers::SecretSetting::generate()?;
    vault_config.connectors = facts.connectors;
    vault_config.http.public_url = facts.public_url;
    vault_config.callers.edge_token = Some(vault_token.clone());
    let mut audit = audit_svc::Config::load(svc_kit::config_sources(audit_svc::ENV_PREFIX, None))?
        .with_data_dir(data);
    if !audit_section.sinks.is_empty() {
        audit.sinks = audit_section.sinks;
    }
    if audit_section.retention != audit_svc::RetentionConfig::default() {
        audit.retention = audit_section.retention;
    }
    let (authz_listener, authz_addr) = loopback().await?;
    // Edge exchanges tokens for `token_exchange` connectors at the in-process authz-svc.
    let authz_token = match authz.callers.edge_token.clone() {
        Some(token) => token,
        None => svc_kit::callers::SecretSetting::generate()?,
    };
    authz.callers.edge_token = Some(authz_token.clone());
    let exchanger = edge_svc::credentials::Exchanger::new(
        proto::authz::v1::authz_client::AuthzClient::with_interceptor(
            svc_kit::grpc::channel(
                &format!("http://{authz_addr}"),
                &svc_kit::GrpcClientConfig::default(),
            )?,
            svc_kit::callers::PresentToken::new(Some(&authz_token))?,
        ),
    );
    let (vault_listener, vault_addr) = loopback().await?;
    let (audit_listener, audit_addr) = loopback().await?;
    // Edge's spool is the one emitter in this process (token and credential events go through
    // it), so it is the one caller audit-svc admits besides any configured auditor.
    let audit_token = match audit.callers.edge_token.clone() {
        Some(token) => token,
        None => svc_kit::callers::SecretSetting::generate()?,
    };
    audit.callers.edge_token = Some(audit_token.clone());
    let spool =
        edge_svc::audit::AuditConfig::new(format!("http://{audit_addr}"), data.join("edge-spool"))
            .with_token(audit_token);
    let audit_log = audit_svc::open(&audit).await?;
    // The listener moves to the audit runtime's reactor, so its connections wake that runtime.
    let audit_listener = audit_listener.into_std()?;
    let audit_shutdown = shutdown.child_token();
    let audit_task = audit_runtime.spawn(async move {
        let listener = TcpListener::from_std(audit_listener)?;
        audit_svc::serve(audit, listener, audit_shutdown).await
    });
    let recorder = {
        let _on_audit_runtime = audit_runtime.enter();
        edge_svc::audit::Recorder::start(&spool, shutdown)?
    };
    let vault = vault_svc::open(
        &vault_config,
        Arc::new(crate::trail::CredentialAudit(recorder.clone())),
    )
    .await?;
    let credentials = edge_svc::credentials::Credentials::with_token(
        &format!("http://{vault_addr}"),
        vault_token.expose(),
        CREDENTIAL_CACHE_TTL,
    )?
    .with_exchanger(exchanger);
    let vault_shutdown = shutdown.child_token();
    let served = vault.clone();
    let backends = vec![
        Backend {
            name: "vault-svc",
            addr: vault_addr,
            task: tokio::spawn(async move {
                vault_svc::serve_vault(served, &vault_config, vault_listener, vault_shutdown).await
            }),
        },
        Backend {
            name: "audit-svc",
            addr: audit_addr,
            task: audit_task,
        },
    ];
    Ok(Started {
        backends,
        recorder,
        credentials,
        vault,
        authz: (authz, authz_listener),
        audit_log,
    })
}

/// Serves authz-svc's gRPC API (data plane and agent administration) over the state the
/// public listener's OAuth face also uses, so that changes through either are one.
pub(crate) fn authz(
    config: authz_svc::Config,
    listener: TcpListener,
    policies: authz_svc::PolicyStore,
    state: authz_svc::AuthzState,
    shutdown: CancellationToken,
) -> anyhow::Result<Backend> {
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        authz_svc::serve_with(&config, policies, state, listener, shutdown).await
    });
    Ok(Backend {
        name: "authz-svc",
        addr,
        task,
    })
}

/// Binds an ephemeral loopback port, as every in-process backend listens.
pub(crate) async fn loopback() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}
