//! Activity: a live feed of recent audit events (tool calls, tokens, credentials and
//! administrative changes), a chart of tool calls over time by virtual server, tool, member or
//! agent (inline SVG drawn on the server), and one event's full record.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{Chrome, Console, admin_error, message, render};
use crate::admin::AdminCaller;
use crate::admin::model::AuditQuery;

mod chart;

use chart::{BUCKET_SECONDS, BUCKETS, By, Chart};

/// How many of the newest events the pages read (the admin API's page maximum).
const WINDOW_EVENTS: u32 = 1000;
/// How many events the feed shows.
const FEED_ROWS: usize = 40;
/// The kinds whose events include the admin API's own reads (list, read, search), which the
/// console's polling would otherwise crowd the feed with: read over the whole window and
/// filtered.
const ADMIN_KINDS: [&str; 2] = ["EVENT_KIND_ADMIN_CHANGE", "EVENT_KIND_POLICY_CHANGED"];

/// One audit event as the console lists it.
#[derive(Debug, Clone)]
pub(super) struct EventRow {
    pub(super) sequence: u64,
    /// Unix seconds.
    pub(super) time: i64,
    pub(super) clock: String,
    pub(super) kind: String,
    pub(super) method: String,
    /// What the event was about, in a few words: the MCP method, the token's grant type, the
    /// credential's connector, or the administrative action and its object.
    pub(super) detail: String,
    pub(super) member: String,
    pub(super) agent: String,
    pub(super) virtual_server: String,
    pub(super) tool: String,
    pub(super) outcome: String,
    /// `ok`, `denied`, `dlp` or `error`: how the row is highlighted.
    pub(super) class: &'static str,
    pub(super) trace_id: String,
    /// An admin API read (list, read, search): left out of the feed, which would otherwise
    /// fill with the console's own polling.
    admin_read: bool,
}

/// Which events the feed shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Show {
    /// Every kind but credential reads (one per call that uses a credential; see `Credentials`).
    #[default]
    All,
    Calls,
    Tokens,
    Credentials,
    Admin,
}

#[derive(Debug, Deserialize)]
pub(super) struct ActivityQuery {
    #[serde(default)]
    by: By,
    #[serde(default)]
    show: Show,
}

#[derive(Debug, Deserialize)]
pub(super) struct FeedQuery {
    #[serde(default)]
    show: Show,
}

