-- The station page checks its stored months against the count, versions and staleness of the days
-- they were composed from (a year of a station's days). This index answers that from the index
-- alone instead of reading every day's full row (its notes, devices and resets) from the table.
CREATE INDEX station_days_signature ON station_days (station_id, day_ms, version, stale);
