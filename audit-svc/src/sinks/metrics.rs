//! Exports sink lag as OpenTelemetry instruments (no-ops without a meter provider).

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge};

use super::SinkLag;

/// Holds one sink's instruments, labelled with its name.
#[derive(Debug)]
pub(super) struct SinkMetrics {
    attributes: [KeyValue; 1],
    events_behind: Gauge<u64>,
    oldest_age: Gauge<f64>,
    retries: Counter<u64>,
    dead_letters: Counter<u64>,
}

impl SinkMetrics {
    pub(super) fn new(sink: &str) -> Self {
        let meter = opentelemetry::global::meter("audit-svc");
        Self {
            attributes: [KeyValue::new("sink", sink.to_owned())],
            events_behind: meter
                .u64_gauge("gatehouse.audit.sink.lag.events")
                .with_description("committed audit events the sink has not accepted yet")
                .build(),
            oldest_age: meter
                .f64_gauge("gatehouse.audit.sink.lag.seconds")
                .with_unit("s")
                .with_description("age of the oldest undelivered audit event")
                .build(),
            retries: meter
                .u64_counter("gatehouse.audit.sink.retries")
                .with_description("retried sink deliveries")
                .build(),
            dead_letters: meter
                .u64_counter("gatehouse.audit.sink.dead_letters")
                .with_description("audit events a sink refused for good")
                .build(),
        }
    }

    pub(super) fn record(&self, lag: &SinkLag) {
        self.events_behind
            .record(lag.events_behind, &self.attributes);
        self.oldest_age
            .record(lag.oldest_undelivered_age.as_secs_f64(), &self.attributes);
    }

    pub(super) fn retried(&self) {
        self.retries.add(1, &self.attributes);
    }

    pub(super) fn dead_lettered(&self) {
        self.dead_letters.add(1, &self.attributes);
    }
}
