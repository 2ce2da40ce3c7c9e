-- Every settlement file imported. The grid company names every month's file 结算单.csv, so an import
-- is known by the SHA-256 of its bytes (the same bytes twice are one import) and when it was uploaded.
CREATE TABLE settlement_imports (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    size_bytes BIGINT NOT NULL,
    encoding TEXT NOT NULL,
    lines BIGINT NOT NULL,
    uploaded_ms BIGINT NOT NULL
);

-- The import a settlement came from (NULL for rows imported before imports were recorded), and the
-- amount Sunshare computes for its energy at the station's tariff, beside the statement's own.
ALTER TABLE settlements ADD COLUMN import_id BIGINT REFERENCES settlement_imports (id);
ALTER TABLE settlements ADD COLUMN computed_fen BIGINT;
