//! A standalone edge as authz-svc's protected resource: tokens checked locally against the
//! issuer's JWKS, revocations and policy followed over authz-svc's `WatchRevocations` and
//! `WatchPolicy` streams.
//!
//! Both feeds reconnect on their own (with the revocation cursor or the policy version they
//! hold), so a restarted or replaced authz-svc replica costs nothing but the reconnect. While
//! authz-svc is unreachable the edge keeps serving with the last state it heard: policy stays
//! as it was (a stale policy is still an administrator's decision), but the revocation set is
//! trusted only for `revocation_staleness` after the feed was lost — after that every token
//! gets a 503 until the feed is back, because a revoked agent must not keep working merely
//! because authz-svc is down.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use policy::Evaluator;
use proto::authz::v1 as pb;
use serde::Deserialize;
use svc_kit::callers::{PresentToken, SecretSetting};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use super::{JwksVerifier, Revocations};
use crate::access::Access;
use crate::credentials::exchange::AuthzClient;
use crate::http::ResourceAuth;

/// First pause before reconnecting a lost feed; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between two reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// HTTP/2 pings on the feed connection, so that a silent authz-svc (a hung host rather than a
/// closed socket) is noticed as lost within about twice this.
const KEEPALIVE: Duration = Duration::from_secs(2);

/// How a standalone edge reaches authz-svc: its gRPC endpoint, edge's service token, and the
/// issuer whose tokens it accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzConfig {
    /// authz-svc's gRPC endpoint (a load-balanced address with several replicas), such as
    /// `http://127.0.0.1:50051`.
    pub endpoint: String,
    /// The environment variable holding edge's service token (`callers.edge_token` at authz),
    /// so that the config file holds no secret.
    pub service_token_env: String,
    /// The issuer tokens must name (`iss`), as authz-svc's OAuth metadata publishes it.
    pub issuer: url::Url,
    /// Where the issuer's signing keys are; defaults to `{issuer}/jwks.json`.
    #[serde(default)]
    pub jwks_url: Option<url::Url>,
    /// How long the revocation set is trusted after the feed was lost; past it, tokens are
    /// refused with 503 until the feed is back.
    #[serde(with = "humantime_serde", default = "default_revocation_staleness")]
    pub revocation_staleness: Duration,
}

fn default_revocation_staleness() -> Duration {
    Duration::from_secs(30)
}

