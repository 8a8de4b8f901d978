//! Who is asking: a member, an agent, or an agent acting for a member.

/// Is the verified caller of one request, as policy sees it.
///
/// When both `member` and `agent` are set, the agent acts for the member (the token
/// carries `act`): the Cedar principal is the `Agent` with `acting_for` naming the
/// member, so that a policy can require both the agent's and the member's rights.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Principal {
    /// Is the human subject; `None` when an agent acts on its own behalf.
    pub member: Option<Member>,
    /// Is the agent bundle presenting the token; `None` for a human using an
    /// ordinary OAuth client.
    pub agent: Option<Agent>,
    /// Is the OAuth client holding the token.
    pub client_id: String,
    /// Is the RFC 8693 delegation chain, current actor first.
    pub act: Vec<Actor>,
    /// Is how the token was obtained.
    pub authentication_method: AuthenticationMethod,
}

/// Is a human user, with the groups and roles policies grant by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Member {
    /// Is Gatehouse's stable member id (the Cedar entity id).
    pub id: String,
    /// Is the identity provider's issuer.
    pub issuer: String,
    /// Is the `sub` the identity provider asserted.
    pub subject: String,
    /// Are the member's groups (Cedar parents `Group::"…"`).
    pub groups: Vec<String>,
    /// Are the member's roles (Cedar parents `Role::"…"`).
    pub roles: Vec<String>,
    /// Are the RFC 8176 `amr` values of the login.
    pub authentication_methods: Vec<String>,
}

/// Is an agent bundle: a non-human OAuth client with an accountable owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Agent {
    /// Is the agent's OAuth client id (the Cedar entity id).
    pub client_id: String,
    /// Is the bundle's stable id.
    pub bundle_id: String,
    /// Is the bundle's administrator-chosen name.
    pub bundle_name: String,
    /// Is the member accountable for the agent, when known.
    pub owner_member_id: Option<String>,
}

/// Is one link of a delegation chain (`act` claim).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Actor {
    /// Is the actor's `sub`.
    pub subject: String,
    /// Is the actor's client id, when the claim names one.
    pub client_id: Option<String>,
}

/// Says how the token of a request was obtained, for conditions such as "agents
/// using private_key_jwt only".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthenticationMethod {
    /// The method is unknown; policies should treat it as the weakest.
    #[default]
    Unspecified,
    /// A human completed the authorization-code flow with PKCE.
    AuthorizationCode,
    /// An agent used client credentials with a client secret.
    ClientSecret,
    /// An agent used a private_key_jwt assertion.
    PrivateKeyJwt,
    /// An agent used a trusted external workload token.
    WorkloadIdentity,
    /// The token came from an RFC 8693 token exchange.
    TokenExchange,
    /// The token came from an RFC 7523 jwt-bearer grant.
    JwtBearer,
    /// No authentication (a development virtual server with `auth: none`).
    None,
}

/// Holds the access-token claims edge-svc builds a [`Principal`] from.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenClaims<'a> {
    /// Is the token's issuer (`iss`).
    pub issuer: &'a str,
    /// Is the token's subject (`sub`): the member, or the client itself for
    /// client credentials.
    pub subject: &'a str,
    /// Is the token's `client_id`.
    pub client_id: &'a str,
    /// Is the token's `act` claim, when present.
    pub act: Option<&'a serde_json::Value>,
    /// Are the member's groups (from the token or the directory).
    pub groups: &'a [String],
    /// Are the member's roles.
    pub roles: &'a [String],
    /// Is how the token was obtained.
    pub authentication_method: AuthenticationMethod,
    /// Is the bundle a client-credentials token stands for, as the issuer's `agent` claim names it.
    pub bundle: Option<BundleClaims<'a>>,
}

/// Holds the issuer's account of an agent bundle (its `agent` claim), so that policies can
/// match the bundle and its owner without a lookup per call.
#[derive(Debug, Clone, Copy, Default)]
pub struct BundleClaims<'a> {
    /// Is the bundle's stable id.
    pub bundle_id: &'a str,
    /// Is the bundle's administrator-chosen name.
    pub bundle_name: &'a str,
    /// Is the member accountable for the bundle.
    pub owner_member_id: Option<&'a str>,
}

