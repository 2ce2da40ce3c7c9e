-- What each village's PV account held when the ledger began (from the bank statement), and the
-- county advances still owed then: the first month recorded opens from these. They are set by the
-- county before the first month is recorded and never changed after (corrections are adjustments).
CREATE TABLE opening_balances (
    village TEXT PRIMARY KEY,
    balance_fen BIGINT NOT NULL,
    advance_outstanding_fen BIGINT NOT NULL,
    note TEXT NOT NULL,
    set_ms BIGINT NOT NULL,
    set_by TEXT NOT NULL
);
