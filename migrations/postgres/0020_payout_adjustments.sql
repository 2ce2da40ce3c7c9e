-- A top-up to a household for a month already paid (a correction: attendance recounted, a wage
-- left out), posted and paid in a later month while the year's plan is active: recorded by the
-- village's accountant in the browser, beside those the deployment file lists.
CREATE TABLE payout_adjustments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    village TEXT NOT NULL,
    month TEXT NOT NULL,
    household TEXT NOT NULL,
    corrects TEXT NOT NULL,
    amount_fen BIGINT NOT NULL,
    reason TEXT NOT NULL,
    recorded_ms BIGINT NOT NULL,
    recorded_by TEXT NOT NULL
);
CREATE INDEX payout_adjustments_by_village ON payout_adjustments (village, month);
