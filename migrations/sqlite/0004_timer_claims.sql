-- Timers are fired straight from sk_timers (shell/engine/timers.rs) instead of through one
-- apalis job each: apalis' no-op drain measured 151-183 jobs/s on SQLite, far below what a
-- backlog after an outage needs. A firer takes due rows in `due` order, in batches, under
-- the tickets' locks; on PostgreSQL several workers first claim rows for a lease
-- (`claimed_until`, ms), so a killed worker's claims are taken over when it runs out.
DROP INDEX IF EXISTS sk_timers_promote;
ALTER TABLE sk_timers DROP COLUMN promoted;
ALTER TABLE sk_timers ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
CREATE INDEX sk_timers_due ON sk_timers (due, claimed_until);
-- Timer jobs of the earlier design: their timers are all in sk_timers and fire from there.
DELETE FROM Jobs WHERE job_type = 'slakeeper.timers' AND status IN ('Pending', 'Queued', 'Running', 'Failed');
