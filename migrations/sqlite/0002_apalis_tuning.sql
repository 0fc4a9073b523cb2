-- apalis-sqlite 1.0's ack query finds rows by `lock_by` through `LIdx`, which indexes every
-- row a worker ever handled: each ack re-reads them all and a long-running worker slows
-- down quadratically (APALIS-NOTES 15; measured 148 -> 89 jobs/s). A partial index over the
-- rows actually in flight keeps lookups by worker cheap; the ack then uses the primary key.
DROP INDEX IF EXISTS LIdx;
CREATE INDEX IF NOT EXISTS slakeeper_jobs_lock_by_active ON Jobs (lock_by)
    WHERE status IN ('Queued', 'Running');