#[derive(Debug)]
struct Totals {
    calls: usize,
    denied: usize,
    dlp: usize,
    errors: usize,
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage {
    chrome: Chrome,
    by: By,
    show: Show,
    chart: Chart,
    totals: Totals,
    rows: Vec<EventRow>,
}

#[derive(Template)]
#[template(path = "feed.html")]
struct FeedRows {
    rows: Vec<EventRow>,
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    chrome: Chrome,
    row: EventRow,
    record: String,
}

/// `GET /console/activity`.
pub(super) async fn page(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(query): Query<ActivityQuery>,
) -> Response {
    let viewer = match console.sessions().viewer(&headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let caller = match viewer.administrator() {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let (events, rows) = match tokio::try_join!(
        recent_calls(&console, caller),
        feed_events(&console, caller, query.show)
    ) {
        Ok(read) => read,
        Err(error) => return admin_error(&viewer, &error),
    };
    let now = super::now();
    let calls: Vec<&EventRow> = events
        .iter()
        .filter(|row| row.is_tool_call() && row.time > now - BUCKETS * BUCKET_SECONDS)
        .collect();
    let totals = Totals {
        calls: calls.len(),
        denied: calls.iter().filter(|row| row.class == "denied").count(),
        dlp: calls.iter().filter(|row| row.class == "dlp").count(),
        errors: calls.iter().filter(|row| row.class == "error").count(),
    };
    render(
        StatusCode::OK,
        &ActivityPage {
            chrome: viewer.chrome("activity"),
            by: query.by,
            show: query.show,
            chart: chart::chart(&calls, query.by, now),
            totals,
            rows,
        },
    )
}

/// `GET /console/activity/feed`: the feed's rows, which the page's script polls.
pub(super) async fn feed(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Response {
    let viewer = match console.sessions().viewer(&headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let caller = match viewer.administrator() {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    match feed_events(&console, caller, query.show).await {
        Ok(rows) => render(StatusCode::OK, &FeedRows { rows }),
        Err(error) => admin_error(&viewer, &error),
    }
}

/// `GET /console/activity/{sequence}`: one event's full audit record.
pub(super) async fn event(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(sequence): Path<u64>,
) -> Response {
    let viewer = match console.sessions().viewer(&headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let caller = match viewer.administrator() {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    // The log lists in sequence order: one event after `sequence - 1` is `sequence` itself.
    let page_token = match sequence.checked_sub(1) {
        Some(0) | None => None,
        Some(before) => audit_svc::SearchQuery::new(audit_svc::Filter::default(), 1, "", false)
            .ok()
            .map(|query| query.token_after(before)),
    };
    let query = AuditQuery {
        limit: Some(1),
        page_token,
        ..AuditQuery::default()
    };
    let found = match console.admin().search_audit(caller, query).await {
        Ok(page) => page
            .events
            .into_iter()
            .find(|record| record.sequence == sequence),
        Err(error) => return admin_error(&viewer, &error),
    };
    let Some(found) = found else {
        return message(
            StatusCode::NOT_FOUND,
            Some(viewer.chrome("activity")),
            "No such event",
            "The audit log holds no event with this sequence number.",
        );
    };
    let record = serde_json::to_string_pretty(&found.event).unwrap_or_default();
    render(
        StatusCode::OK,
        &EventPage {
            chrome: viewer.chrome("activity"),
            row: EventRow::from_event(found.sequence, &found.event),
            record,
        },
    )
}

/// Returns the newest MCP request events, newest first: what the chart and the agents' call
/// statistics count.
///
/// Only MCP requests: credential reads and token events, one or more per call (and a stream of
/// them from a connector whose credential fails), would crowd the calls out of the window.
pub(super) async fn recent_calls(
    console: &Console,
    caller: &AdminCaller,
) -> Result<Vec<EventRow>, crate::admin::AdminError> {
    search(console, caller, &["EVENT_KIND_MCP_REQUEST"], WINDOW_EVENTS).await
}

/// Returns the feed's rows for `show`, newest first.
///
/// Kinds that hold the admin API's reads are read over the whole window and the reads dropped;
/// the others need only as many events as the feed shows.
async fn feed_events(
    console: &Console,
    caller: &AdminCaller,
    show: Show,
) -> Result<Vec<EventRow>, crate::admin::AdminError> {
    let (admin, other): (Vec<&str>, Vec<&str>) = show
        .kinds()
        .iter()
        .copied()
        .partition(|kind| ADMIN_KINDS.contains(kind));
    let limit = u32::try_from(FEED_ROWS).unwrap_or(WINDOW_EVENTS);
    let (mut rows, changes) = tokio::try_join!(
        search(console, caller, &other, limit),
        search(console, caller, &admin, WINDOW_EVENTS)
    )?;
    rows.extend(changes.into_iter().filter(|row| !row.admin_read));
    rows.sort_by_key(|row| std::cmp::Reverse(row.sequence));
    rows.truncate(FEED_ROWS);
    Ok(rows)
}

/// Returns up to `limit` of the newest events of `kinds` (none when `kinds` is empty).
async fn search(
    console: &Console,
    caller: &AdminCaller,
    kinds: &[&str],
    limit: u32,
) -> Result<Vec<EventRow>, crate::admin::AdminError> {
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    let query = AuditQuery {
        kind: Some(kinds.join(",")),
        limit: Some(limit),
        newest_first: true,
        ..AuditQuery::default()
    };
    let page = console.admin().search_audit(caller, query).await?;
    Ok(page
        .events
        .iter()
        .map(|record| EventRow::from_event(record.sequence, &record.event))
        .collect())
}

impl Show {
    /// Returns the event kinds this choice shows.
    fn kinds(self) -> &'static [&'static str] {
        const CALLS: &[&str] = &["EVENT_KIND_MCP_REQUEST"];
        const TOKENS: &[&str] = &[
            "EVENT_KIND_TOKEN_ISSUED",
            "EVENT_KIND_TOKEN_EXCHANGED",
            "EVENT_KIND_TOKEN_REVOKED",
        ];
        const CREDENTIALS: &[&str] = &[
            "EVENT_KIND_CREDENTIAL_READ",
            "EVENT_KIND_CREDENTIAL_WRITTEN",
            "EVENT_KIND_CREDENTIAL_REFRESHED",
            "EVENT_KIND_CREDENTIAL_ROTATED",
            "EVENT_KIND_CREDENTIAL_REVOKED",
        ];
        const ADMIN: &[&str] = &[
            "EVENT_KIND_AGENT_CHANGED",
            "EVENT_KIND_POLICY_CHANGED",
            "EVENT_KIND_ADMIN_CHANGE",
        ];
        const ALL: &[&str] = &[
            "EVENT_KIND_MCP_REQUEST",
            "EVENT_KIND_TOKEN_ISSUED",
            "EVENT_KIND_TOKEN_EXCHANGED",
            "EVENT_KIND_TOKEN_REVOKED",
            "EVENT_KIND_CREDENTIAL_WRITTEN",
            "EVENT_KIND_CREDENTIAL_REFRESHED",
            "EVENT_KIND_CREDENTIAL_ROTATED",
            "EVENT_KIND_CREDENTIAL_REVOKED",
            "EVENT_KIND_AGENT_CHANGED",
            "EVENT_KIND_POLICY_CHANGED",
            "EVENT_KIND_ADMIN_CHANGE",
        ];
        match self {
            Self::All => ALL,
            Self::Calls => CALLS,
            Self::Tokens => TOKENS,
            Self::Credentials => CREDENTIALS,
            Self::Admin => ADMIN,
        }
    }

    /// Returns the query value of this choice.
    fn value(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Calls => "calls",
            Self::Tokens => "tokens",
            Self::Credentials => "credentials",
            Self::Admin => "admin",
        }
    }

    /// The choices the page offers: query value, label, and `"true"` for the current one
    /// (the value of its `aria-current`).
    fn choices(self) -> [(&'static str, &'static str, &'static str); 5] {
        let choice =
            |show: Self, label| (show.value(), label, if self == show { "true" } else { "" });
        [
            choice(Self::All, "All"),
            choice(Self::Calls, "Tool calls"),
            choice(Self::Tokens, "Tokens"),
            choice(Self::Credentials, "Credentials"),
            choice(Self::Admin, "Admin"),
        ]
    }
}

impl EventRow {
    /// Reads the facts the console shows from an event's canonical JSON (proto3 JSON names).
    pub(super) fn from_event(sequence: u64, event: &Value) -> Self {
        let text = |path: &[&str]| {
            path.iter()
                .try_fold(event, |value, key| value.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let stamp = text(&["time"]);
        let time = stamp
            .parse::<prost_types::Timestamp>()
            .map_or(0, |timestamp| timestamp.seconds);
        let clock = stamp.get(11..19).unwrap_or_default().to_owned();
        let outcome = text(&["outcome"]);
        let dlp = event
            .get("dlpFindings")
            .and_then(Value::as_array)
            .is_some_and(|findings| !findings.is_empty());
        let class = match outcome.as_str() {
            "OUTCOME_BLOCKED_BY_DLP" => "dlp",
            _ if dlp => "dlp",
            "OUTCOME_DENIED"
            | "OUTCOME_RATE_LIMITED"
            | "OUTCOME_UNAUTHENTICATED"
            | "OUTCOME_CONSENT_REQUIRED" => "denied",
            "OUTCOME_TOOL_ERROR"
            | "OUTCOME_UPSTREAM_ERROR"
            | "OUTCOME_TIMEOUT"
            | "OUTCOME_INTERNAL_ERROR"
            | "OUTCOME_CANCELLED" => "error",
            _ => "ok",
        };
        let kind = text(&["kind"]);
        // An agent's own token names the bundle as its client (client-credentials methods);
        // its subject is the bundle id, not a member.
        let method = text(&["principal", "authenticationMethod"]);
        let agent_alone = method.contains("CLIENT_SECRET") || method.contains("PRIVATE_KEY_JWT");
        let agent = match text(&["principal", "agent", "clientId"]) {
            named if !named.is_empty() => named,
            _ if agent_alone => text(&["principal", "clientId"]),
            _ => String::new(),
        };
        let member = if agent_alone {
            String::new()
        } else {
            text(&["principal", "member", "id"])
        };
        let admin_action = text(&["admin", "action"]);
        Self {
            sequence,
            time,
            clock,
            admin_read: ADMIN_KINDS.contains(&kind.as_str())
                && matches!(admin_action.as_str(), "list" | "read" | "search"),
            detail: detail(event),
            kind: kind
                .trim_start_matches("EVENT_KIND_")
                .to_lowercase()
                .replace('_', " "),
            method: text(&["metadata", "mcpMethod"]),
            member,
            agent,
            virtual_server: text(&["target", "virtualServer"]),
            tool: text(&["target", "tool", "name"]),
            outcome: outcome
                .trim_start_matches("OUTCOME_")
                .to_lowercase()
                .replace('_', " "),
            class,
            trace_id: text(&["metadata", "traceId"]),
        }
    }

    /// Says whether the event is one MCP tool call.
    pub(super) fn is_tool_call(&self) -> bool {
        self.kind == "mcp request" && self.method == "tools/call"
    }

    /// Names who acted: the member, the agent, or both.
    pub(super) fn who(&self) -> String {
        match (self.member.is_empty(), self.agent.is_empty()) {
            (false, false) => format!("{} via {}", self.member, self.agent),
            (false, true) => self.member.clone(),
            (true, false) => self.agent.clone(),
            (true, true) => String::new(),
        }
    }
}

/// Returns what an event was about, in a few words (never a secret: only names and identifiers
/// the audit record itself holds).
fn detail(event: &Value) -> String {
    let text = |path: &[&str]| {
        path.iter()
            .try_fold(event, |value, key| value.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let words: Vec<&str> = if event.get("admin").is_some() {
        vec![
            text(&["admin", "action"]),
            text(&["admin", "objectType"]),
            text(&["admin", "objectId"]),
        ]
    } else if event.get("token").is_some() {
        vec![text(&["token", "grantType"])]
    } else if event.get("credential").is_some() {
        vec![
            text(&["credential", "connector"]),
            text(&["credential", "ownerId"]),
        ]
    } else {
        vec![text(&["metadata", "mcpMethod"])]
    };
    words
        .into_iter()
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .replace('_', " ")
}
