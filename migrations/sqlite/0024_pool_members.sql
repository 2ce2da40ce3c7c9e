-- The beneficiary households of centralized stations (集中式电站受益户) as the county's finance desk
-- keeps them in the browser. A row replaces the deployment file's entry for the same station and
-- household (its `beneficiaries` listing and its `pool_membership` window): the household is paid
-- the station's instalment in every month from `from_month` to `until_month` (open: no end).
CREATE TABLE pool_members (
    station TEXT NOT NULL,
    household TEXT NOT NULL,
    from_month TEXT NOT NULL,
    until_month TEXT,
    recorded_ms BIGINT NOT NULL,
    recorded_by TEXT NOT NULL,
    PRIMARY KEY (station, household)
);
