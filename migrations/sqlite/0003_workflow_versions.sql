-- Pinned workflow versions (issue 9). A version is the SHA-256 of the files serving a
-- ticket needs (its workflow file, calendars.yaml, routes.yaml, the templates); the files
-- are kept here, as a JSON object of relative path -> text, so any worker can load the
-- version a ticket was opened under, whatever files it was started with.
CREATE TABLE sk_workflow_versions (
    version    TEXT PRIMARY KEY,
    workflow   TEXT NOT NULL,
    files      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- The version each ticket is served by. NULL for tickets opened before this migration:
-- `serve` pins them to the version of its files at its first start (see the README).
ALTER TABLE sk_tickets ADD COLUMN workflow_version TEXT;
