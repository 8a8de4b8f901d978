//! The Activity chart: stacked bars of tool calls per minute over the last half hour, split by
//! virtual server, tool, member or agent, drawn as inline SVG on the server.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::EventRow;

/// The chart's span: one bar per minute over the last half hour.
pub(super) const BUCKETS: i64 = 30;
pub(super) const BUCKET_SECONDS: i64 = 60;
/// The chart's series: the busiest values, the rest summed as "other".
const SERIES: usize = 5;
/// Chart geometry, in SVG user units.
const CHART_WIDTH: i64 = 720;
const CHART_HEIGHT: i64 = 160;

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

/// One bar segment of the chart.
#[derive(Debug)]
pub(super) struct Segment {
    pub(super) x: i64,
    pub(super) y: i64,
    pub(super) width: i64,
    pub(super) height: i64,
    pub(super) series: usize,
    pub(super) label: String,
}

/// One series of the chart's legend.
#[derive(Debug)]
pub(super) struct Legend {
    pub(super) series: usize,
    pub(super) name: String,
    pub(super) calls: usize,
}

/// The drawn chart, in SVG user units.
#[derive(Debug)]
pub(super) struct Chart {
    pub(super) segments: Vec<Segment>,
    pub(super) legend: Vec<Legend>,
    pub(super) peak: usize,
    pub(super) width: i64,
    pub(super) height: i64,
    /// Tick labels under the bars: (x, text).
    pub(super) ticks: Vec<(i64, String)>,
}

impl EventRow {
    /// Returns the row's value in dimension `by` (`(none)` when it has none).
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
    /// Returns the query value of this choice.
    pub(super) fn value(self) -> &'static str {
        match self {
            Self::VirtualServer => "virtual_server",
            Self::Tool => "tool",
            Self::Member => "member",
            Self::Agent => "agent",
        }
    }

    /// The choices the page offers: query value, label, and `"true"` for the current one
    /// (the value of its `aria-current`).
    pub(super) fn choices(self) -> [(&'static str, &'static str, &'static str); 4] {
        let choice = |by: Self, label| (by.value(), label, if self == by { "true" } else { "" });
        [
            choice(Self::VirtualServer, "Virtual server"),
            choice(Self::Tool, "Tool"),
            choice(Self::Member, "Member"),
            choice(Self::Agent, "Agent"),
        ]
    }
}

/// Draws stacked bars of `calls` per minute, split by `by`.
pub(super) fn chart(calls: &[&EventRow], by: By, now: i64) -> Chart {
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
