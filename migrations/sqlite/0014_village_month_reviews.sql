-- A village's accountant confirms (复核) the village's statement of a recorded month before the
-- county pays it. A review holds for the month run whose fingerprint it names: a month run again
-- with other results needs reviewing again.
CREATE TABLE ledger_village_reviews (
    month TEXT NOT NULL,
    village TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    reviewed_ms BIGINT NOT NULL,
    reviewed_by TEXT NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (month, village)
);
