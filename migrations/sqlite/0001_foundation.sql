-- Registry (synced from the deployment file), latest values, raw samples, rollups, quarantine.
-- Times are UTC epoch milliseconds; money is integer fen; prices are 1/10,000 yuan per kWh.

CREATE TABLE counties (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    province TEXT NOT NULL
);

CREATE TABLE townships (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    county TEXT NOT NULL
);

CREATE TABLE villages (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    township TEXT NOT NULL
);

CREATE TABLE stations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    county TEXT NOT NULL,
    capacity_kwp DOUBLE PRECISION NOT NULL,
    latitude DOUBLE PRECISION NOT NULL,
    longitude DOUBLE PRECISION NOT NULL,
    timezone TEXT NOT NULL,
    commissioned TEXT NOT NULL,
    tariff TEXT NOT NULL,
    village TEXT
);

CREATE TABLE station_owners (
    station TEXT NOT NULL,
    village TEXT NOT NULL,
    weight BIGINT NOT NULL,
    PRIMARY KEY (station, village)
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    station TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    transport TEXT NOT NULL,
    rated_power_w DOUBLE PRECISION NOT NULL
);

CREATE TABLE households (
    id TEXT PRIMARY KEY,
    village TEXT NOT NULL,
    head TEXT NOT NULL,
    deep_poverty BIGINT NOT NULL,
    labour TEXT NOT NULL,
    status TEXT NOT NULL
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    village TEXT NOT NULL,
    title TEXT NOT NULL,
    holder TEXT NOT NULL,
    monthly_wage_fen BIGINT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_until TEXT
);

-- The newest reading per device, for dashboards.
CREATE TABLE latest (
    device_id TEXT PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    ac_power_w DOUBLE PRECISION,
    energy_today_wh DOUBLE PRECISION,
    energy_lifetime_wh DOUBLE PRECISION,
    state TEXT,
    readings TEXT NOT NULL
);

-- Every accepted reading, kept for storage.raw_retention.
CREATE TABLE raw_samples (
    device_id TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    ac_power_w DOUBLE PRECISION,
    energy_today_wh DOUBLE PRECISION,
    energy_lifetime_wh DOUBLE PRECISION,
    state TEXT,
    readings TEXT NOT NULL,
    PRIMARY KEY (device_id, ts_ms)
);
CREATE INDEX raw_samples_ts ON raw_samples (ts_ms);

-- 5-minute (300), hourly (3600) and daily (86400, cut at the station's local midnight) rollups.
-- energy_first/last are the lifetime counter at the earliest and latest sample in the bucket.
CREATE TABLE rollups (
    device_id TEXT NOT NULL,
    period_s BIGINT NOT NULL,
    bucket_ms BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    power_sum DOUBLE PRECISION NOT NULL,
    power_min DOUBLE PRECISION,
    power_max DOUBLE PRECISION,
    energy_first_ms BIGINT,
    energy_first_wh DOUBLE PRECISION,
    energy_last_ms BIGINT,
    energy_last_wh DOUBLE PRECISION,
    PRIMARY KEY (device_id, period_s, bucket_ms)
);

-- Values that failed validation: kept with their reason, never stored as truth.
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    reason TEXT NOT NULL,
    readings TEXT NOT NULL
);
CREATE INDEX quarantine_device ON quarantine (device_id, ts_ms);
