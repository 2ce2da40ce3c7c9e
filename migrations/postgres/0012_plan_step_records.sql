-- What a plan step records besides its note (JSON, NULL for none): the dates of the 四议 meetings,
-- the day a plan or its result was made public, the names of the documents kept for it.
ALTER TABLE ledger_plan_transitions ADD COLUMN record TEXT;
