//! What is asked: an action of a principal on a target, in a context.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::principal::Principal;

/// Is an MCP action subject to policy (the Cedar `Action::"…"` ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Connects to a virtual server at all.
    Connect,
    /// Lists a virtual server's tools.
    ListTools,
    /// Calls one tool; asked without arguments to decide whether it is listed.
    CallTool,
    /// Reads one resource (also decides whether it is listed).
    ReadResource,
    /// Gets one prompt (also decides whether it is listed).
    GetPrompt,
}

/// Is what an action is performed on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Target {
    /// Is the virtual server's name.
    pub virtual_server: String,
    /// Is the connector's name, when the target belongs to one.
    pub connector: Option<String>,
    /// Is the tool, resource or prompt; `None` for virtual-server-level actions.
    pub item: Option<Item>,
}

/// Is the tool, resource or prompt an action targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Item {
    /// Is a tool.
    Tool(Tool),
    /// Is a resource, by the URI the virtual server exposes.
    Resource {
        /// Is the exposed URI.
        uri: String,
    },
    /// Is a prompt, by the name the virtual server exposes.
    Prompt {
        /// Is the exposed name.
        name: String,
    },
}

/// Is a tool as the virtual server exposes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Tool {
    /// Is the exposed name (after prefix and rename): the name policies and
    /// constraints use.
    pub name: String,
    /// Is the name at the connector.
    pub upstream_name: String,
    /// Are the tool's curated MCP annotations.
    pub annotations: Annotations,
}

/// Are MCP tool hints; `None` means the connector did not say, which policies must
/// not read as false (the Cedar attribute is then absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Annotations {
    /// Says the tool does not modify its environment.
    pub read_only: Option<bool>,
    /// Says the tool may perform destructive updates.
    pub destructive: Option<bool>,
    /// Says repeated calls have no further effect.
    pub idempotent: Option<bool>,
    /// Says the tool reaches an open world of external entities.
    pub open_world: Option<bool>,
}

/// Is the request-time context of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestContext {
    /// Are the call's arguments; `None` at list time (and for actions without any).
    pub arguments: Option<serde_json::Map<String, serde_json::Value>>,
    /// Is when the request was received (time windows).
    pub time: SystemTime,
    /// Is the client's address (source networks), when known.
    pub source_address: Option<IpAddr>,
}

/// Is one question for the evaluator.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Is the verified caller.
    pub principal: &'a Principal,
    /// Are the scopes the caller's token carries.
    pub scopes: &'a [String],
    /// Is what the caller wants to do.
    pub action: Action,
    /// Is what it wants to do it on.
    pub target: &'a Target,
    /// Is the request-time context.
    pub context: &'a RequestContext,
}

impl Action {
    /// Returns the Cedar action id.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::ListTools => "list_tools",
            Self::CallTool => "call_tool",
            Self::ReadResource => "read_resource",
            Self::GetPrompt => "get_prompt",
        }
    }

    /// Lists every action, in wire order.
    pub const ALL: [Self; 5] = [
        Self::Connect,
        Self::ListTools,
        Self::CallTool,
        Self::ReadResource,
        Self::GetPrompt,
    ];
}

impl Target {
    /// Returns the virtual server itself, for `connect` and `list_tools`.
    pub fn virtual_server(name: &str) -> Self {
        Self {
            virtual_server: name.to_owned(),
            ..Self::default()
        }
    }

    /// Returns one tool of a connector of a virtual server.
    pub fn tool(virtual_server: &str, connector: &str, tool: Tool) -> Self {
        Self {
            virtual_server: virtual_server.to_owned(),
            connector: Some(connector.to_owned()),
            item: Some(Item::Tool(tool)),
        }
    }

    /// Returns the tool, when the target is one.
    pub fn as_tool(&self) -> Option<&Tool> {
        match &self.item {
            Some(Item::Tool(tool)) => Some(tool),
            _ => None,
        }
    }
}

impl Tool {
    /// Returns a tool exposed under its upstream name, with these hints.
    pub fn new(name: &str, annotations: Annotations) -> Self {
        Self {
            name: name.to_owned(),
            upstream_name: name.to_owned(),
            annotations,
        }
    }
}

impl Annotations {
    /// Returns the hints of a tool that says it is read-only.
    pub fn read_only() -> Self {
        Self {
            read_only: Some(true),
            destructive: Some(false),
            ..Self::default()
        }
    }

    /// Returns the hints of a tool that says it writes, destructively or not.
    pub fn write(destructive: bool) -> Self {
        Self {
            read_only: Some(false),
            destructive: Some(destructive),
            ..Self::default()
        }
    }
}

impl RequestContext {
    /// Returns the context of a list-time decision (no arguments).
    pub fn listing(time: SystemTime, source_address: Option<IpAddr>) -> Self {
        Self {
            arguments: None,
            time,
            source_address,
        }
    }

    /// Returns the context of a call with `arguments` (a JSON object).
    pub fn call(
        arguments: serde_json::Map<String, serde_json::Value>,
        time: SystemTime,
        source_address: Option<IpAddr>,
    ) -> Self {
        Self {
            arguments: Some(arguments),
            time,
            source_address,
        }
    }
}
