-- SIEM sinks: one durable cursor per configured sink (the last sequence it
-- delivered and the last checkpoint it anchored) and the events a sink refused
-- for good. Unlike the log itself these rows change: a cursor advances, and a
-- dead letter can be replayed and removed by an operator.
CREATE TABLE audit_sink_cursor (
    sink           TEXT    PRIMARY KEY,
    delivered_seq  BIGINT NOT NULL,
    anchored_size  BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE audit_sink_dead_letter (
    sink      TEXT    NOT NULL,
    seq       BIGINT NOT NULL,
    event_id  TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    failed_at BIGINT NOT NULL,
    PRIMARY KEY (sink, seq)
);
