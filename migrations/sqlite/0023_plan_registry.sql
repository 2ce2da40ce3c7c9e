-- A village's annual plan drafted in the browser: the income it is made against and the budget of
-- each line. It replaces the deployment file's plan of the same village and year (the file's is
-- copied in, entries and all, the first time it is saved), and is edited only while the plan is a
-- draft (DRAFT in ledger_plans, or no row there).
CREATE TABLE annual_plans (
    village TEXT NOT NULL,
    year BIGINT NOT NULL,
    expected_net_fen BIGINT NOT NULL,
    expected_gross_fen BIGINT,
    job_wages_fen BIGINT NOT NULL,
    temp_labour_fen BIGINT NOT NULL,
    small_project_fen BIGINT NOT NULL,
    reward_subsidy_fen BIGINT NOT NULL,
    reserve_fen BIGINT NOT NULL,
    status_change_immediate BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (village, year)
);

-- The planned payments of a plan's lines, each in a month of the plan's year: temporary labour of
-- a household for the work it did (TEMP_LABOUR), a small public-welfare project paid to its payee
-- (SMALL_PROJECT), an individually approved reward or subsidy of a household (REWARD_SUBSIDY).
CREATE TABLE plan_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    village TEXT NOT NULL,
    year BIGINT NOT NULL,
    line TEXT NOT NULL CHECK (line IN ('TEMP_LABOUR', 'SMALL_PROJECT', 'REWARD_SUBSIDY')),
    month TEXT NOT NULL,
    household TEXT,
    payee TEXT,
    amount_fen BIGINT NOT NULL,
    description TEXT NOT NULL,
    approval TEXT,
    recorded_ms BIGINT NOT NULL,
    recorded_by TEXT NOT NULL,
    FOREIGN KEY (village, year) REFERENCES annual_plans (village, year)
);
CREATE INDEX plan_entries_by_plan ON plan_entries (village, year, month);
