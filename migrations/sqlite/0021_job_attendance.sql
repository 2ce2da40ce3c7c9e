-- Attendance of a public-welfare job's holder in a month (days worked of days required, or a
-- score out of 100), recorded by the village's accountant in the browser; it replaces the
-- deployment file's record of the same job and month, and the month's wage is prorated by it.
CREATE TABLE job_attendance (
    job TEXT NOT NULL,
    month TEXT NOT NULL,
    village TEXT NOT NULL,
    worked BIGINT NOT NULL,
    required BIGINT NOT NULL,
    recorded_ms BIGINT NOT NULL,
    recorded_by TEXT NOT NULL,
    PRIMARY KEY (job, month)
);
CREATE INDEX job_attendance_by_village ON job_attendance (village, month);
