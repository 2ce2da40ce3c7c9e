-- A station's figures of one past local day (energy, notes, completeness, hours, per-device
-- shares), computed from that day's readings and the nearest reading on either side, so the
-- station page reads them instead of recomputing from raw. reach_from_ms/reach_to_ms are those
-- nearest readings (the smallest and largest BIGINT when there is none): a sample stored strictly
-- between them can change the day, and the rollup write that merges it adds to `stale`. A row
-- with stale > 0 is recomputed before it is shown; the recomputation is stored only if the count
-- is still the one it started from, so a mark made while it ran keeps the day stale.
CREATE TABLE station_days (
    station_id TEXT NOT NULL,
    day_ms BIGINT NOT NULL,
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
    reach_from_ms BIGINT NOT NULL,
    reach_to_ms BIGINT NOT NULL,
    stale BIGINT NOT NULL,
    PRIMARY KEY (station_id, day_ms)
);

-- The marks look up a station's days whose reach ends after a new sample: the last day or two.
CREATE INDEX station_days_by_reach ON station_days (station_id, reach_to_ms);
-- The refresh finds what is stale without scanning every day.
CREATE INDEX station_days_stale ON station_days (stale) WHERE stale > 0;
