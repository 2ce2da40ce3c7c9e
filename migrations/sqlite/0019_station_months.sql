-- A station's figures of one closed local month, composed from its stored days, so the station
-- page reads twelve rows instead of a year of days. Each stored day counts its recomputations
-- (`version`); a month row keeps how many days it was composed from and the sum of their
-- versions, and is used only while the month's stored days still have that count and that sum
-- and none is marked stale. Anything else (a day recomputed, added or marked since) sends the
-- page back to the days, which composes and stores the month again.
ALTER TABLE station_days ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE station_months (
    station_id TEXT NOT NULL,
    month_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    energy_wh BIGINT NOT NULL,
    notes TEXT NOT NULL,
    expected BIGINT NOT NULL,
    received BIGINT NOT NULL,
    observed_hours BIGINT NOT NULL,
    producing_hours BIGINT NOT NULL,
    clipped_hours BIGINT NOT NULL,
    derated_readings BIGINT NOT NULL,
    devices TEXT NOT NULL,
    resets TEXT NOT NULL,
    days BIGINT NOT NULL,
    days_version BIGINT NOT NULL,
    PRIMARY KEY (station_id, month_ms)
);
