-- Public-welfare jobs (公益岗位) and their holders live here now, like households: the deployment
-- file only seeds them, the village's accountant adds and ends them in the browser. The old mirror
-- table was written at every start and never read; it is replaced.
DROP TABLE jobs;

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    village TEXT NOT NULL,
    title TEXT NOT NULL,
    holder TEXT NOT NULL,
    monthly_wage_fen BIGINT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_until TEXT,
    -- file (the deployment file), web (the form).
    origin TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE INDEX jobs_by_village ON jobs (village, id);

-- Every change to a job: who, when, what (added, ended) and its detail.
CREATE TABLE job_changes (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job TEXT NOT NULL,
    village TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    who TEXT NOT NULL,
    what TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX job_changes_by_job ON job_changes (job, id);
