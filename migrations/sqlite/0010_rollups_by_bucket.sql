-- Fleet-wide reads of one period since a moment (the fleet page's energy today, across every
-- device) find their rows through this index instead of scanning every device's rollups.
CREATE INDEX rollups_by_period_bucket ON rollups (period_s, bucket_ms);
