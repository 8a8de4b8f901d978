//! Requests rmcp could not parse. rmcp hands over any request it cannot parse as a custom
//! request, whether its method is unknown or its parameters do not fit a method MCP defines;
//! its default answer, "method not found" with the bare method name, is wrong for the second
//! (JSON-RPC's `-32602 Invalid params`) and unclear for both.

use rmcp::model::{
    CallToolRequestMethod, CallToolRequestParams, CompleteRequestMethod, CompleteRequestParams,
    ConstString, ErrorCode, ErrorData, GetPromptRequestMethod, GetPromptRequestParams,
    InitializeRequestParams, InitializeResultMethod, ListPromptsRequestMethod,
    ListResourceTemplatesRequestMethod, ListResourcesRequestMethod, ListToolsRequestMethod,
    PaginatedRequestParams, ReadResourceRequestMethod, ReadResourceRequestParams,
    SetLevelRequestMethod, SetLevelRequestParams, SubscribeRequestMethod, SubscribeRequestParams,
    UnsubscribeRequestMethod, UnsubscribeRequestParams,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Says what is wrong with a method's parameters, or `None` when they fit.
type Check = fn(Option<Value>) -> Option<String>;

/// Lists the methods a client may call that take parameters, with each one's check.
const CHECKS: [(&str, Check); 12] = [
    (
        InitializeResultMethod::VALUE,
        required::<InitializeRequestParams>,
    ),
    (
        CallToolRequestMethod::VALUE,
        required::<CallToolRequestParams>,
    ),
    (
        ListToolsRequestMethod::VALUE,
        optional::<PaginatedRequestParams>,
    ),
    (
        GetPromptRequestMethod::VALUE,
        required::<GetPromptRequestParams>,
    ),
    (
        ListPromptsRequestMethod::VALUE,
        optional::<PaginatedRequestParams>,
    ),
    (
        ReadResourceRequestMethod::VALUE,
        required::<ReadResourceRequestParams>,
    ),
    (
        ListResourcesRequestMethod::VALUE,
        optional::<PaginatedRequestParams>,
    ),
    (
        ListResourceTemplatesRequestMethod::VALUE,
        optional::<PaginatedRequestParams>,
    ),
    (
        SubscribeRequestMethod::VALUE,
        required::<SubscribeRequestParams>,
    ),
    (
        UnsubscribeRequestMethod::VALUE,
        required::<UnsubscribeRequestParams>,
    ),
    (
        CompleteRequestMethod::VALUE,
        required::<CompleteRequestParams>,
    ),
    (
        SetLevelRequestMethod::VALUE,
        required::<SetLevelRequestParams>,
    ),
];

/// Counts a request to `virtual_server` that rmcp could not parse and returns its error.
pub(crate) fn refuse(virtual_server: &str, method: &str, params: Option<Value>) -> ErrorData {
    let error = refusal(method, params);
    let label = if error.code == ErrorCode::INVALID_PARAMS {
        "invalid_params"
    } else {
        "method_not_found"
    };
    crate::telemetry::count_unparsed(virtual_server, label);
    error
}

/// Returns the error for a request rmcp could not parse: `-32602` naming the parameter that
/// does not fit when MCP defines `method`, `-32601` naming the method otherwise.
fn refusal(method: &str, params: Option<Value>) -> ErrorData {
    let Some((_, check)) = CHECKS.iter().find(|(name, _)| *name == method) else {
        return ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("method not found: `{method}`"),
            None,
        );
    };
    let message = match check(params) {
        Some(reason) => format!("invalid params for {method}: {reason}"),
        None => format!("invalid params for {method}"),
    };
    ErrorData::invalid_params(message, None)
}

fn required<P: DeserializeOwned>(params: Option<Value>) -> Option<String> {
    match params {
        Some(params) => mismatch::<P>(params),
        None => Some("params are required".to_owned()),
    }
}

fn optional<P: DeserializeOwned>(params: Option<Value>) -> Option<String> {
    params.and_then(mismatch::<P>)
}

/// Names where `params` stop fitting `P` and what was expected there, leaving out the value
/// found (it may be a secret the client put in the wrong place; serde quotes it before
/// ", expected").
fn mismatch<P: DeserializeOwned>(params: Value) -> Option<String> {
    let error = serde_path_to_error::deserialize::<_, P>(params).err()?;
    let path = error.path().to_string();
    let inner = error.into_inner().to_string();
    let reason = match inner.rsplit_once(", expected ") {
        Some((_, expected)) => format!("expected {expected}"),
        None => inner,
    };
    Some(if path == "." {
        reason
    } else {
        format!("`{path}`: {reason}")
    })
}

#[cfg(test)]
mod tests {
    use rmcp::model::ErrorCode;
    use serde_json::json;

    use super::refusal;

    #[test]
    fn an_unknown_method_is_method_not_found_and_named() {
        let error = refusal("bogus/method", Some(json!({})));
        assert_eq!(error.code, ErrorCode::METHOD_NOT_FOUND);
        assert_eq!(error.message, "method not found: `bogus/method`");
    }

    #[test]
    fn a_tool_call_whose_name_is_not_a_string_is_invalid_params_naming_the_field() {
        let error = refusal("tools/call", Some(json!({"name": 5})));
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
        assert_eq!(
            error.message,
            "invalid params for tools/call: `name`: expected a string"
        );
    }

    #[test]
    fn a_tool_call_without_a_name_or_without_params_says_what_is_missing() {
        let error = refusal("tools/call", Some(json!({"arguments": {}})));
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
        assert_eq!(
            error.message,
            "invalid params for tools/call: missing field `name`"
        );
        let error = refusal("tools/call", None);
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
        assert_eq!(
            error.message,
            "invalid params for tools/call: params are required"
        );
    }

    #[test]
    fn the_value_that_did_not_fit_stays_out_of_the_message() {
        let canary = "sk-live-canary-0123456789, expected nothing";
        let error = refusal(
            "tools/call",
            Some(json!({"name": "echo", "arguments": canary})),
        );
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
        assert!(
            error
                .message
                .starts_with("invalid params for tools/call: `arguments`: expected")
        );
        assert!(!error.message.contains("sk-live"), "{}", error.message);
        let error = refusal("resources/read", Some(json!({"uri": 42})));
        assert_eq!(
            error.message,
            "invalid params for resources/read: `uri`: expected a string"
        );
        assert!(!error.message.contains("42"));
    }

    #[test]
    fn a_listing_with_a_cursor_of_the_wrong_type_is_invalid_params() {
        let error = refusal("tools/list", Some(json!({"cursor": 7})));
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
        assert_eq!(
            error.message,
            "invalid params for tools/list: `cursor`: expected a string"
        );
    }
}
