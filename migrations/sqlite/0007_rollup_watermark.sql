-- Rollups and latest values are written behind on SQLite: a sample's contribution waits in memory
-- and many samples are merged into one row write. This row says how far the rollups table is
-- complete: every raw row with a rowid up to raw_rowid is in it. On start-up the raw rows above
-- it are replayed, so a process that stops without writing what was pending loses nothing.
CREATE TABLE rollup_watermark (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    raw_rowid BIGINT NOT NULL
);

-- Until now every write went through, so all existing rows are covered.
INSERT INTO rollup_watermark (id, raw_rowid) SELECT 1, COALESCE(MAX(rowid), 0) FROM raw_samples;
