//! The data-plane gRPC API over a real tonic channel: caller roles, ValidateToken's
//! verdicts, the resumable revocation feed, and token exchange for connectors.

use std::sync::Arc;
use std::time::Duration;

use authz_svc::{AgentAuthentication, AgentKey, AuthzState, ExchangeTarget};
use proto::authz::v1 as pb;
use proto::authz::v1::agent_admin_client::AgentAdminClient;
use proto::authz::v1::authz_client::AuthzClient;
use proto::common::v1::Secret;
use serde_json::Value;
use svc_kit::callers::SecretSetting;
use tonic::Code;

use crate::agents::{agent_token, claims, new_agent, secret_agent};
use crate::harness::{
    AuditCapture, Caller, Harness, OTHER_RESOURCE, RESOURCE, admin_token, caller, edge_token,
    serve_grpc, test_config,
};

const CONNECTOR_AUDIENCE: &str = "https://crm.example/api";

async fn token_for(harness: &Harness, name: &str, servers: &[&str]) -> (String, String) {
    let mut agent = new_agent(name, AgentAuthentication::ClientSecret);
    agent.virtual_servers = servers.iter().map(|server| (*server).to_owned()).collect();
    let (agent, secret) = secret_agent(harness, agent).await;
    let resource = if servers[0] == "demo" {
        RESOURCE
    } else {
        OTHER_RESOURCE
    };
    let body: Value = agent_token(harness, &agent, &secret, &[("resource", resource)])
        .await
        .json()
        .await
        .unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        agent.client_id,
    )
}

fn validate(token: &str, resource: &str) -> pb::ValidateTokenRequest {
    pb::ValidateTokenRequest {
        token: Some(Secret {
            value: token.to_owned(),
        }),
        resource: resource.to_owned(),
        metadata: None,
    }
}

