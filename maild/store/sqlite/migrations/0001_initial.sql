-- ticketd schema, version 1. Portable SQL where it costs nothing (a PostgreSQL backend is planned):
-- INTEGER PRIMARY KEY ids, TEXT timestamps in ISO 8601 UTC, JSON kept as TEXT.

CREATE TABLE departments (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

-- The spool: every accepted message, committed before it is acknowledged.
CREATE TABLE inbound (
    id               INTEGER PRIMARY KEY,
    received_at      TEXT NOT NULL,
    source           TEXT NOT NULL,          -- smtp | lmtp | pipe | ingest | imap
    source_ref       TEXT,                   -- where it came from: a file, an IMAP account/folder/uid
    peer             TEXT,
    envelope_from    TEXT,
    envelope_to      TEXT NOT NULL,          -- JSON list of addresses
    department_hint  TEXT,                   -- department for mail whose recipients match none
    size             INTEGER NOT NULL,
    raw              BLOB NOT NULL,
    state            TEXT NOT NULL DEFAULT 'new',   -- new | done | failed
    attempts         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX inbound_state ON inbound (state, id);

CREATE TABLE tickets (
    id             INTEGER PRIMARY KEY,
    tid            TEXT NOT NULL UNIQUE,     -- the public, random ticket number
    subject        TEXT NOT NULL,
    status         TEXT NOT NULL,
    priority       TEXT NOT NULL,
    department_id  INTEGER NOT NULL REFERENCES departments (id),
    client_email   TEXT NOT NULL,
    client_name    TEXT NOT NULL DEFAULT '',
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    last_reply_at  TEXT NOT NULL,
    merged_into    INTEGER REFERENCES tickets (id)
);
CREATE INDEX tickets_status ON tickets (status, last_reply_at);
CREATE INDEX tickets_client ON tickets (client_email);

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    ticket_id     INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,             -- reply | note | staff_reply
    author_email  TEXT NOT NULL,
    author_name   TEXT NOT NULL DEFAULT '',
    badge         TEXT NOT NULL DEFAULT 'Guest',
    subject       TEXT NOT NULL DEFAULT '',
    body          TEXT NOT NULL,             -- what the thread shows
    body_full     TEXT NOT NULL,             -- the whole decoded text, before quote stripping
    body_html     TEXT,                      -- sanitised HTML, when the mail had some
    message_id    TEXT,
    inbound_id    INTEGER REFERENCES inbound (id),
    created_at    TEXT NOT NULL
);
CREATE INDEX messages_ticket ON messages (ticket_id, id);

CREATE TABLE attachments (
    id            INTEGER PRIMARY KEY,
    message_id    INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    filename      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,             -- the file is attachments/<sha[:2]>/<sha>
    content_id    TEXT,
    inline        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX attachments_message ON attachments (message_id);
CREATE INDEX attachments_sha256 ON attachments (sha256);

-- Every Message-ID we received or sent for a ticket: In-Reply-To/References are looked up here.
CREATE TABLE mail_ids (
    message_id  TEXT NOT NULL,
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    direction   TEXT NOT NULL,               -- in | out
    PRIMARY KEY (message_id, ticket_id)
);

-- Ticket events, in order: what notifications and the ticket's Log tab follow.
CREATE TABLE ticket_log (
    id         INTEGER PRIMARY KEY,
    ticket_id  INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    event      TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX ticket_log_ticket ON ticket_log (ticket_id, id);

-- The mail import log: exactly one row, one outcome, per spooled message.
CREATE TABLE import_log (
    id             INTEGER PRIMARY KEY,
    inbound_id     INTEGER NOT NULL UNIQUE REFERENCES inbound (id),
    processed_at   TEXT NOT NULL,
    from_addr      TEXT NOT NULL DEFAULT '',
    from_name      TEXT NOT NULL DEFAULT '',
    subject        TEXT NOT NULL DEFAULT '',
    message_id     TEXT NOT NULL DEFAULT '',
    outcome        TEXT NOT NULL,            -- new_ticket | reply | note | duplicate | blocked | failed
    reason         TEXT NOT NULL DEFAULT '', -- for blocked: the guard's reason
    detail         TEXT NOT NULL DEFAULT '', -- for failed: the traceback; otherwise notes
    ticket_id      INTEGER REFERENCES tickets (id) ON DELETE SET NULL,
    department_id  INTEGER REFERENCES departments (id),
    dedupe_key     TEXT NOT NULL DEFAULT '',
    imported_by    TEXT,
    imported_at    TEXT
);
CREATE INDEX import_log_outcome ON import_log (outcome, id);
CREATE INDEX import_log_dedupe ON import_log (dedupe_key);
CREATE INDEX import_log_ticket ON import_log (ticket_id);
