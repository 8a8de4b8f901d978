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

/// A method a client may call with parameters.
struct Known {
    name: &'static str,
    check: Check,
    /// Says whether only a session has it: the stateless 2026-07-28 era removed it, so there it
    /// is an unknown method whatever its params.
    sessions_only: bool,
}

/// Lists the methods a client may call that take parameters.
const KNOWN: [Known; 12] = [
    known(
        InitializeResultMethod::VALUE,
        required::<InitializeRequestParams>,
        true,
    ),
    known(
        CallToolRequestMethod::VALUE,
        required::<CallToolRequestParams>,
        false,
    ),
    known(
        ListToolsRequestMethod::VALUE,
        optional::<PaginatedRequestParams>,
        false,
    ),
    known(
        GetPromptRequestMethod::VALUE,
        required::<GetPromptRequestParams>,
        false,
    ),
    known(
        ListPromptsRequestMethod::VALUE,
        optional::<PaginatedRequestParams>,
        false,
    ),
    known(
        ReadResourceRequestMethod::VALUE,
        required::<ReadResourceRequestParams>,
        false,
    ),
    known(
        ListResourcesRequestMethod::VALUE,
        optional::<PaginatedRequestParams>,
        false,
    ),
    known(
        ListResourceTemplatesRequestMethod::VALUE,
        optional::<PaginatedRequestParams>,
        false,
    ),
    known(
        SubscribeRequestMethod::VALUE,
        required::<SubscribeRequestParams>,
        true,
    ),
    known(
        UnsubscribeRequestMethod::VALUE,
        required::<UnsubscribeRequestParams>,
        true,
    ),
    known(
        CompleteRequestMethod::VALUE,
        required::<CompleteRequestParams>,
        false,
    ),
    known(
        SetLevelRequestMethod::VALUE,
        required::<SetLevelRequestParams>,
        true,
    ),
];

const fn known(name: &'static str, check: Check, sessions_only: bool) -> Known {
    Known {
        name,
        check,
        sessions_only,
    }
}

/// Counts a request to `virtual_server` that rmcp could not parse and returns its error;
/// `stateless` says the client speaks the 2026-07-28 era.
pub(crate) fn refuse(
    virtual_server: &str,
    method: &str,
    params: Option<Value>,
    stateless: bool,
) -> ErrorData {
    let error = refusal(method, params, stateless);
    let label = if error.code == ErrorCode::INVALID_PARAMS {
        "invalid_params"
    } else {
        "method_not_found"
    };
    crate::telemetry::count_unparsed(virtual_server, label);
    error
}

/// Returns the error for a request rmcp could not parse: `-32602` naming the parameter that
/// does not fit when the client's era defines `method`, `-32601` naming the method otherwise
/// (also when its params fit: rmcp then refused it for a reason of the era's, not of them).
fn refusal(method: &str, params: Option<Value>, stateless: bool) -> ErrorData {
    let reason = KNOWN
        .iter()
        .find(|known| known.name == method && !(stateless && known.sessions_only))
        .and_then(|known| (known.check)(params));
    match reason {
        Some(reason) => {
            ErrorData::invalid_params(format!("invalid params for {method}: {reason}"), None)
        }
        None => ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("method not found: `{method}`"),
            None,
        ),
    }
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
        let error = refusal("bogus/method", Some(json!({})), false);
        assert_eq!(error.code, ErrorCode::METHOD_NOT_FOUND);
        assert_eq!(error.message, "method not found: `bogus/method`");
    }

    #[test]
    fn a_tool_call_whose_name_is_not_a_string_is_invalid_params_naming_the_field() {
        let error = refusal("tools/call", Some(json!({"name": 5})), false);
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
        assert_eq!(
            error.message,
            "invalid params for tools/call: `name`: expected a string"
        );
    }

    #[test]
    fn a_tool_call_without_a_name_or_without_params_says_what_is_missing() {
        let error = refusal("tools/call", Some(json!({"arguments": {}})), true);
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
        assert_eq!(
            error.message,
            "invalid params for tools/call: missing field `name`"
        );
        let error = refusal("tools/call", None, false);
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
            true,
        );
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
        assert!(
            error
                .message
                .starts_with("invalid params for tools/call: `arguments`: expected")
        );
        assert!(!error.message.contains("sk-live"), "{}", error.message);
        let error = refusal("resources/read", Some(json!({"uri": 42})), true);
        assert_eq!(
            error.message,
            "invalid params for resources/read: `uri`: expected a string"
        );
        assert!(!error.message.contains("42"));
    }

    #[test]
    fn a_listing_with_a_cursor_of_the_wrong_type_is_invalid_params() {
        let error = refusal("tools/list", Some(json!({"cursor": 7})), false);
        assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
        assert_eq!(
            error.message,
            "invalid params for tools/list: `cursor`: expected a string"
        );
    }

    /// 2026-07-28 removed a session's methods: there they are unknown, whatever their params,
    /// as the conformance suite's SEP-2575 checks ask (HTTP 404, `-32601`).
    #[test]
    fn a_method_the_stateless_era_removed_is_method_not_found_there_only() {
        for method in ["initialize", "logging/setLevel", "resources/subscribe"] {
            let error = refusal(method, Some(json!({"level": 3, "uri": 4})), true);
            assert_eq!(error.code, ErrorCode::METHOD_NOT_FOUND, "{method}");
            let error = refusal(method, Some(json!({"level": 3, "uri": 4})), false);
            assert_eq!(error.code, ErrorCode::INVALID_PARAMS, "{method}");
        }
    }

    #[test]
    fn params_that_fit_their_method_are_not_called_invalid() {
        let error = refusal("tools/call", Some(json!({"name": "echo"})), false);
        assert_eq!(error.code, ErrorCode::METHOD_NOT_FOUND);
    }
}
