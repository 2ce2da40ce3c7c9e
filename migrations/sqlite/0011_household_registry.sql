-- The household registry lives here now: the deployment file only seeds it (a household the file
-- names is inserted once, and from then on edited, retired or re-imported through the web). The
-- old mirror table was written at every start and never read; it is replaced.
DROP TABLE households;

CREATE TABLE households (
    id TEXT PRIMARY KEY,
    village TEXT NOT NULL,
    head TEXT NOT NULL,
    deep_poverty BIGINT NOT NULL,
    labour TEXT NOT NULL,
    birth_year BIGINT,
    bank_account TEXT,
    -- The poverty-status history, oldest first: [{"status": "exited", "from": "2019-12-31"}, ...].
    status_history TEXT NOT NULL,
    -- Where it came from: file (the deployment file), web (the form) or roster (an import).
    origin TEXT NOT NULL,
    -- Retired households stay for the history; they are no longer paid or counted.
    retired_ms BIGINT,
    retired_reason TEXT,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE INDEX households_by_village ON households (village, id);

-- Every change to a household: who, when, what, and the fields it changed.
CREATE TABLE household_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    household TEXT NOT NULL,
    village TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    who TEXT NOT NULL,
    what TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX household_changes_by_household ON household_changes (household, id);

-- Roster files read and previewed; applying one records when (all of it or nothing).
CREATE TABLE roster_imports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    village TEXT NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    encoding TEXT NOT NULL,
    -- The households the file describes, as read (JSON), applied only if nothing is refused.
    rows_json TEXT NOT NULL,
    uploaded_ms BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL,
    applied_ms BIGINT
);