async fn verdict(
    client: &mut AuthzClient<Caller>,
    token: &str,
    resource: &str,
) -> pb::ValidateTokenResponse {
    client
        .validate_token(validate(token, resource))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn callers_are_told_apart_by_service_token_and_role() {
    let harness = Harness::start().await;
    let server = serve_grpc(harness.state.clone()).await;
    let stranger = SecretSetting::from("x".repeat(40));
    for token in [None, Some(&stranger)] {
        let status = AuthzClient::new(caller(&server, token))
            .validate_token(validate("t", RESOURCE))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let status = AuthzClient::new(caller(&server, Some(&admin_token())))
        .validate_token(validate("t", RESOURCE))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = AgentAdminClient::new(caller(&server, Some(&edge_token())))
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = AuthzClient::new(caller(&server, Some(&edge_token())))
        .validate_token(validate("", RESOURCE))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn validate_token_reports_active_claims_and_why_others_are_inactive() {
    let harness = Harness::start().await;
    let server = serve_grpc(harness.state.clone()).await;
    let mut client = AuthzClient::new(caller(&server, Some(&edge_token())));
    let (token, client_id) = token_for(&harness, "validated", &["demo"]).await;

    let active = verdict(&mut client, &token, RESOURCE).await;
    assert!(active.active);
    assert_eq!(active.audiences, [RESOURCE]);
    assert_eq!(active.scopes, ["tools"]);
    assert_eq!(active.jti, claims(&token)["jti"].as_str().unwrap());
    let agent = active.principal.unwrap().agent.unwrap();
    assert_eq!(agent.client_id, client_id);
    assert_eq!(agent.bundle_name, "validated");

    let mut forged = token.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let cases = [
        (
            token.as_str(),
            OTHER_RESOURCE,
            pb::InactiveReason::WrongAudience,
        ),
        ("not-a-jwt", RESOURCE, pb::InactiveReason::Malformed),
        (forged.as_str(), RESOURCE, pb::InactiveReason::BadSignature),
    ];
    for (presented, resource, reason) in cases {
        let inactive = verdict(&mut client, presented, resource).await;
        assert_eq!(
            inactive,
            pb::ValidateTokenResponse {
                inactive_reason: reason.into(),
                ..Default::default()
            },
            "nothing of an inactive token is echoed"
        );
    }
    harness
        .state
        .agents()
        .decommission(AgentKey::ClientId(&client_id), "test")
        .await
        .unwrap();
    let revoked = verdict(&mut client, &token, RESOURCE).await;
    assert_eq!(revoked.inactive_reason(), pb::InactiveReason::Revoked);
    server.stop().await.unwrap();
}

async fn next(
    stream: &mut tonic::Streaming<pb::WatchRevocationsResponse>,
) -> pb::WatchRevocationsResponse {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a revocation message within 5 s")
        .unwrap()
        .unwrap()
}

fn agents_in(message: &pb::WatchRevocationsResponse) -> Vec<String> {
    message
        .revocations
        .iter()
        .filter_map(|revocation| match &revocation.subject {
            Some(pb::revocation::Subject::AgentClientId(id)) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn watch_revocations_streams_the_log_and_resumes_from_a_cursor() {
    let harness = Harness::start().await;
    let server = serve_grpc(harness.state.clone()).await;
    let mut client = AuthzClient::new(caller(&server, Some(&edge_token())));
    let decommission = |name: &'static str| {
        let state = harness.state.clone();
        async move {
            let agent = state
                .agents()
                .create(new_agent(name, AgentAuthentication::ClientSecret))
                .await
                .unwrap()
                .agent;
            state
                .agents()
                .decommission(AgentKey::Id(&agent.agent_id), "gone")
                .await
                .unwrap();
            agent.client_id
        }
    };
    let first = decommission("first").await;
    let mut stream = client
        .watch_revocations(pb::WatchRevocationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let snapshot = next(&mut stream).await;
    assert!(snapshot.replaces_all);
    assert_eq!(agents_in(&snapshot), [first]);
    let second = decommission("second").await;
    let update = next(&mut stream).await;
    assert!(!update.replaces_all);
    assert_eq!(agents_in(&update), [second]);
    assert_eq!(
        update.revocations[0].reason(),
        pb::RevocationReason::AgentDecommissioned
    );
    drop(stream);

    let third = decommission("third").await;
    let mut resumed = client
        .watch_revocations(pb::WatchRevocationsRequest {
            cursor: update.cursor.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let missed = next(&mut resumed).await;
    assert!(!missed.replaces_all);
    assert_eq!(
        agents_in(&missed),
        [third],
        "only what came after the cursor"
    );

    let mut unknown = client
        .watch_revocations(pb::WatchRevocationsRequest {
            cursor: "999999".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let replaced = next(&mut unknown).await;
    assert!(replaced.replaces_all);
    assert_eq!(agents_in(&replaced).len(), 3);

    let status = client
        .watch_revocations(pb::WatchRevocationsRequest {
            cursor: "not-a-cursor".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    drop((resumed, unknown));
    server.stop().await.unwrap();
}

fn exchange(
    token: &str,
    connector: &str,
    audience: &str,
    scopes: &[&str],
) -> pb::ExchangeTokenRequest {
    pb::ExchangeTokenRequest {
        subject_token: Some(Secret {
            value: token.to_owned(),
        }),
        connector: connector.to_owned(),
        audience: audience.to_owned(),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        metadata: None,
    }
}

async fn exchange_harness() -> (Harness, AuthzState, Arc<AuditCapture>) {
    let mut config = test_config();
    config.token_exchange = vec![ExchangeTarget {
        connector: "crm-api".to_owned(),
        audience: CONNECTOR_AUDIENCE.to_owned(),
        virtual_servers: vec!["demo".to_owned()],
        scopes: vec!["tools".to_owned(), "admin".to_owned()],
    }];
    let harness = Harness::with_config(config).await;
    let audit = Arc::new(AuditCapture::default());
    let state = harness.state.clone().with_audit(audit.clone());
    (harness, state, audit)
}

#[tokio::test]
async fn exchange_token_mints_an_audited_connector_token_within_the_subject_scopes() {
    let (harness, state, audit) = exchange_harness().await;
    let server = serve_grpc(state).await;
    let mut client = AuthzClient::new(caller(&server, Some(&edge_token())));
    let (token, client_id) = token_for(&harness, "exchanger", &["demo"]).await;

    let exchanged = client
        .exchange_token(exchange(&token, "crm-api", CONNECTOR_AUDIENCE, &[]))
        .await
        .unwrap()
        .into_inner();
    let issued = exchanged.access_token.unwrap().value;
    let issued_claims = claims(&issued);
    let subject_claims = claims(&token);
    assert_eq!(issued_claims["aud"], CONNECTOR_AUDIENCE);
    assert_eq!(issued_claims["sub"], subject_claims["sub"]);
    assert_eq!(issued_claims["client_id"], client_id.as_str());
    assert_eq!(
        issued_claims["scope"], "tools",
        "the subject holds only tools"
    );
    assert!(issued_claims["exp"].as_i64() <= subject_claims["exp"].as_i64());
    assert_eq!(exchanged.jti, issued_claims["jti"].as_str().unwrap());
    assert_eq!(
        exchanged.issued_token_type,
        authz_svc::ACCESS_TOKEN_TYPE_URI
    );
    let events = audit.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].kind(),
        proto::audit::v1::EventKind::TokenExchanged
    );
    let recorded = format!("{events:?}");
    assert!(!recorded.contains(&issued) && !recorded.contains(&token));

    let refusals = [
        (exchange(&token, "unknown", "", &[]), Code::NotFound),
        (
            exchange(&token, "crm-api", "https://evil.example", &[]),
            Code::PermissionDenied,
        ),
        (
            exchange(&token, "crm-api", "", &["admin"]),
            Code::PermissionDenied,
        ),
        (
            exchange("not-a-token", "crm-api", "", &[]),
            Code::Unauthenticated,
        ),
        (exchange(&token, "", "", &[]), Code::InvalidArgument),
    ];
    for (request, code) in refusals {
        let status = client.exchange_token(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(!status.message().contains(&token));
    }
    let (other, _) = token_for(&harness, "elsewhere", &["other"]).await;
    let status = client
        .exchange_token(exchange(&other, "crm-api", "", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::NotFound,
        "the connector is not reachable from other"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_catalogue_token_names_the_gateway_itself_with_no_scopes_for_exchange_connectors_only() {
    let (_harness, state, audit) = exchange_harness().await;
    let server = serve_grpc(state).await;
    let mut client = AuthzClient::new(caller(&server, Some(&edge_token())));
    let request = |connector: &str| pb::IssueCatalogueTokenRequest {
        connector: connector.to_owned(),
        metadata: None,
    };

    let issued = client
        .issue_catalogue_token(request("crm-api"))
        .await
        .unwrap()
        .into_inner();
    let token = issued.access_token.unwrap().value;
    let token_claims = claims(&token);
    assert_eq!(token_claims["aud"], CONNECTOR_AUDIENCE);
    assert_eq!(token_claims["sub"], "gatehouse-edge");
    assert_eq!(token_claims["client_id"], "gatehouse-edge");
    assert!(
        token_claims
            .get("act")
            .is_none_or(serde_json::Value::is_null)
    );
    assert!(
        issued.scopes.is_empty(),
        "a catalogue token grants no scope"
    );
    let recorded = format!("{:?}", audit.0.lock().unwrap());
    assert!(recorded.contains("gatehouse-edge") && !recorded.contains(&token));

    for (connector, code) in [("unknown", Code::NotFound), ("", Code::InvalidArgument)] {
        let status = client
            .issue_catalogue_token(request(connector))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
    }
    let mut stranger = AuthzClient::new(caller(&server, None));
    let status = stranger
        .issue_catalogue_token(request("crm-api"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    server.stop().await.unwrap();
}
