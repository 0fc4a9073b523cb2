-- The at-risk list (issue 22). `risk_due` is the earliest `due` (epoch ms) among the
-- ticket's running clocks, a breached one's being the deadline it breached, so "due within
-- the window or already breached" is `risk_due <= now + window` and only those tickets'
-- states are read. NULL: no running clock. -1: not computed yet (rows saved before this
-- migration), read every time until the ticket is next saved.
ALTER TABLE sk_tickets ADD COLUMN risk_due BIGINT DEFAULT -1;
CREATE INDEX sk_tickets_risk_due ON sk_tickets (risk_due) WHERE risk_due IS NOT NULL;

-- The breach forecast reads the outcomes of one workflow, clock and priority over the last
-- days (`--risk-window`, 30 days by default).
CREATE INDEX sk_facts_forecast ON sk_facts (kind, workflow, clock, priority, at);
