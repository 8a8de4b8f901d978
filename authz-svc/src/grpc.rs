//! The `gatehouse.authz.v1.Authz` gRPC service: decode, call the policy store,
//! encode.

use std::pin::Pin;
use std::sync::Arc;

use proto::authz::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::policy::PolicyStore;

/// Caps the queries of one `DecideBatch`, as the proto promises.
const MAX_BATCH: usize = 10_000;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Serves the data-plane API over a [`PolicyStore`].
#[derive(Debug, Clone)]
pub(crate) struct AuthzGrpc {
    policies: PolicyStore,
    // Ends open WatchPolicy streams, so that graceful shutdown does not wait on
    // edges that keep them open.
    shutdown: CancellationToken,
}

/// Is a decoded `Decide`/`DecideBatch` request: everything but the queries.
#[derive(Debug)]
struct Asked {
    principal: policy::Principal,
    scopes: Vec<String>,
    context: policy::RequestContext,
}

impl AuthzGrpc {
    /// Returns the service over `policies`; its streams end when `shutdown` fires.
    pub(crate) fn new(policies: PolicyStore, shutdown: CancellationToken) -> Self {
        Self { policies, shutdown }
    }

    fn decide(&self, request: &pb::DecideRequest) -> Result<pb::DecideResponse, Error> {
        let asked = Asked::decode(
            request.principal.as_ref(),
            &request.scopes,
            request.context.as_ref(),
        )?;
        let (action, target) = query(request.action(), request.target.as_ref())?;
        let decision = self.policies.current().decide(&policy::Request {
            principal: &asked.principal,
            scopes: &asked.scopes,
            action,
            target: &target,
            context: &asked.context,
        });
        Ok(pb::DecideResponse {
            decision: Some((&decision).into()),
        })
    }

    fn decide_batch(
        &self,
        request: &pb::DecideBatchRequest,
    ) -> Result<pb::DecideBatchResponse, Error> {
        if request.queries.len() > MAX_BATCH {
            return Err(Error::InvalidRequest(format!(
                "more than {MAX_BATCH} queries"
            )));
        }
        let asked = Asked::decode(
            request.principal.as_ref(),
            &request.scopes,
            request.context.as_ref(),
        )?;
        let queries = request
            .queries
            .iter()
            .map(|query_| query(query_.action(), query_.target.as_ref()))
            .collect::<Result<Vec<_>, Error>>()?;
        // One snapshot for the whole batch, as the proto promises.
        let evaluator = self.policies.current();
        let decisions = evaluator.decide_batch(
            &asked.principal,
            &asked.scopes,
            queries.iter().map(|(action, target)| (*action, target)),
            &asked.context,
        );
        Ok(pb::DecideBatchResponse {
            decisions: decisions.iter().map(Into::into).collect(),
        })
    }

    // Sends the current snapshot unless the caller holds it, then every new one,
    // until the caller leaves or authz-svc shuts down (UNAVAILABLE).
    async fn watch_loop(
        self,
        known_version: u64,
        sender: mpsc::Sender<Result<pb::WatchPolicyResponse, Status>>,
    ) {
        let mut receiver = self.policies.subscribe();
        let mut sent = known_version;
        loop {
            let current: Arc<policy::Evaluator> = receiver.borrow_and_update().clone();
            if current.version() > sent {
                sent = current.version();
                let response = pb::WatchPolicyResponse {
                    snapshot: Some(current.snapshot().into()),
                };
                if sender.send(Ok(response)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                changed = receiver.changed() => if changed.is_err() { return },
                () = sender.closed() => return,
                () = self.shutdown.cancelled() => {
                    let _closed = sender.send(Err(Status::unavailable("authz-svc is shutting down"))).await;
                    return;
                }
            }
        }
    }
}

impl Asked {
    fn decode(
        principal: Option<&proto::common::v1::Principal>,
        scopes: &[String],
        context: Option<&pb::DecisionContext>,
    ) -> Result<Self, Error> {
        let principal =
            principal.ok_or_else(|| Error::InvalidRequest("principal is required".to_owned()))?;
        Ok(Self {
            principal: policy::Principal::try_from(principal)?,
            scopes: scopes.to_vec(),
            context: policy::RequestContext::try_from(
                context.unwrap_or(&pb::DecisionContext::default()),
            )?,
        })
    }
}

fn query(
    action: pb::Action,
    target: Option<&proto::common::v1::Target>,
) -> Result<(policy::Action, policy::Target), Error> {
    let action = policy::Action::try_from(action)?;
    let target = target.ok_or_else(|| Error::InvalidRequest("target is required".to_owned()))?;
    Ok((action, target.into()))
}

#[tonic::async_trait]
impl pb::authz_server::Authz for AuthzGrpc {
    type WatchPolicyStream = ResponseStream<pb::WatchPolicyResponse>;
    type WatchRevocationsStream = ResponseStream<pb::WatchRevocationsResponse>;

    /// Not served yet: telling *why* a token is inactive (the proto's
    /// `inactive_reason`) needs a verifier that reports the failing check, which
    /// `AuthzState::verify_access_token` does not; edge validates tokens locally
    /// against the JWKS meanwhile.
    async fn validate_token(
        &self,
        _request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        Err(Status::unimplemented(
            "ValidateToken is not implemented yet",
        ))
    }

    #[tracing::instrument(skip_all, fields(action = request.get_ref().action))]
    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        Ok(Response::new(AuthzGrpc::decide(self, request.get_ref())?))
    }

    #[tracing::instrument(skip_all, fields(queries = request.get_ref().queries.len()))]
    async fn decide_batch(
        &self,
        request: Request<pb::DecideBatchRequest>,
    ) -> Result<Response<pb::DecideBatchResponse>, Status> {
        Ok(Response::new(AuthzGrpc::decide_batch(
            self,
            request.get_ref(),
        )?))
    }

    async fn watch_policy(
        &self,
        request: Request<pb::WatchPolicyRequest>,
    ) -> Result<Response<Self::WatchPolicyStream>, Status> {
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(
            self.clone()
                .watch_loop(request.get_ref().known_version, sender),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    /// Not served yet: the revocation feed needs a revocation log with cursors in
    /// the store, which belongs to the token-lifecycle work, not to policy.
    async fn watch_revocations(
        &self,
        _request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        Err(Status::unimplemented(
            "WatchRevocations is not implemented yet",
        ))
    }

    /// Not served yet: RFC 8693 exchange for connectors belongs to the
    /// token-exchange work.
    async fn exchange_token(
        &self,
        _request: Request<pb::ExchangeTokenRequest>,
    ) -> Result<Response<pb::ExchangeTokenResponse>, Status> {
        Err(Status::unimplemented(
            "ExchangeToken is not implemented yet",
        ))
    }
}
