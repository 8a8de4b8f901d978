-- SIEM sinks: one durable cursor per configured sink (the last sequence it
-- delivered and the last checkpoint it anchored) and the events a sink refused
-- for good. Unlike the log itself these rows change: a cursor advances, and a
-- dead letter can be replayed and removed by an operator.
CREATE TABLE audit_sink_cursor (
    sink           TEXT    PRIMARY KEY,
    delivered_seq  INTEGER NOT NULL,
    anchored_size  INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE audit_sink_dead_letter (
    sink      TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    event_id  TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    failed_at INTEGER NOT NULL,
    PRIMARY KEY (sink, seq)
);
