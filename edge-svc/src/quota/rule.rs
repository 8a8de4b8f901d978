//! The `rate_limits:` section: rules, which calls each one meters, and its bucket per caller.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

/// The gateway's rate limits: where buckets live and the rules that fill them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsSpec {
    /// The bucket store; omitted means this process (exact only with one edge replica).
    #[serde(default)]
    pub backend: limits::BackendConfig,
    /// What a call gets when the store fails: `allow` (the default) or `refuse`.
    #[serde(default)]
    pub on_backend_error: limits::FailureMode,
    /// Every rule whose filters match a call charges that call to its bucket.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// One rule as written: whom it meters, which calls, and how fast.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique name; part of every bucket key, so renaming a rule starts fresh buckets.
    pub name: String,
    /// What gets its own bucket: one dimension or a list (`[member, tool]`: per member per tool).
    pub per: Per,
    /// Meters only calls to this virtual server.
    #[serde(default)]
    pub virtual_server: Option<String>,
    /// Meters only `tools/call` of exposed tool names matching this glob.
    #[serde(default)]
    pub tool: Option<String>,
    /// Meters only anonymous or only authenticated callers; all by default.
    #[serde(default)]
    pub callers: Callers,
    /// The sustained rate, `n/second|minute|hour|day`.
    pub rate: limits::Rate,
    /// Calls allowed at once after a quiet spell; defaults to 1 (strict pacing).
    #[serde(default = "one")]
    pub burst: u32,
}

/// Which callers a rule meters, so anonymous traffic can be paced per address while callers
/// with a token are paced by who they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Callers {
    /// Every caller.
    #[default]
    Any,
    /// Only calls without a token (a virtual server with `auth: none`).
    Anonymous,
    /// Only calls with a token.
    Authenticated,
}

/// The dimensions a rule keys its buckets by; empty means one global bucket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PerText")]
pub struct Per(Vec<Dimension>);

/// One thing a bucket can be per.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dimension {
    /// The member (human) calling or acted for; the rule skips calls without one.
    Member,
    /// The agent bundle calling, itself or for a member; skips calls without one.
    Agent,
    /// The OAuth client holding the token; skips anonymous calls.
    Client,
    /// One budget shared by the members of this group; skips callers outside it.
    Group(String),
    /// The tool, prompt or resource called.
    Tool,
    /// The virtual server called.
    VirtualServer,
    /// The caller's IP address as edge's listener saw it (an IPv6 caller by its /64, the
    /// smallest block one subscriber is usually given); behind a load balancer, that
    /// balancer's address unless it preserves the client address (PROXY protocol, DSR).
    SourceIp,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PerText {
    One(String),
    Many(Vec<String>),
}

/// A compiled rule, ready to match calls.
#[derive(Debug)]
pub(super) struct Rule {
    name: String,
    /// The rule class named to a refused client: its `per`, e.g. `member+tool`.
    pub(super) class: String,
    per: Vec<Dimension>,
    virtual_server: Option<String>,
    tool: Option<GlobMatcher>,
    callers: Callers,
    pub(super) quota: limits::Quota,
}

/// What a call is charged for: its virtual server and item.
#[derive(Debug, Clone, Copy)]
pub struct Charge<'a> {
    /// The virtual server called.
    pub virtual_server: &'a str,
    /// The item called.
    pub item: Item<'a>,
}

