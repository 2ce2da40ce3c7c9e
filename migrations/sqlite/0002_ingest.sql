-- Ingest: a stable reason code on quarantined samples, for filtering and counting by reason.
ALTER TABLE quarantine ADD COLUMN code TEXT NOT NULL DEFAULT '';
CREATE INDEX quarantine_received ON quarantine (received_ms);
