//! `AgentAdmin` over a real tonic channel: the bundle lifecycle behind the admin
//! token, secrets shown once and never audited, every change audited.

use std::sync::Arc;

use proto::audit::v1::{EventKind, audit_event};
use proto::authz::v1 as pb;
use proto::authz::v1::agent_admin_client::AgentAdminClient;
use proto::common::v1::PageRequest;
use serde_json::Value;
use tonic::Code;

use crate::harness::{AuditCapture, Harness, RESOURCE, admin_token, caller, serve_grpc};

fn create(name: &str, servers: &[&str]) -> pb::CreateAgentRequest {
    pb::CreateAgentRequest {
        name: name.to_owned(),
        description: "made over grpc".to_owned(),
        virtual_servers: servers.iter().map(|server| (*server).to_owned()).collect(),
        scopes: vec!["tools".to_owned()],
        ..Default::default()
    }
}

async fn client_credentials(harness: &Harness, client_id: &str, secret: &str) -> reqwest::Response {
    harness
        .post_form(
            "/token",
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
            Some((client_id, secret)),
        )
        .await
}

#[tokio::test]
async fn agent_lifecycle_over_grpc_returns_secrets_once_and_audits_every_change() {
    let harness = Harness::start().await;
    let audit = Arc::new(AuditCapture::default());
    let server = serve_grpc(harness.state.clone().with_audit(audit.clone())).await;
    let mut admin = AgentAdminClient::new(caller(&server, Some(&admin_token())));

    let created = admin
        .create_agent(create("grpc-agent", &["demo"]))
        .await
        .unwrap()
        .into_inner();
    let bundle = created.agent.unwrap();
    let first_secret = created.client_secret.unwrap().value;
    assert_eq!(bundle.state(), pb::AgentState::Active);
    assert_eq!(bundle.owner_member_id, "admin");
    assert_eq!(
        client_credentials(&harness, &bundle.client_id, &first_secret)
            .await
            .status(),
        200
    );

    let listed = admin
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.agents.len(), 1);
    assert_eq!(listed.page.unwrap().next_page_token, "");
    let fetched = admin
        .get_agent(pb::GetAgentRequest {
            key: Some(pb::get_agent_request::Key::ClientId(
                bundle.client_id.clone(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{fetched:?}").contains(&first_secret));

    let rotated = admin
        .rotate_agent_secret(pb::RotateAgentSecretRequest {
            bundle_id: bundle.bundle_id.clone(),
            overlap: Some(prost_types::Duration::default()),
        })
        .await
        .unwrap()
        .into_inner();
    let second_secret = rotated.client_secret.unwrap().value;
    assert_ne!(second_secret, first_secret);
    assert_eq!(
        client_credentials(&harness, &bundle.client_id, &first_secret)
            .await
            .status(),
        401
    );
    assert_eq!(
        client_credentials(&harness, &bundle.client_id, &second_secret)
            .await
            .status(),
        200
    );

    let gone = admin
        .decommission_agent(pb::DecommissionAgentRequest {
            bundle_id: bundle.bundle_id.clone(),
            reason: "retired".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.agent.unwrap().state(), pb::AgentState::Decommissioned);
    let refused: Value = client_credentials(&harness, &bundle.client_id, &second_secret)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refused["error"], "invalid_client");

    let events = audit.0.lock().unwrap().clone();
    let actions: Vec<String> = events
        .iter()
        .filter(|event| event.kind() == EventKind::AgentChanged)
        .filter_map(|event| match &event.details {
            Some(audit_event::Details::Admin(admin)) => Some(admin.action.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(actions, ["create", "rotate", "decommission"]);
    let recorded = format!("{events:?}");
    assert!(!recorded.contains(&first_secret) && !recorded.contains(&second_secret));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn agent_admin_errors_are_grpc_statuses() {
    let harness = Harness::start().await;
    let server = serve_grpc(harness.state.clone()).await;
    let mut admin = AgentAdminClient::new(caller(&server, Some(&admin_token())));
    admin
        .create_agent(create("taken", &["demo"]))
        .await
        .unwrap();
    let cases = [
        (
            admin
                .create_agent(create("taken", &["demo"]))
                .await
                .unwrap_err(),
            Code::AlreadyExists,
        ),
        (
            admin
                .create_agent(create("lost", &["nowhere"]))
                .await
                .unwrap_err(),
            Code::InvalidArgument,
        ),
        (
            admin
                .get_agent(pb::GetAgentRequest {
                    key: Some(pb::get_agent_request::Key::BundleId("missing".to_owned())),
                })
                .await
                .unwrap_err(),
            Code::NotFound,
        ),
        (
            admin
                .list_agents(pb::ListAgentsRequest {
                    page: Some(PageRequest {
                        page_size: 1,
                        page_token: "not-a-page".to_owned(),
                    }),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            Code::InvalidArgument,
        ),
        (
            AgentAdminClient::new(caller(&server, None))
                .list_agents(pb::ListAgentsRequest::default())
                .await
                .unwrap_err(),
            Code::Unauthenticated,
        ),
    ];
    for (status, code) in cases {
        assert_eq!(status.code(), code, "{status:?}");
    }
    server.stop().await.unwrap();
}
