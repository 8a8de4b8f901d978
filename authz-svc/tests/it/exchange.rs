//! RFC 8693 token exchange by agent bundles: `act` names the agent (nested, bounded),
//! the target is in the agent's allow-list, scopes only narrow, and every refusal is
//! spec-shaped and issues nothing.

use authz_svc::{AgentAuthentication, AgentRecord};
use serde_json::{Value, json};

use crate::agents::{agent_token, claims, new_agent, secret_agent};
use crate::harness::{Harness, OTHER_RESOURCE, RESOURCE, VERIFIER, oauth_error};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Is a refused exchange: the case, its parameters, the status and the OAuth error.
type Refusal<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

/// Returns a member's access token for `RESOURCE` (scope `tools`).
async fn member_token(harness: &Harness) -> String {
    let client = harness.public_client().await;
    let code = harness.code_for(&client).await;
    let body: Value = harness
        .redeem(&client, &code, VERIFIER)
        .await
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// Creates an agent serving both virtual servers.
async fn delegate(harness: &Harness, name: &str) -> (AgentRecord, String) {
    let mut agent = new_agent(name, AgentAuthentication::ClientSecret);
    agent.virtual_servers = vec!["demo".to_owned(), "other".to_owned()];
    secret_agent(harness, agent).await
}

async fn exchange(
    harness: &Harness,
    agent: &(AgentRecord, String),
    params: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![("grant_type", EXCHANGE)];
    form.extend_from_slice(params);
    harness
        .post_form("/token", &form, Some((&agent.0.client_id, &agent.1)))
        .await
}

#[tokio::test]
async fn exchanged_token_keeps_the_member_and_names_the_agent_in_act() {
    let harness = Harness::start().await;
    let subject = member_token(&harness).await;
    let agent = delegate(&harness, "assistant").await;
    let own: Value = agent_token(&harness, &agent.0, &agent.1, &[("resource", RESOURCE)])
        .await
        .json()
        .await
        .unwrap();
    let actor = own["access_token"].as_str().unwrap();
    let response = exchange(
        &harness,
        &agent,
        &[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS),
            ("actor_token", actor),
            ("actor_token_type", ACCESS),
            ("resource", OTHER_RESOURCE),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["issued_token_type"], ACCESS);
    assert_eq!(body["token_type"], "Bearer");
    let issued = claims(body["access_token"].as_str().unwrap());
    let original = claims(&subject);
    assert_eq!(issued["sub"], original["sub"]);
    assert_eq!(issued["aud"], OTHER_RESOURCE);
    assert_eq!(issued["client_id"], agent.0.client_id.as_str());
    assert_eq!(
        issued["act"],
        json!({ "sub": agent.0.agent_id, "client_id": agent.0.client_id })
    );
    assert_eq!(
        issued["sid"], original["sid"],
        "revoking the member's grant revokes it"
    );
    assert!(issued["exp"].as_i64() <= original["exp"].as_i64());
}

#[tokio::test]
async fn delegation_chains_nest_and_stop_at_four_actors() {
    let harness = Harness::start().await;
    let mut token = member_token(&harness).await;
    let agents = [
        delegate(&harness, "one").await,
        delegate(&harness, "two").await,
        delegate(&harness, "three").await,
        delegate(&harness, "four").await,
        delegate(&harness, "five").await,
    ];
    for (hop, agent) in agents.iter().enumerate() {
        let target = if hop % 2 == 0 {
            OTHER_RESOURCE
        } else {
            RESOURCE
        };
        let params = [
            ("subject_token", token.as_str()),
            ("subject_token_type", ACCESS),
            ("resource", target),
        ];
        let response = exchange(&harness, agent, &params).await;
        if hop == 4 {
            oauth_error(response, 400, "invalid_request").await;
            return;
        }
        let body: Value = response.json().await.unwrap();
        token = body["access_token"].as_str().unwrap().to_owned();
        let act = &claims(&token)["act"];
        assert_eq!(act["sub"], agent.0.agent_id.as_str());
        if hop > 0 {
            assert_eq!(
                act["act"]["sub"],
                agents[hop - 1].0.agent_id.as_str(),
                "the earlier actor is nested"
            );
        }
    }
    panic!("the fifth actor was not refused");
}

#[tokio::test]
async fn every_must_of_token_exchange_is_enforced() {
    let harness = Harness::start().await;
    let subject = member_token(&harness).await;
    let agent = delegate(&harness, "assistant").await;
    let demo_only = secret_agent(&harness, {
        let mut narrow = new_agent("narrow", AgentAuthentication::ClientSecret);
        narrow.virtual_servers = vec!["other".to_owned()];
        narrow
    })
    .await;
    let stranger = delegate(&harness, "stranger").await;
    let theirs: Value = agent_token(
        &harness,
        &stranger.0,
        &stranger.1,
        &[("resource", RESOURCE)],
    )
    .await
    .json()
    .await
    .unwrap();
    let theirs = theirs["access_token"].as_str().unwrap();
    let base = [
        ("subject_token", subject.as_str()),
        ("subject_token_type", ACCESS),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut params: Vec<(&str, &str)> = base.to_vec();
        params.extend_from_slice(extra);
        params
    };
    let cases: Vec<Refusal<'_>> = vec![
        (
            "no subject token",
            vec![("subject_token_type", ACCESS)],
            400,
            "invalid_request",
        ),
        (
            "no subject token type",
            vec![("subject_token", subject.as_str())],
            400,
            "invalid_request",
        ),
        (
            "unsupported subject type",
            vec![
                ("subject_token", subject.as_str()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:saml2",
                ),
            ],
            400,
            "invalid_request",
        ),
        (
            "forged subject",
            vec![
                ("subject_token", "e30.e30.sig"),
                ("subject_token_type", ACCESS),
            ],
            400,
            "invalid_grant",
        ),
        (
            "target outside the allow-list",
            with(&[("resource", "https://elsewhere.example/mcp")]),
            400,
            "invalid_target",
        ),
        (
            "wider scope",
            with(&[("resource", OTHER_RESOURCE), ("scope", "tools admin")]),
            400,
            "invalid_scope",
        ),
        (
            "actor token without type",
            with(&[("actor_token", "x")]),
            400,
            "invalid_request",
        ),
        (
            "unsupported requested type",
            with(&[(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            )]),
            400,
            "invalid_request",
        ),
    ];
    for (case, params, status, error) in cases {
        let body = oauth_error(exchange(&harness, &agent, &params).await, status, error).await;
        assert!(
            !body.to_string().contains(&subject),
            "{case}: the subject token is echoed"
        );
    }
    let someone_elses_actor = exchange(&harness, &agent, &{
        let mut params = base.to_vec();
        params.extend([("actor_token", theirs), ("actor_token_type", ACCESS)]);
        params
    })
    .await;
    oauth_error(someone_elses_actor, 400, "invalid_grant").await;
    // The member's token is for `demo`, which the narrow agent does not serve.
    oauth_error(
        exchange(&harness, &demo_only, &base).await,
        400,
        "invalid_grant",
    )
    .await;
    let wrong_secret = harness
        .post_form(
            "/token",
            &with(&[("grant_type", EXCHANGE)]),
            Some((&agent.0.client_id, "wrong")),
        )
        .await;
    oauth_error(wrong_secret, 401, "invalid_client").await;
    // Registered clients have no audience allow-list: exchange is for agent bundles.
    let (client, secret) = harness.confidential_client("client_secret_basic").await;
    let registered = harness
        .post_form(
            "/token",
            &with(&[("grant_type", EXCHANGE)]),
            Some((&client, &secret)),
        )
        .await;
    oauth_error(registered, 400, "unauthorized_client").await;
    let fine = exchange(&harness, &agent, &with(&[("resource", OTHER_RESOURCE)])).await;
    assert_eq!(fine.status(), 200, "no refusal spent or changed anything");
}
