-- The village ledger: plan workflow, monthly runs, entries, pools and the audit trail.
-- Money is integer fen; prices 1/10,000 yuan per kWh; times UTC epoch milliseconds; months 'YYYY-MM'.

-- Workflow state of a village's annual plan (POLICY.md 6); a missing row is DRAFT.
CREATE TABLE ledger_plans (
    village TEXT NOT NULL,
    year BIGINT NOT NULL,
    state TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (village, year)
);

-- Every transition with who, when and a note.
CREATE TABLE ledger_plan_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    village TEXT NOT NULL,
    year BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    who TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX ledger_plan_transitions_plan ON ledger_plan_transitions (village, year);

-- One row per month run; a PAID month is locked and never rewritten.
CREATE TABLE ledger_months (
    month TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    carry TEXT NOT NULL,
    computed_ms BIGINT NOT NULL,
    computed_by TEXT NOT NULL,
    paid_ms BIGINT,
    paid_by TEXT
);

CREATE TABLE ledger_station_months (
    month TEXT NOT NULL,
    station TEXT NOT NULL,
    basis TEXT NOT NULL,
    energy_wh BIGINT NOT NULL,
    tariff BIGINT NOT NULL,
    coal_price BIGINT NOT NULL,
    adder_price BIGINT NOT NULL,
    base_fen BIGINT NOT NULL,
    subsidy_accrued_fen BIGINT NOT NULL,
    adder_fen BIGINT NOT NULL,
    subsidy_received_fen BIGINT NOT NULL,
    received_fen BIGINT NOT NULL,
    costs_fen BIGINT NOT NULL,
    net_fen BIGINT NOT NULL,
    deficit_in_fen BIGINT NOT NULL,
    distributable_fen BIGINT NOT NULL,
    deficit_out_fen BIGINT NOT NULL,
    explanation TEXT NOT NULL,
    PRIMARY KEY (month, station)
);

CREATE TABLE ledger_village_months (
    month TEXT NOT NULL,
    village TEXT NOT NULL,
    provisional BIGINT NOT NULL,
    plan_state TEXT,
    opening_fen BIGINT NOT NULL,
    income_fen BIGINT NOT NULL,
    advance_fen BIGINT NOT NULL,
    advance_repaid_fen BIGINT NOT NULL,
    advance_outstanding_fen BIGINT NOT NULL,
    cash_fen BIGINT NOT NULL,
    payouts_fen BIGINT NOT NULL,
    reserve_fen BIGINT NOT NULL,
    carry_over_fen BIGINT NOT NULL,
    closing_fen BIGINT NOT NULL,
    explanation TEXT NOT NULL,
    PRIMARY KEY (month, village)
);

-- Income (by station) and payout lines of a village-month, in statement order.
CREATE TABLE ledger_entries (
    month TEXT NOT NULL,
    village TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    line TEXT NOT NULL,
    station TEXT,
    household TEXT,
    payee TEXT NOT NULL,
    reference TEXT NOT NULL,
    amount_fen BIGINT NOT NULL,
    basis TEXT NOT NULL,
    PRIMARY KEY (month, village, seq)
);
CREATE INDEX ledger_entries_household ON ledger_entries (household);

-- Centralized stations' fixed payments per beneficiary into the county pool.
CREATE TABLE ledger_pool_months (
    month TEXT NOT NULL,
    station TEXT NOT NULL,
    household TEXT NOT NULL,
    village TEXT,
    amount_fen BIGINT NOT NULL,
    PRIMARY KEY (month, station, household)
);

-- Who did what to the ledger, and when.
CREATE TABLE ledger_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    village TEXT,
    month TEXT,
    detail TEXT NOT NULL
);
