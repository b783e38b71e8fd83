-- Mail safety (issue 4): banned senders and addresses that bounce permanently.

CREATE TABLE banned_senders (
    pattern     TEXT PRIMARY KEY,        -- an address, or *@domain
    reason      TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);

-- An address a delivery report said is permanently failing (5.x.x): we stop mailing it.
CREATE TABLE bounced_addresses (
    address      TEXT PRIMARY KEY,
    status       TEXT NOT NULL,
    diagnostic   TEXT NOT NULL DEFAULT '',
    ticket_id    INTEGER REFERENCES tickets (id) ON DELETE SET NULL,
    bounces      INTEGER NOT NULL DEFAULT 1,
    first_at     TEXT NOT NULL,
    last_at      TEXT NOT NULL
);