/// The item of a metered call, by its exposed name.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    /// `tools/call` of this tool.
    Tool(&'a str),
    /// `prompts/get` of this prompt.
    Prompt(&'a str),
    /// `resources/read` of this URI.
    Resource(&'a str),
}

/// Who a call is charged to, as the token says.
#[derive(Debug, Default)]
pub(super) struct Payer {
    pub(super) member: Option<String>,
    pub(super) agent: Option<String>,
    /// The agent bundle's own budget, when the caller is that bundle and its token carries one.
    pub(super) bundle_quota: Option<limits::Quota>,
    pub(super) client: Option<String>,
    pub(super) groups: Vec<String>,
    /// The address the call came from; `None` only where no listener recorded one.
    pub(super) source_ip: Option<IpAddr>,
}

impl Payer {
    /// Returns the bucket and quota of the calling bundle's own budget; its key starts with
    /// `|`, which no rule's (escaped) name can, so it never shares a bucket with a rule.
    pub(super) fn bundle_budget(&self) -> Option<(String, limits::Quota)> {
        let quota = self.bundle_quota?;
        let agent = self.agent.as_deref()?;
        Some((format!("|agent-quota={}", escape(agent)), quota))
    }
}

impl<'a> Charge<'a> {
    /// Returns the charge for `tools/call` of `tool` on `virtual_server`.
    pub fn tool(virtual_server: &'a str, tool: &'a str) -> Self {
        Self {
            virtual_server,
            item: Item::Tool(tool),
        }
    }

    /// Returns the charge for `prompts/get` of `prompt` on `virtual_server`.
    pub fn prompt(virtual_server: &'a str, prompt: &'a str) -> Self {
        Self {
            virtual_server,
            item: Item::Prompt(prompt),
        }
    }

    /// Returns the charge for `resources/read` of `uri` on `virtual_server`.
    pub fn resource(virtual_server: &'a str, uri: &'a str) -> Self {
        Self {
            virtual_server,
            item: Item::Resource(uri),
        }
    }
}

fn one() -> u32 {
    1
}

impl TryFrom<PerText> for Per {
    type Error = String;

    fn try_from(text: PerText) -> Result<Self, Self::Error> {
        let names = match text {
            PerText::One(name) => vec![name],
            PerText::Many(names) => names,
        };
        let mut dimensions = Vec::new();
        for name in &names {
            let dimension = match name.as_str() {
                "global" if names.len() == 1 => continue,
                "member" => Dimension::Member,
                "agent" => Dimension::Agent,
                "client" => Dimension::Client,
                "tool" => Dimension::Tool,
                "virtual_server" => Dimension::VirtualServer,
                "source_ip" => Dimension::SourceIp,
                group => match group.strip_prefix("group:") {
                    Some(group) if !group.is_empty() => Dimension::Group(group.to_owned()),
                    _ => {
                        return Err(format!(
                            "unknown `per` value `{name}`: use member, agent, client, group:<name>, tool, virtual_server, source_ip, or global alone"
                        ));
                    }
                },
            };
            dimensions.push(dimension);
        }
        Ok(Self(dimensions))
    }
}

impl RateLimitsSpec {
    /// Checks names, references and globs; errors name the field path.
    pub(crate) fn validate(&self, servers: &BTreeSet<&str>) -> Result<(), (String, String)> {
        let mut names = BTreeSet::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let path = format!("rate_limits.rules[{index}]");
            if !names.insert(rule.name.as_str()) {
                return Err((
                    format!("{path}.name"),
                    format!("duplicate rule `{}`", rule.name),
                ));
            }
            if let Some(server) = &rule.virtual_server
                && !servers.contains(server.as_str())
            {
                return Err((
                    format!("{path}.virtual_server"),
                    format!("unknown virtual server `{server}`"),
                ));
            }
            Rule::try_from(rule).map_err(|(field, reason)| (format!("{path}.{field}"), reason))?;
        }
        Ok(())
    }
}

impl TryFrom<&RuleSpec> for Rule {
    type Error = (&'static str, String);

    fn try_from(spec: &RuleSpec) -> Result<Self, Self::Error> {
        if spec.name.is_empty() {
            return Err(("name", "must not be empty".to_owned()));
        }
        let quota = limits::Quota::new(spec.rate, spec.burst)
            .ok_or(("burst", "must be at least 1".to_owned()))?;
        let tool = spec
            .tool
            .as_deref()
            .map(|glob| {
                Glob::new(glob)
                    .map(|glob| glob.compile_matcher())
                    .map_err(|error| ("tool", format!("invalid glob `{glob}`: {error}")))
            })
            .transpose()?;
        let class = if spec.per.0.is_empty() {
            "global".to_owned()
        } else {
            spec.per
                .0
                .iter()
                .map(Dimension::name)
                .collect::<Vec<_>>()
                .join("+")
        };
        Ok(Self {
            name: spec.name.clone(),
            class,
            per: spec.per.0.clone(),
            virtual_server: spec.virtual_server.clone(),
            tool,
            callers: spec.callers,
            quota,
        })
    }
}

impl Dimension {
    fn name(&self) -> &str {
        match self {
            Self::Member => "member",
            Self::Agent => "agent",
            Self::Client => "client",
            Self::Group(_) => "group",
            Self::Tool => "tool",
            Self::VirtualServer => "virtual_server",
            Self::SourceIp => "source_ip",
        }
    }
}

impl Rule {
    /// Returns the key of the bucket `charge` by `payer` falls in, or `None` when the rule
    /// does not meter this call (a filter misses, or the caller lacks a keyed identity).
    pub(super) fn bucket(&self, charge: &Charge<'_>, payer: &Payer) -> Option<String> {
        if self
            .virtual_server
            .as_deref()
            .is_some_and(|server| server != charge.virtual_server)
        {
            return None;
        }
        let anonymous = payer.client.is_none();
        match self.callers {
            Callers::Anonymous if !anonymous => return None,
            Callers::Authenticated if anonymous => return None,
            Callers::Any | Callers::Anonymous | Callers::Authenticated => {}
        }
        let source_block = payer.source_ip.map(address_block);
        if let Some(glob) = &self.tool {
            let Item::Tool(name) = charge.item else {
                return None;
            };
            if !glob.is_match(name) {
                return None;
            }
        }
        let mut key = escape(&self.name);
        for dimension in &self.per {
            let value = match dimension {
                Dimension::Member => payer.member.as_deref()?,
                Dimension::Agent => payer.agent.as_deref()?,
                Dimension::Client => payer.client.as_deref()?,
                Dimension::Group(group) => payer
                    .groups
                    .iter()
                    .find(|held| *held == group)
                    .map(String::as_str)?,
                Dimension::Tool => match charge.item {
                    Item::Tool(name) | Item::Prompt(name) | Item::Resource(name) => name,
                },
                Dimension::VirtualServer => charge.virtual_server,
                Dimension::SourceIp => source_block.as_deref()?,
            };
            let _ = write!(key, "|{}={}", dimension.name(), escape(value));
        }
        Some(key)
    }
}

/// Returns the block an address is metered as: itself for IPv4 (and IPv4-mapped IPv6), its /64
/// for IPv6, where one subscriber holds a whole /64 and could rotate through it.
fn address_block(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let segments = v6.segments();
                format!(
                    "{:x}:{:x}:{:x}:{:x}::/64",
                    segments[0], segments[1], segments[2], segments[3]
                )
            }
        },
    }
}

/// Escapes the key separators, so no identity can spell its way into another's bucket.
fn escape(text: &str) -> String {
    text.replace('%', "%25")
        .replace('|', "%7C")
        .replace('=', "%3D")
}
