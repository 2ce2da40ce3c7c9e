-- Alerts: one row per alert (open, acknowledged or resolved), its history, and notifier health.
-- At most one unresolved alert per (kind, station, subject): the rules deduplicate, the index enforces.

CREATE TABLE alerts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    station TEXT NOT NULL,
    subject TEXT NOT NULL,
    county TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    opened_ms BIGINT NOT NULL,
    since_ms BIGINT NOT NULL,
    resolved_ms BIGINT,
    ack_by TEXT,
    ack_note TEXT,
    ack_ms BIGINT,
    flapping BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX alerts_one_unresolved ON alerts (kind, station, subject) WHERE state <> 'resolved';
CREATE INDEX alerts_state ON alerts (state, opened_ms);

CREATE TABLE alert_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT,
    note TEXT
);
CREATE INDEX alert_history_at ON alert_history (at_ms);

CREATE TABLE notify_status (
    sink TEXT PRIMARY KEY,
    last_ok_ms BIGINT,
    last_error_ms BIGINT,
    last_error TEXT,
    failures BIGINT NOT NULL DEFAULT 0
);
