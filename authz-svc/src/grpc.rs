//! authz-svc's gRPC services: `gatehouse.authz.v1.Authz` for edge-svc (decisions,
//! token validation, the feeds, exchange) and `AgentAdmin` for administrators. Each
//! handler checks the caller's service token, decodes, calls the domain, encodes.

use std::pin::Pin;
use std::sync::Arc;

use proto::authz::v1 as pb;
use svc_kit::callers::ServiceTokens;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::config::CallersConfig;
use crate::error::Error;
use crate::exchange::ConnectorExchange;
use crate::policy::PolicyStore;
use crate::revocation::{REVOCATION_POLL_INTERVAL, catch_up, read_after};
use crate::state::AuthzState;

mod agent_admin;
mod convert;

pub(crate) use agent_admin::AgentAdminGrpc;

/// Caps the queries of one `DecideBatch`, as the proto promises.
const MAX_BATCH: usize = 10_000;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Is a gRPC caller's role, from its service token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// edge-svc: the data plane.
    Edge,
    /// An administrator of agent bundles.
    Admin,
}

/// May use the data-plane API.
const EDGE: &[Role] = &[Role::Edge];

/// Maps service tokens to roles, and tells an unknown caller (UNAUTHENTICATED) from
/// a known one without the role a method needs (PERMISSION_DENIED).
#[derive(Debug, Clone)]
pub(crate) struct Callers(Arc<ServiceTokens<Role>>);

impl Callers {
    /// Returns the table of the configured tokens.
    pub(crate) fn new(config: &CallersConfig) -> Self {
        Self(Arc::new(ServiceTokens::new([
            (Role::Edge, config.edge_token.as_ref()),
            (Role::Admin, config.admin_token.as_ref()),
        ])))
    }

    /// Admits the caller of `request` when its token holds one of `allowed`.
    pub(crate) fn admit<T>(&self, request: &Request<T>, allowed: &[Role]) -> Result<(), Status> {
        if self.0.roles(request.metadata()).is_empty() {
            return Err(Error::Unauthenticated.into());
        }
        self.0
            .require(request, allowed)
            .map(|_| ())
            .map_err(|_| Error::PermissionDenied.into())
    }
}

