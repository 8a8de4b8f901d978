//! The RFC 7523 `jwt-bearer` grant redeeming an Identity Assertion JWT Authorization Grant
//! (ID-JAG, the MCP enterprise-managed authorization extension): a configured enterprise IdP
//! signed, for the authenticated client, that its member may reach one of our resources.
//! The token is the member's, for that resource; each ID-JAG is redeemed once.

use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::token_response;
use crate::client::JWT_BEARER;
use crate::config::algorithms;
use crate::federation::{Expectation, LEEWAY, member_id, verify_jwt};
use crate::grant::scopes_within;
use crate::oauth::{OAuthError, Params};
use crate::state::AuthzState;
use crate::store::ClientRecord;
use crate::token::{TokenRequest, now};

/// Is the JOSE `typ` every ID-JAG carries.
const ID_JAG_TYPE: &str = "oauth-id-jag+jwt";
/// Bounds how long an ID-JAG may still live when presented: five minutes.
const MAX_LIFETIME: i64 = 300;

fn invalid_grant(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new("invalid_grant", description)
}

/// Issues the access token the presented ID-JAG grants.
pub(super) async fn jwt_bearer(
    state: &AuthzState,
    client: &ClientRecord,
    params: &Params,
) -> Result<Response, OAuthError> {
    let assertion = params.require("assertion", "assertion is required")?;
    let issuer = unverified_issuer(assertion)
        .ok_or_else(|| invalid_grant("the assertion is not a JWT with an issuer"))?;
    let idp = state
        .config
        .enterprise_idps
        .iter()
        .find(|idp| idp.issuer == issuer)
        .ok_or_else(|| invalid_grant("the assertion's issuer is not a trusted enterprise IdP"))?;
    let accepted = algorithms(&idp.algorithms, "enterprise_idps.algorithms")
        .map_err(|_| OAuthError::new("server_error", "internal error"))?;
    let claims = verify_jwt(
        &state.workload_keys,
        &idp.jwks_uri,
        assertion,
        &Expectation {
            issuer: &idp.issuer,
            audiences: &[state.issuer()],
            algorithms: &accepted,
            typ: Some(ID_JAG_TYPE),
            required: &["sub", "jti"],
        },
    )
    .await
    .map_err(|refusal| invalid_grant(format!("the ID-JAG was refused: {refusal}")))?;
    if text(&claims, "client_id") != Some(client.client_id.as_str()) {
        return Err(invalid_grant("the ID-JAG was issued to another client"));
    }
    let at = now();
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp.saturating_sub(at) > MAX_LIFETIME {
        return Err(invalid_grant("the ID-JAG lives longer than five minutes"));
    }
    let resource_url =
        text(&claims, "resource").ok_or_else(|| invalid_grant("the ID-JAG names no resource"))?;
    if params
        .get("resource")
        .is_some_and(|asked| asked != resource_url)
    {
        return Err(OAuthError::new(
            "invalid_target",
            "resource differs from the ID-JAG's",
        ));
    }
    let resource = state.issuer.resource(resource_url).ok_or_else(|| {
        OAuthError::new(
            "invalid_target",
            "the ID-JAG's resource is not a protected resource of this server",
        )
    })?;
    let granted = text(&claims, "scope");
    let requested = params.get("scope").or(granted);
    if let (Some(asked), Some(granted)) = (params.get("scope"), granted)
        && !scopes_within(asked, granted)
    {
        return Err(OAuthError::new(
            "invalid_scope",
            "the scope exceeds the ID-JAG's",
        ));
    }
    let scope = state
        .issuer
        .scope_for(&resource, requested)
        .ok_or_else(|| {
            OAuthError::new(
                "invalid_scope",
                "a requested scope is not offered by the resource",
            )
        })?;
    let (Some(subject), Some(jti)) = (text(&claims, "sub"), text(&claims, "jti")) else {
        return Err(invalid_grant("the ID-JAG has no sub or jti"));
    };
    let fresh = state
        .store
        .remember_assertion(
            &idp.issuer,
            jti,
            exp.saturating_add(i64::try_from(LEEWAY).unwrap_or(0)),
            at,
        )
        .await?;
    if !fresh {
        tracing::warn!(client_id = %client.client_id, issuer = %idp.issuer, "ID-JAG replayed");
        return Err(invalid_grant("the ID-JAG was redeemed before"));
    }
    // The member is keyed by (iss, sub), as a federated sign-in through the same IdP is.
    let member = member_id(&idp.issuer, subject);
    let groups = state.member_groups(&member).await?;
    let request = TokenRequest {
        subject: &member,
        audience: &resource.url,
        client_id: &client.client_id,
        scope: &scope,
        grant: None,
        ttl: state.config.access_token_ttl,
        not_after: None,
        groups: &groups,
        act: None,
        agent: None,
    };
    let mut principal = crate::events::member(&member, &client.client_id);
    principal.authentication_method = proto::common::v1::AuthenticationMethod::JwtBearer.into();
    token_response(state, &request, None, JWT_BEARER, principal)
}

/// Returns the non-empty string claim `name`.
fn text<'a>(claims: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
}

fn unverified_issuer(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}
