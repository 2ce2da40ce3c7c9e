-- Grid settlements (结算单): the authoritative on-grid energy of a station-month, imported from the
-- grid company's statement. A month without a row here is provisional (metered only).
CREATE TABLE settlements (
    station TEXT NOT NULL,
    month TEXT NOT NULL,
    energy_wh BIGINT NOT NULL,
    amount_fen BIGINT,
    source TEXT NOT NULL,
    source_line BIGINT NOT NULL,
    imported_ms BIGINT NOT NULL,
    PRIMARY KEY (station, month)
);
