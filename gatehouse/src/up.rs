//! `gatehouse up`: all four services in one process, one public HTTP listener.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use edge_svc::config::HttpFace;
use svc_kit::config::LogFormat;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What `gatehouse up` was asked to do.
#[derive(Debug)]
pub(crate) struct UpOptions {
    pub(crate) config: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) listen: SocketAddr,
    /// The origin clients use; `None` means the listener's own `http://` address.
    pub(crate) public_url: Option<url::Url>,
    pub(crate) json_logs: bool,
    /// The log filter, if not the services' default.
    pub(crate) log_filter: Option<String>,
    /// The OTLP/gRPC collector for spans and metrics, if any.
    pub(crate) otlp_endpoint: Option<String>,
    /// The runtime the audit trail's work runs on ([`crate::backends::audit_runtime`]).
    pub(crate) audit_runtime: tokio::runtime::Handle,
}

/// How long in-flight requests may finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Exit code for a configuration the user must fix (EX_CONFIG-like, as every service uses).
const EXIT_CONFIG: u8 = 64;

/// Runs the gateway until SIGINT/SIGTERM; invalid configuration exits 64 before anything binds.
pub(crate) async fn run(options: UpOptions) -> ExitCode {
    let (spec, sections, declared) = match load(&options.config, &options.data) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("gatehouse: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let defaults = svc_kit::TelemetryConfig::default();
    let telemetry_config = svc_kit::TelemetryConfig {
        log_format: if options.json_logs {
            LogFormat::Json
        } else {
            LogFormat::Pretty
        },
        log_filter: options.log_filter.clone().unwrap_or(defaults.log_filter),
        otlp_endpoint: options.otlp_endpoint.clone(),
        service_namespace: defaults.service_namespace,
    };
    if let Err(error) = telemetry_config.validate() {
        eprintln!("gatehouse: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let telemetry = match svc_kit::telemetry::init("gatehouse", &telemetry_config) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("gatehouse: cannot start telemetry: {error}");
            return ExitCode::from(70);
        }
    };
    let outcome = serve(options, spec, sections, declared).await;
    telemetry.shutdown().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gatehouse: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the one gatehouse file: edge's connectors and virtual servers, the backends' sections.
///
/// The connectors and virtual servers last applied through the admin API (kept in `data`)
/// replace the file's: the file is the seed, `gatehouse apply` changes what is served.
/// Policies are compiled here so that an invalid one stops the start with Cedar's diagnostics.
fn load(path: &std::path::Path, data: &std::path::Path) -> Result<Loaded, String> {
    let source = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("cannot read {source}: {error}"))?;
    let declarations = crate::admin::Declarations::seed(&text, data)
        .map_err(|error| format!("{source}: {error}"))?;
    let spec = declarations.spec(&source)?;
    let sections = crate::oauth::sections(&text, &source)?;
    authz_svc::PolicyStore::new(&sections.policies)
        .map_err(|error| format!("{source}: policies: {error}"))?;
    Ok((spec, sections, declarations))
}

/// The gateway file, parsed: edge's spec, the backends' sections, the declarations served.
type Loaded = (
    edge_svc::GatewaySpec,
    crate::oauth::Sections,
    crate::admin::Declarations,
);

/// Returns the policy store, with the file's policies as the set the admin API replaces
/// whole, so that the file and the API are one source of truth (`gatehouse apply`); a set
/// applied through the API since (kept in `data`) replaces the file's seed.
fn policy_store(
    policies: &authz_svc::PolicyConfig,
    data: &std::path::Path,
) -> anyhow::Result<authz_svc::PolicyStore> {
    let store = authz_svc::PolicyStore::new(&authz_svc::PolicyConfig::default())?;
    let document = match crate::admin::policies::applied(data).map_err(anyhow::Error::msg)? {
        Some(applied) => applied,
        None => policies.document()?,
    };
    store.replace(document)?;
    Ok(store)
}

async fn serve(
    options: UpOptions,
    spec: edge_svc::GatewaySpec,
    sections: crate::oauth::Sections,
    declarations: crate::admin::Declarations,
) -> anyhow::Result<()> {
    let crate::oauth::Sections {
        mut authorization,
        policies,
        audit: audit_section,
        admin: admin_section,
        directory: _,
    } = sections;
    std::fs::create_dir_all(&options.data).map_err(|error| {
        anyhow::anyhow!(
            "cannot create data directory {}: {error}",
            options.data.display()
        )
    })?;
    let shutdown = CancellationToken::new();
    svc_kit::shutdown::cancel_on_signal(shutdown.clone());
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", options.listen))?;
    let local = listener.local_addr()?;
    let public_url = match options.public_url {
        Some(url) => url,
        None => url::Url::parse(&format!("http://{local}"))?,
    };
    let face = HttpFace::new(public_url, &[], &[], 4 * 1024 * 1024);
    let policy_store = policy_store(&policies, &options.data)?;
    let facts = crate::backends::VaultFacts {
        connectors: crate::credentials::vault_connectors(&spec).map_err(anyhow::Error::msg)?,
        public_url: format!("{}/vault", face.public_url.as_str().trim_end_matches('/')),
    };
    let crate::backends::Started {
        mut backends,
        recorder,
        credentials,
        vault,
        authz: (authz_config, authz_listener),
        audit_log,
    } = crate::backends::start(
        &shutdown,
        &options.audit_runtime,
        &options.data,
        audit_section,
        facts,
    )
    .await?;
    // Live even without policies: the admin API may set some later (an empty set is open).
    let access = edge_svc::access::Access::live(policy_store.subscribe());
    // Policy decides on provisioned members' current groups (SCIM), kept by authz-svc.
    let directory = authz_svc::DirectoryView::default();
    let access = access.with_directory(std::sync::Arc::new(crate::oauth::DirectoryGroups(
        directory.clone(),
    )));
    let quotas = edge_svc::quota::Quotas::open(&spec.rate_limits).await?;
    let gateway = edge_svc::Gateway::start_with(&spec, Some(&credentials), &shutdown)
        .map_err(|reason| anyhow::anyhow!(reason))?
        .with_audit(recorder)
        .with_access(access)
        .with_quotas(quotas);
    let derived = crate::credentials::exchange_targets(&spec, &authorization.token_exchange);
    authorization.token_exchange.extend(derived);
    let console_roles = crate::console::roles(&authorization);
    let (authz, auth) =
        crate::oauth::open(authorization, &spec, &face, &options.data, gateway.access()).await?;
    let authz = authz
        .with_audit(std::sync::Arc::new(crate::trail::SpooledAudit(
            gateway.recorder().clone(),
        )))
        .with_directory_view(directory)
        .with_credential_purge(std::sync::Arc::new(crate::oauth::VaultPurge(vault.clone())))
        .with_policies(policy_store.clone());
    // SCIM changes made by another replica on the same database reach edge this way.
    let _directory_follower = authz.follow_directory(shutdown.child_token());
    // Decommissionings by `gatehouse agents` on the same data directory reach edge this way.
    let _follower = authz.follow_revocations(shutdown.child_token());
    // So do their audit events, through the same spool as the server's own.
    let _outbox = authz.forward_audit_outbox(shutdown.child_token());
    // Signing keys rotate on schedule (and a rotation by another replica is picked up).
    let _keys = authz.maintain_keys(shutdown.child_token());
    // The same policy store edge enforces: a change reaches Decide and edge together.
    let authz_backend = crate::backends::authz(
        authz_config,
        authz_listener,
        policy_store.clone(),
        authz.clone(),
        shutdown.child_token(),
    )?;
    backends.insert(0, authz_backend);
    let issuer = authz.issuer().to_owned();
    let console_authz = authz.clone();
    let admin = crate::admin::Admin::new(crate::admin::AdminParts {
        guard: crate::admin::Guard {
            resource: crate::admin::resource_url(&face),
            verifier: std::sync::Arc::clone(&auth.verifier),
            agents: authz.agents().clone(),
            group: admin_section.group,
        },
        issuer: issuer.clone(),
        policies: policy_store,
        declarations,
        gateway: gateway.clone(),
        face: face.clone(),
        data: options.data.clone(),
        authz: authz.clone(),
        vault: vault.clone(),
        audit_log,
        recorder: gateway.recorder().clone(),
        shutdown: shutdown.clone(),
    })
    .map_err(anyhow::Error::msg)?;
    backends.push(crate::admin::grpc::start(admin.clone(), &shutdown).await?);
    let console = crate::console::Console::new(crate::console::ConsoleParts {
        admin: admin.clone(),
        authz: console_authz,
        gateway: gateway.clone(),
        vault: vault.clone(),
        public_url: face.public_url.clone(),
        roles: console_roles,
    });
    let router = edge_svc::http::router(&gateway, &face, Some(auth), &shutdown)
        .merge(authz_svc::scim_router(authz.clone()))
        .merge(authz_svc::oauth_router(authz))
        .merge(crate::admin::http::router(admin))
        .merge(console.router())
        .nest("/vault", vault_svc::http::router(vault));
    announce(&gateway, &face, local, &backends, &issuer)?;
    let mut server = tokio::spawn(edge_svc::serve_router(router, listener, shutdown.clone()));
    tokio::select! {
        joined = &mut server => {
            shutdown.cancel();
            return joined?;
        }
        () = shutdown.cancelled() => {}
    }
    svc_kit::shutdown::drain(server, SHUTDOWN_GRACE).await?;
    for backend in backends {
        svc_kit::shutdown::drain(backend.task, SHUTDOWN_GRACE).await?;
    }
    Ok(())
}

/// Prints what is served; the first line is the readiness marker scripts wait for.
fn announce(
    gateway: &edge_svc::Gateway,
    face: &HttpFace,
    local: SocketAddr,
    backends: &[crate::backends::Backend],
    issuer: &str,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "gatehouse ready at http://{local}")?;
    for server in gateway.servers() {
        let connectors: Vec<&str> = server
            .members()
            .iter()
            .map(|member| member.connector.name())
            .collect();
        writeln!(
            out,
            "  virtual server {:<16} {}  (connectors: {}; auth: {:?})",
            server.name(),
            face.resource_url(server.name()),
            connectors.join(", "),
            server.auth()
        )?;
    }
    writeln!(
        out,
        "  {:<31} {issuer}/.well-known/oauth-authorization-server",
        "oauth issuer"
    )?;
    writeln!(out, "  {:<31} http://{local}/metrics", "prometheus metrics")?;
    writeln!(
        out,
        "  {:<31} {}  (openapi.json beside it; scope {})",
        "admin api",
        crate::admin::resource_url(face),
        crate::admin::ADMIN_SCOPE
    )?;
    writeln!(
        out,
        "  {:<31} {}/console/  (sign in as a member; administrators see every page)",
        "web console",
        face.public_url.as_str().trim_end_matches('/')
    )?;
    for backend in backends {
        writeln!(
            out,
            "  {:<31} grpc://{} (health, reflection)",
            backend.name, backend.addr
        )?;
    }
    out.flush()
}
