-- County advances to a village (垫付), posted in a month and settled from the village's share of
-- later subsidy receipts: recorded by the county's finance desk in the browser, beside those the
-- deployment file lists.
CREATE TABLE county_advances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    village TEXT NOT NULL,
    month TEXT NOT NULL,
    amount_fen BIGINT NOT NULL,
    reference TEXT NOT NULL,
    recorded_ms BIGINT NOT NULL,
    recorded_by TEXT NOT NULL
);
CREATE INDEX county_advances_by_month ON county_advances (month, village);
