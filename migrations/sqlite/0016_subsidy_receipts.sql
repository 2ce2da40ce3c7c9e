-- National subsidy received for a station, posted in a month (it arrives late and irregularly):
-- recorded by the county's finance desk in the browser, beside those the deployment file lists.
CREATE TABLE subsidy_receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    month TEXT NOT NULL,
    amount_fen BIGINT NOT NULL,
    covers TEXT NOT NULL,
    recorded_ms BIGINT NOT NULL,
    recorded_by TEXT NOT NULL
);
CREATE INDEX subsidy_receipts_by_month ON subsidy_receipts (month, station);