impl AuthenticationMethod {
    /// Returns the method named `name` as [`Self::as_str`] spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Unspecified,
            Self::AuthorizationCode,
            Self::ClientSecret,
            Self::PrivateKeyJwt,
            Self::WorkloadIdentity,
            Self::TokenExchange,
            Self::JwtBearer,
            Self::None,
        ]
        .into_iter()
        .find(|method| method.as_str() == name)
    }

    /// Returns the name policies compare `context.authentication_method` with.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::AuthorizationCode => "authorization_code",
            Self::ClientSecret => "client_secret",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::WorkloadIdentity => "workload_identity",
            Self::TokenExchange => "token_exchange",
            Self::JwtBearer => "jwt_bearer",
            Self::None => "none",
        }
    }
}

impl Principal {
    /// Returns the principal an access token represents.
    ///
    /// `sub == client_id` is a client-credentials token: the agent on its own.
    /// Otherwise `sub` is a member; with an `act` claim the current actor (its
    /// `client_id`, else its `sub`) is an agent acting for that member.
    pub fn from_claims(claims: &TokenClaims<'_>) -> Self {
        let act = claims.act.map(actors).unwrap_or_default();
        let member = (claims.subject != claims.client_id).then(|| Member {
            id: claims.subject.to_owned(),
            issuer: claims.issuer.to_owned(),
            subject: claims.subject.to_owned(),
            groups: claims.groups.to_vec(),
            roles: claims.roles.to_vec(),
            authentication_methods: Vec::new(),
        });
        let agent_id = match (&member, act.first()) {
            (None, _) => Some(claims.client_id.to_owned()),
            (Some(_), Some(actor)) => Some(
                actor
                    .client_id
                    .clone()
                    .unwrap_or_else(|| actor.subject.clone()),
            ),
            (Some(_), None) => None,
        };
        // The issuer's `agent` claim describes the token's own agent only, never an actor.
        let bundle = claims
            .bundle
            .filter(|_| member.is_none())
            .unwrap_or_default();
        Self {
            member,
            agent: agent_id.map(|client_id| Agent {
                client_id,
                bundle_id: bundle.bundle_id.to_owned(),
                bundle_name: bundle.bundle_name.to_owned(),
                owner_member_id: bundle.owner_member_id.map(str::to_owned),
            }),
            client_id: claims.client_id.to_owned(),
            act,
            authentication_method: claims.authentication_method,
        }
    }

    /// Returns a member using an ordinary client.
    pub fn member(member: Member) -> Self {
        Self {
            member: Some(member),
            ..Self::default()
        }
    }

    /// Returns an agent acting on its own behalf.
    pub fn agent(agent: Agent) -> Self {
        Self {
            client_id: agent.client_id.clone(),
            agent: Some(agent),
            ..Self::default()
        }
    }

    /// Returns an agent acting for `member`, with the matching one-link `act` chain.
    pub fn agent_for(agent: Agent, member: Member) -> Self {
        Self {
            client_id: agent.client_id.clone(),
            act: vec![Actor {
                subject: agent.client_id.clone(),
                client_id: Some(agent.client_id.clone()),
            }],
            agent: Some(agent),
            member: Some(member),
            authentication_method: AuthenticationMethod::TokenExchange,
        }
    }
}

impl Member {
    /// Returns a member with this id (also its subject) and these groups and roles.
    pub fn new(id: &str, groups: &[&str], roles: &[&str]) -> Self {
        Self {
            id: id.to_owned(),
            subject: id.to_owned(),
            groups: groups.iter().map(|&group| group.to_owned()).collect(),
            roles: roles.iter().map(|&role| role.to_owned()).collect(),
            ..Self::default()
        }
    }
}

impl Agent {
    /// Returns an agent with this client id and owner.
    pub fn new(client_id: &str, owner_member_id: Option<&str>) -> Self {
        Self {
            client_id: client_id.to_owned(),
            bundle_id: client_id.to_owned(),
            bundle_name: client_id.to_owned(),
            owner_member_id: owner_member_id.map(str::to_owned),
        }
    }
}

// RFC 8693 nests the chain: {"sub": A, "act": {"sub": B}} means A acts for someone
// via B before it. Depth is capped so a hostile claim cannot cost much.
fn actors(act: &serde_json::Value) -> Vec<Actor> {
    let mut chain = Vec::new();
    let mut current = Some(act);
    while let Some(value) = current.filter(|_| chain.len() < 16) {
        let Some(object) = value.as_object() else {
            break;
        };
        chain.push(Actor {
            subject: object
                .get("sub")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            client_id: object
                .get("client_id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
        });
        current = object.get("act");
    }
    chain
}
