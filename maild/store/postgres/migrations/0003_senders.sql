-- Mail safety (issue 4); see the SQLite migration of the same number.

CREATE TABLE banned_senders (
    pattern     TEXT PRIMARY KEY,
    reason      TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);

CREATE TABLE bounced_addresses (
    address      TEXT PRIMARY KEY,
    status       TEXT NOT NULL,
    diagnostic   TEXT NOT NULL DEFAULT '',
    ticket_id    BIGINT REFERENCES tickets (id) ON DELETE SET NULL,
    bounces      INTEGER NOT NULL DEFAULT 1,
    first_at     TEXT NOT NULL,
    last_at      TEXT NOT NULL
);