/// Serves the data-plane API over a [`PolicyStore`] and the authorization server's state.
#[derive(Debug, Clone)]
pub(crate) struct AuthzGrpc {
    policies: PolicyStore,
    state: AuthzState,
    callers: Callers,
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
    /// Returns the service over `policies` and `state`, admitting `callers`; its
    /// streams end when `shutdown` fires.
    pub(crate) fn new(
        policies: PolicyStore,
        state: AuthzState,
        callers: Callers,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            policies,
            state,
            callers,
            shutdown,
        }
    }

    async fn validate(
        &self,
        request: &pb::ValidateTokenRequest,
    ) -> Result<pb::ValidateTokenResponse, Error> {
        let token = request
            .token
            .as_ref()
            .map(|secret| secret.value.as_str())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Error::InvalidRequest("token is required".to_owned()))?;
        if request.resource.is_empty() {
            return Err(Error::InvalidRequest("resource is required".to_owned()));
        }
        let verdict = self.state.validate_for(token, &request.resource).await?;
        Ok(convert::validation(verdict))
    }

    async fn exchange(
        &self,
        request: &pb::ExchangeTokenRequest,
    ) -> Result<pb::ExchangeTokenResponse, Error> {
        let subject_token = request
            .subject_token
            .as_ref()
            .map(|secret| secret.value.as_str())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Error::InvalidRequest("subject_token is required".to_owned()))?;
        if request.connector.is_empty() {
            return Err(Error::InvalidRequest("connector is required".to_owned()));
        }
        let (token, claims) = self
            .state
            .exchange_for_connector(&ConnectorExchange {
                subject_token,
                connector: &request.connector,
                audience: &request.audience,
                scopes: &request.scopes,
            })
            .await?;
        Ok(convert::exchanged(token, &claims))
    }

    fn catalogue_token(
        &self,
        request: &pb::IssueCatalogueTokenRequest,
    ) -> Result<pb::ExchangeTokenResponse, Error> {
        if request.connector.is_empty() {
            return Err(Error::InvalidRequest("connector is required".to_owned()));
        }
        let (token, claims) = self.state.catalogue_token(&request.connector)?;
        Ok(convert::exchanged(token, &claims))
    }

    // Sends the caller what it is missing, then every new revocation within the poll
    // interval, until the caller leaves or authz-svc shuts down (UNAVAILABLE).
    async fn revocations_loop(
        self,
        cursor: Option<i64>,
        sender: mpsc::Sender<Result<pb::WatchRevocationsResponse, Status>>,
    ) {
        let store = self.state.store.clone();
        let mut page = match catch_up(store.as_ref(), cursor).await {
            Ok(page) => page,
            Err(error) => {
                let _closed = sender.send(Err(error.into())).await;
                return;
            }
        };
        let mut ticks = tokio::time::interval(REVOCATION_POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if (page.replaces_all || !page.entries.is_empty())
                && sender.send(Ok(convert::revocations(&page))).await.is_err()
            {
                return;
            }
            tokio::select! {
                _ = ticks.tick() => {}
                () = sender.closed() => return,
                () = self.shutdown.cancelled() => {
                    let _closed = sender.send(Err(Status::unavailable("authz-svc is shutting down"))).await;
                    return;
                }
            }
            match read_after(store.as_ref(), page.cursor).await {
                Ok(entries) => {
                    page.cursor = entries.last().map_or(page.cursor, |entry| entry.seq);
                    page.entries = entries;
                    page.replaces_all = false;
                }
                Err(error) => {
                    let _closed = sender.send(Err(error.into())).await;
                    return;
                }
            }
        }
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

    #[tracing::instrument(skip_all, fields(resource = %request.get_ref().resource))]
    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        self.callers.admit(&request, EDGE)?;
        Ok(Response::new(self.validate(request.get_ref()).await?))
    }

    #[tracing::instrument(skip_all, fields(action = request.get_ref().action))]
    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        self.callers.admit(&request, EDGE)?;
        Ok(Response::new(AuthzGrpc::decide(self, request.get_ref())?))
    }

    #[tracing::instrument(skip_all, fields(queries = request.get_ref().queries.len()))]
    async fn decide_batch(
        &self,
        request: Request<pb::DecideBatchRequest>,
    ) -> Result<Response<pb::DecideBatchResponse>, Status> {
        self.callers.admit(&request, EDGE)?;
        Ok(Response::new(AuthzGrpc::decide_batch(
            self,
            request.get_ref(),
        )?))
    }

    async fn watch_policy(
        &self,
        request: Request<pb::WatchPolicyRequest>,
    ) -> Result<Response<Self::WatchPolicyStream>, Status> {
        self.callers.admit(&request, EDGE)?;
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(
            self.clone()
                .watch_loop(request.get_ref().known_version, sender),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        self.callers.admit(&request, EDGE)?;
        let cursor = convert::cursor(&request.get_ref().cursor)?;
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(self.clone().revocations_loop(cursor, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    #[tracing::instrument(skip_all, fields(connector = %request.get_ref().connector))]
    async fn exchange_token(
        &self,
        request: Request<pb::ExchangeTokenRequest>,
    ) -> Result<Response<pb::ExchangeTokenResponse>, Status> {
        self.callers.admit(&request, EDGE)?;
        Ok(Response::new(self.exchange(request.get_ref()).await?))
    }

    #[tracing::instrument(skip_all, fields(connector = %request.get_ref().connector))]
    async fn issue_catalogue_token(
        &self,
        request: Request<pb::IssueCatalogueTokenRequest>,
    ) -> Result<Response<pb::ExchangeTokenResponse>, Status> {
        self.callers.admit(&request, EDGE)?;
        Ok(Response::new(self.catalogue_token(request.get_ref())?))
    }
}