/// Why the link to authz-svc cannot be set up (at start, from configuration).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The service token variable is unset or not usable as gRPC metadata.
    #[error("environment variable {0} must hold edge's authz-svc service token (printable ASCII)")]
    ServiceToken(String),
    /// The endpoint is not a gRPC URL.
    #[error("authz.endpoint is not a usable gRPC endpoint")]
    Endpoint(#[source] tonic::transport::Error),
    /// The JWKS URL cannot be derived from the issuer.
    #[error("authz.jwks_url cannot be derived from the issuer")]
    JwksUrl(#[source] url::ParseError),
    /// The deny-all policy held until the first snapshot does not compile (a bug).
    #[error("cannot build the placeholder policy")]
    Placeholder(#[source] policy::Error),
}

/// The authorization state a standalone edge follows: token checks and live policy.
#[derive(Debug, Clone)]
pub struct AuthzLink {
    /// Checks presented tokens: local JWT validation behind the revocation guard.
    pub auth: ResourceAuth,
    /// The policy authz-svc publishes, switched as each snapshot arrives.
    pub access: Access,
    /// The revocations heard so far.
    pub revocations: Revocations,
    /// Mints tokens for `token_exchange` connectors over the same connection.
    pub exchanger: crate::credentials::Exchanger,
}

impl AuthzLink {
    /// Starts following authz-svc's feeds until `shutdown`; nothing is dialled before this
    /// returns, so an authz-svc that starts later is not an error.
    ///
    /// Until the first policy snapshot arrives every call is denied; until the revocation
    /// feed first syncs every token is refused with 503.
    pub fn start(config: &AuthzConfig, shutdown: &CancellationToken) -> Result<Self, LinkError> {
        let token = std::env::var(&config.service_token_env)
            .ok()
            .map(SecretSetting::from)
            .ok_or_else(|| LinkError::ServiceToken(config.service_token_env.clone()))?;
        Self::start_with_token(config, &token, shutdown)
    }

    /// Like [`AuthzLink::start`], with the service token given rather than read from the
    /// environment (for a process that wires its services itself).
    pub fn start_with_token(
        config: &AuthzConfig,
        token: &SecretSetting,
        shutdown: &CancellationToken,
    ) -> Result<Self, LinkError> {
        let present = PresentToken::new(Some(token))
            .map_err(|_| LinkError::ServiceToken(config.service_token_env.clone()))?;
        let channel = Endpoint::from_shared(config.endpoint.clone())
            .map_err(LinkError::Endpoint)?
            .connect_timeout(Duration::from_secs(2))
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true)
            .connect_lazy();
        let client = pb::authz_client::AuthzClient::with_interceptor(channel, present);
        let issuer = config.issuer.as_str().trim_end_matches('/').to_owned();
        let jwks_url = match &config.jwks_url {
            Some(url) => url.clone(),
            None => url::Url::parse(&format!("{issuer}/jwks.json")).map_err(LinkError::JwksUrl)?,
        };
        let revocations = Revocations::remote(config.revocation_staleness);
        let verifier = revocations.guard(Arc::new(JwksVerifier::new(issuer.clone(), jwks_url)));
        let (policy, receiver) = watch::channel(Arc::new(placeholder()?));
        tokio::spawn(follow_revocations(
            client.clone(),
            revocations.clone(),
            shutdown.child_token(),
        ));
        let exchanger = crate::credentials::Exchanger::new(client.clone());
        tokio::spawn(follow_policy(client, policy, shutdown.child_token()));
        Ok(Self {
            auth: ResourceAuth { verifier, issuer },
            access: Access::live(receiver),
            revocations,
            exchanger,
        })
    }
}

/// The policy in force before authz-svc's first snapshot: deny everything (an empty
/// snapshot would mean "no policy", which is open).
fn placeholder() -> Result<Evaluator, LinkError> {
    let mut document = policy::PolicyDocument::default();
    document.add_cedar(
        "placeholder",
        "@id(\"awaiting-authz-policy\")\nforbid (principal, action, resource);",
        policy::PolicyOrigin::Generated,
    );
    Evaluator::build(&document, 0, SystemTime::now()).map_err(LinkError::Placeholder)
}

/// Applies `WatchRevocations` messages to `revocations`, reconnecting with the last cursor.
async fn follow_revocations(
    client: AuthzClient,
    revocations: Revocations,
    shutdown: CancellationToken,
) {
    let (mut client, mut cursor, mut backoff) = (client, String::new(), MIN_BACKOFF);
    loop {
        let opened = tokio::select! {
            opened = client.watch_revocations(pb::WatchRevocationsRequest { cursor: cursor.clone() }) => opened,
            () = shutdown.cancelled() => return,
        };
        match opened {
            Ok(response) => {
                // With a cursor, the stream starts with what was missed (or a full set): once
                // it is open nothing can be lost any more.
                if !cursor.is_empty() {
                    revocations.feed_resumed();
                }
                backoff = MIN_BACKOFF;
                let mut stream = response.into_inner();
                loop {
                    let message = tokio::select! {
                        message = stream.message() => message,
                        () = shutdown.cancelled() => return,
                    };
                    match message {
                        Ok(Some(message)) => {
                            apply(&revocations, &message);
                            cursor = message.cursor;
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::warn!(code = ?status.code(), message = status.message(), "revocation feed from authz-svc ended");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "cannot open the revocation feed from authz-svc");
            }
        }
        revocations.feed_lost();
        if !pause(&mut backoff, &shutdown).await {
            return;
        }
    }
}

/// Applies one feed message: a full replacement or new revocations.
fn apply(revocations: &Revocations, message: &pb::WatchRevocationsResponse) {
    if message.replaces_all {
        revocations.replace_all();
    }
    for revocation in &message.revocations {
        // Without a time, a revocation counts from now and is kept for good: refusing too
        // much is safer than forgetting one.
        let revoked_at = seconds(revocation.revoked_at.as_ref()).unwrap_or_else(unix_now);
        let expires_at = seconds(revocation.expires_at.as_ref()).unwrap_or(u64::MAX);
        match &revocation.subject {
            Some(pb::revocation::Subject::Jti(jti)) => revocations.revoke_token(jti, expires_at),
            Some(pb::revocation::Subject::GrantId(grant)) => revocations.revoke_grant(grant),
            // A deleted client registration refuses its tokens exactly as a decommissioned agent.
            Some(
                pb::revocation::Subject::AgentClientId(client_id)
                | pb::revocation::Subject::ClientId(client_id),
            ) => revocations.revoke_agent(client_id, expires_at),
            Some(pb::revocation::Subject::MemberId(member)) => {
                revocations.revoke_member(member, revoked_at, expires_at);
            }
            None => tracing::warn!("authz-svc sent a revocation without a subject"),
        }
    }
}

/// Installs each `WatchPolicy` snapshot, reconnecting with the version held.
async fn follow_policy(
    client: AuthzClient,
    policy: watch::Sender<Arc<Evaluator>>,
    shutdown: CancellationToken,
) {
    let (mut client, mut backoff) = (client, MIN_BACKOFF);
    loop {
        // Versions count per authz-svc replica, so the one held says nothing to the replica
        // reached now: ask for its current snapshot, whatever its number.
        let opened = tokio::select! {
            opened = client.watch_policy(pb::WatchPolicyRequest { known_version: 0 }) => opened,
            () = shutdown.cancelled() => return,
        };
        match opened {
            Ok(response) => {
                backoff = MIN_BACKOFF;
                let mut stream = response.into_inner();
                loop {
                    let message = tokio::select! {
                        message = stream.message() => message,
                        () = shutdown.cancelled() => return,
                    };
                    match message {
                        Ok(Some(message)) => install(&policy, message.snapshot.as_ref()),
                        Ok(None) => break,
                        Err(status) => {
                            tracing::warn!(code = ?status.code(), message = status.message(), "policy feed from authz-svc ended");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "cannot open the policy feed from authz-svc");
            }
        }
        if !pause(&mut backoff, &shutdown).await {
            return;
        }
    }
}

/// Compiles and installs a snapshot; one that does not compile leaves the policy in force.
fn install(policy: &watch::Sender<Arc<Evaluator>>, snapshot: Option<&pb::PolicySnapshot>) {
    let Some(snapshot) = snapshot else {
        tracing::warn!("authz-svc sent a policy message without a snapshot");
        return;
    };
    let compiled = policy::Snapshot::try_from(snapshot).and_then(Evaluator::new);
    match compiled {
        Ok(evaluator) => {
            tracing::info!(
                version = evaluator.version(),
                "policy snapshot from authz-svc in force"
            );
            policy.send_replace(Arc::new(evaluator));
        }
        Err(error) => {
            tracing::error!(version = snapshot.version, %error, "cannot compile the policy snapshot from authz-svc; keeping the policy in force");
        }
    }
}

/// Waits the current backoff (doubling it for next time); `false` when shutting down.
async fn pause(backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = shutdown.cancelled() => false,
    }
}

/// Seconds since the Unix epoch of a protobuf timestamp (0 when before it).
fn seconds(timestamp: Option<&prost_types::Timestamp>) -> Option<u64> {
    timestamp.map(|at| u64::try_from(at.seconds).unwrap_or(0))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
