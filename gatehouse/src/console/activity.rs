//! Activity: a live feed of recent audit events, a chart of tool calls over time by virtual
//! server, tool, member or agent (inline SVG drawn on the server), and one event's full record.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{Chrome, Console, admin_error, message, render};
use crate::admin::AdminCaller;
use crate::admin::model::AuditQuery;

/// How many of the newest events the pages read (the admin API's page maximum).
const WINDOW_EVENTS: u32 = 1000;
/// How many events the feed shows.
const FEED_ROWS: usize = 40;
/// The chart's span: one bar per minute over the last half hour.
const BUCKETS: i64 = 30;
const BUCKET_SECONDS: i64 = 60;
/// The chart's series: the busiest values, the rest summed as "other".
const SERIES: usize = 5;
/// Chart geometry, in SVG user units.
const CHART_WIDTH: i64 = 720;
const CHART_HEIGHT: i64 = 160;

/// One audit event as the console lists it.
#[derive(Debug, Clone)]
pub(super) struct EventRow {
    pub(super) sequence: u64,
    /// Unix seconds.
    pub(super) time: i64,
    pub(super) clock: String,
    pub(super) kind: String,
    pub(super) method: String,
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

/// Which dimension the chart splits calls by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum By {
    #[default]
    VirtualServer,
    Tool,
    Member,
    Agent,
}

#[derive(Debug, Deserialize)]
pub(super) struct ActivityQuery {
    #[serde(default)]
    by: By,
}

/// One bar segment of the chart.
#[derive(Debug)]
struct Segment {
    x: i64,
    y: i64,
    width: i64,
    height: i64,
    series: usize,
    label: String,
}

/// One series of the chart's legend.
#[derive(Debug)]
struct Legend {
    series: usize,
    name: String,
    calls: usize,
}

#[derive(Debug)]
struct Chart {
    segments: Vec<Segment>,
    legend: Vec<Legend>,
    peak: usize,
    width: i64,
    height: i64,
    /// Tick labels under the bars: (x, text).
    ticks: Vec<(i64, String)>,
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
    let events = match recent(&console, caller).await {
        Ok(events) => events,
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
            chart: chart(&calls, query.by, now),
            totals,
            rows: feed_rows(events),
        },
    )
}

/// `GET /console/activity/feed`: the feed's rows, which the page's script polls.
pub(super) async fn feed(State(console): State<Console>, headers: HeaderMap) -> Response {
    let viewer = match console.sessions().viewer(&headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let caller = match viewer.administrator() {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    match recent(&console, caller).await {
        Ok(events) => render(
            StatusCode::OK,
            &FeedRows {
                rows: feed_rows(events),
            },
        ),
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

/// Returns the newest MCP request events, newest first, through the admin API's search.
///
/// Only MCP requests: credential reads and token events, one or more per call (and a stream of
/// them from a connector whose credential fails), would crowd the calls out of the window.
pub(super) async fn recent(
    console: &Console,
    caller: &AdminCaller,
) -> Result<Vec<EventRow>, crate::admin::AdminError> {
    let query = AuditQuery {
        kind: Some("EVENT_KIND_MCP_REQUEST".to_owned()),
        limit: Some(WINDOW_EVENTS),
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

fn feed_rows(events: Vec<EventRow>) -> Vec<EventRow> {
    events
        .into_iter()
        .filter(|row| !row.admin_read)
        .take(FEED_ROWS)
        .collect()
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
            admin_read: kind == "EVENT_KIND_ADMIN_CHANGE"
                && matches!(admin_action.as_str(), "list" | "read" | "search"),
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

    fn dimension(&self, by: By) -> &str {
        let value = match by {
            By::VirtualServer => &self.virtual_server,
            By::Tool => &self.tool,
            By::Member => &self.member,
            By::Agent => &self.agent,
        };
        if value.is_empty() { "(none)" } else { value }
    }
}

impl By {
    /// The choices the page offers: query value, label, and `"true"` for the current one
    /// (the value of its `aria-current`).
    fn choices(self) -> [(&'static str, &'static str, &'static str); 4] {
        let current = |by| if self == by { "true" } else { "" };
        [
            (
                "virtual_server",
                "Virtual server",
                current(Self::VirtualServer),
            ),
            ("tool", "Tool", current(Self::Tool)),
            ("member", "Member", current(Self::Member)),
            ("agent", "Agent", current(Self::Agent)),
        ]
    }
}

/// Draws stacked bars of `calls` per minute, split by `by`.
fn chart(calls: &[&EventRow], by: By, now: i64) -> Chart {
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for row in calls {
        *totals.entry(row.dimension(by)).or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let named: Vec<&str> = ranked.iter().take(SERIES).map(|(name, _)| *name).collect();
    let series_of = |row: &EventRow| {
        named
            .iter()
            .position(|name| *name == row.dimension(by))
            .unwrap_or(SERIES)
    };
    let start = now - BUCKETS * BUCKET_SECONDS;
    let mut counts = vec![[0usize; SERIES + 1]; usize::try_from(BUCKETS).unwrap_or(0)];
    for row in calls {
        let bucket = usize::try_from((row.time - start) / BUCKET_SECONDS).unwrap_or(0);
        if let Some(bucket) = counts.get_mut(bucket) {
            bucket[series_of(row)] += 1;
        }
    }
    let peak = counts
        .iter()
        .map(|bucket| bucket.iter().sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = CHART_WIDTH / BUCKETS;
    let scale = |count: usize| {
        i64::try_from(count).unwrap_or(0) * CHART_HEIGHT / i64::try_from(peak).unwrap_or(1)
    };
    let mut segments = Vec::new();
    for (index, bucket) in counts.iter().enumerate() {
        let x = i64::try_from(index).unwrap_or(0) * slot;
        let mut top = CHART_HEIGHT;
        for (series, count) in bucket.iter().enumerate().filter(|(_, count)| **count > 0) {
            let height = scale(*count).max(2);
            top -= height;
            let name = named.get(series).copied().unwrap_or("other");
            let minutes_ago = BUCKETS - i64::try_from(index).unwrap_or(0);
            segments.push(Segment {
                x: x + 2,
                y: top,
                width: slot - 4,
                height,
                series,
                label: format!("{name}: {count} call(s), {minutes_ago} min ago"),
            });
        }
    }
    let mut legend: Vec<Legend> = ranked
        .iter()
        .take(SERIES)
        .enumerate()
        .map(|(series, (name, calls))| Legend {
            series,
            name: (*name).to_owned(),
            calls: *calls,
        })
        .collect();
    let other: usize = ranked.iter().skip(SERIES).map(|(_, calls)| calls).sum();
    if other > 0 {
        legend.push(Legend {
            series: SERIES,
            name: "other".to_owned(),
            calls: other,
        });
    }
    let ticks = (0..=BUCKETS)
        .step_by(5)
        .map(|index| {
            let label = if index == BUCKETS {
                "now".to_owned()
            } else {
                format!("-{} min", BUCKETS - index)
            };
            (index * slot, label)
        })
        .collect();
    Chart {
        segments,
        legend,
        peak,
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        ticks,
    }
}
