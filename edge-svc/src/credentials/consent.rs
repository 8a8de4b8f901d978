//! The member's first use of a per-member connector: the answer that hands them the link.
//!
//! A client that declared URL-mode elicitation (`elicitation.url`, MCP 2025-11-25) gets the
//! spec's `URLElicitationRequiredError` (-32042) and can open the link itself; any other client
//! gets a tool error whose text carries the link, which its user can read. Either way the link
//! stays out of the error *message*, which the audit record keeps: the link is bound to the
//! member, and anyone holding it could connect their own account in the member's name.

use rmcp::model::{
    CallToolResult, ClientCapabilities, ContentBlock, ErrorCode, ErrorData, MetaObject,
};

/// JSON-RPC code of MCP's `URLElicitationRequiredError`.
pub const CONSENT_REQUIRED: ErrorCode = ErrorCode(-32042);

/// The `_meta` key marking a tool error as a consent request, so the audit outcome says so.
const CONSENT_MARK: &str = "io.gatehouse/consent-required";

/// A member's authorization link, from vault-svc.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsentLink {
    /// The link; bound to the member, single-use and short-lived.
    pub url: String,
    /// Whether an earlier connection stopped working and must be made again.
    pub reconnect: bool,
}

impl std::fmt::Debug for ConsentLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentLink")
            .field("reconnect", &self.reconnect)
            .finish_non_exhaustive()
    }
}

impl ConsentLink {
    /// Returns the spec's `URLElicitationRequiredError` carrying the link in its data.
    pub fn elicitation(&self, connector: &str) -> ErrorData {
        let message = self.message(connector);
        let data = serde_json::json!({"elicitations": [{
            "mode": "url",
            "elicitationId": uuid::Uuid::now_v7().to_string(),
            "url": self.url,
            "message": message,
        }]});
        ErrorData::new(CONSENT_REQUIRED, message, Some(data))
    }

    /// Returns a tool error whose text carries the link, for clients that cannot open URLs.
    pub fn tool_error(&self, connector: &str) -> CallToolResult {
        let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
            "{}: open {} in a browser, then call the tool again",
            self.message(connector),
            self.url
        ))]);
        let mut meta = MetaObject::new();
        meta.0
            .insert(CONSENT_MARK.to_owned(), serde_json::Value::Bool(true));
        result.meta = Some(meta);
        result
    }

    fn message(&self, connector: &str) -> String {
        let action = if self.reconnect {
            "reconnect"
        } else {
            "connect"
        };
        format!("{action} your `{connector}` account to use this tool")
    }
}

/// Says whether a client declared URL-mode elicitation, so it can be sent the link to open.
pub fn opens_urls(capabilities: Option<&ClientCapabilities>) -> bool {
    capabilities
        .and_then(|capabilities| capabilities.elicitation.as_ref())
        .is_some_and(|elicitation| elicitation.url.is_some())
}

/// Says whether a tool result is the first-use link rather than the tool's own error.
pub fn is_consent_answer(result: &CallToolResult) -> bool {
    result
        .meta
        .as_ref()
        .is_some_and(|meta| meta.0.contains_key(CONSENT_MARK))
}

/// Says whether a JSON-RPC error is the first-use link.
pub fn is_consent_error(error: &ErrorData) -> bool {
    error.code == CONSENT_REQUIRED
}
