-- slakeeper's own tables (apalis keeps its Jobs/Workers tables and its own migration
-- history; ours is recorded in `slakeeper_migrations`). Times are Unix milliseconds.

-- One row per ticket: the pure core's state as JSON plus the columns queries filter on.
CREATE TABLE sk_tickets (
    id          TEXT PRIMARY KEY,
    workflow    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    priority    TEXT NOT NULL,
    category    TEXT,
    is_open     BIGINT NOT NULL,
    opened_at   BIGINT NOT NULL,
    resolved_at BIGINT,
    closed_at   BIGINT,
    last_at     BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    state       TEXT NOT NULL
);
CREATE INDEX sk_tickets_open ON sk_tickets (is_open, workflow, stage, priority);
CREATE INDEX sk_tickets_opened ON sk_tickets (opened_at);

-- Every accepted event, as received (the id makes ingestion idempotent). `status` is
-- `applied`, or `parked` while the ticket's opening event has not arrived.
CREATE TABLE sk_events (
    id          TEXT PRIMARY KEY,
    ticket      TEXT NOT NULL,
    type        TEXT NOT NULL,
    at          BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    status      TEXT NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX sk_events_ticket ON sk_events (ticket, at);

-- The ticket's history: events, timers scheduled / fired / dropped, notifications, notes.
CREATE TABLE sk_timeline (
    seq         BIGSERIAL PRIMARY KEY,
    ticket      TEXT NOT NULL,
    at          BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX sk_timeline_ticket ON sk_timeline (ticket, seq);

-- Pending timers: the durable mirror of the state's timer set. A timer due within the
-- promotion horizon gets its apalis job in the transaction that scheduled it (`promoted` = 1);
-- later ones are promoted shortly before they are due, so apalis' tables only ever hold
-- near-term jobs and polling stays cheap however many timers wait.
CREATE TABLE sk_timers (
    ticket       TEXT NOT NULL,
    key          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    due          BIGINT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    promoted     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (ticket, key)
);
CREATE INDEX sk_timers_promote ON sk_timers (promoted, due);

-- The outbox: one notification per (source, role); deliveries per channel and target.
CREATE TABLE sk_notifications (
    id         TEXT PRIMARY KEY,
    ticket     TEXT,
    workflow   TEXT NOT NULL,
    source     TEXT NOT NULL,
    role       TEXT NOT NULL,
    template   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    context    TEXT NOT NULL,
    at         BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX sk_notifications_ticket ON sk_notifications (ticket);

CREATE TABLE sk_deliveries (
    notification TEXT NOT NULL,
    channel      TEXT NOT NULL,
    target       TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    next_at      BIGINT,
    last_error   TEXT,
    sent_at      BIGINT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (notification, channel, target)
);
CREATE INDEX sk_deliveries_open ON sk_deliveries (next_at) WHERE status <> 'sent';

CREATE TABLE sk_attempts (
    notification TEXT NOT NULL,
    channel      TEXT NOT NULL,
    target       TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    outcome      TEXT NOT NULL,
    error        TEXT,
    PRIMARY KEY (notification, channel, target, attempt)
);

-- Counted facts (outcomes, scores, resolutions, call-backs...), the review report's source.
-- The id is the core's deterministic effect id, so a re-run never counts twice.
CREATE TABLE sk_facts (
    id       TEXT PRIMARY KEY,
    ticket   TEXT NOT NULL,
    workflow TEXT NOT NULL,
    priority TEXT NOT NULL,
    category TEXT,
    kind     TEXT NOT NULL,
    clock    TEXT,
    outcome  TEXT,
    value    BIGINT,
    at       BIGINT NOT NULL
);
CREATE INDEX sk_facts_report ON sk_facts (workflow, kind, at);

-- Review reports sent, one per workflow and period.
CREATE TABLE sk_reviews (
    workflow   TEXT NOT NULL,
    period_end BIGINT NOT NULL,
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workflow, period_end)
);

-- Short leases (e.g. which process exports the database-wide gauges).
CREATE TABLE sk_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
