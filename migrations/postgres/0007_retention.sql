-- Closing and retention (issue 21). The retention service deletes closed tickets a while
-- after `closed_at` and outcome facts a while after `at`, a bounded batch at a time: each
-- batch finds its rows through these indexes instead of scanning the tables.
CREATE INDEX sk_tickets_closed ON sk_tickets (closed_at) WHERE closed_at IS NOT NULL;
CREATE INDEX sk_facts_at ON sk_facts (at);

-- Delivery give-up: when the first real attempt was made (epoch ms). A held e-mail (no SMTP)
-- has not been tried, so its wait does not count; NULL until the first attempt (rows from
-- before this migration count from their next attempt).
ALTER TABLE sk_deliveries ADD COLUMN first_tried_at BIGINT;
