-- MQTT collection: messages from loggers or devices the deployment does not know (a new logger in
-- the field, a unit id not registered yet), and messages refused with a reason. Aggregated: one row
-- per (logger, device key) and per (topic, reason), with counts and the last time seen.

CREATE TABLE mqtt_unknown (
    logger TEXT NOT NULL,
    device_key TEXT NOT NULL,
    topic TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    last_payload TEXT NOT NULL,
    PRIMARY KEY (logger, device_key)
);

CREATE TABLE mqtt_rejected (
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    last_detail TEXT NOT NULL,
    PRIMARY KEY (topic, reason)
);
CREATE INDEX mqtt_rejected_last ON mqtt_rejected (last_seen_ms);
