-- Keys the engine generates for itself (issue 18): the acknowledge-link key of an install
-- that configured none. Kept in the database so every process on it signs and checks the
-- same links; the first start inserts it, a concurrent start's insert is ignored and both
-- read the one row.
CREATE TABLE sk_keys (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
