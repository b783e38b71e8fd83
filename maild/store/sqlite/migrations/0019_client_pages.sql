-- The client's pages (issue 13). A link in client mail is per ticket and per recipient: a random key (only
-- its hash is kept), an expiry, and a revocation by staff. Visiting it starts a client session tied to the
-- link, so that revoking the link ends the session too. Ratings of staff replies (1-5), by the client.
CREATE TABLE client_links (
    id          INTEGER PRIMARY KEY,
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    recipient   TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT NOT NULL DEFAULT '',
    revoked_at  TEXT NOT NULL DEFAULT '',
    revoked_by  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX client_links_ticket ON client_links (ticket_id, recipient);
CREATE INDEX client_links_expiry ON client_links (expires_at);
CREATE INDEX client_links_recipient ON client_links (recipient, revoked_at);

CREATE TABLE client_sessions (
    token_hash  TEXT PRIMARY KEY,
    link_id     INTEGER NOT NULL REFERENCES client_links (id) ON DELETE CASCADE,
    csrf        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX client_sessions_link ON client_sessions (link_id);
CREATE INDEX client_sessions_expiry ON client_sessions (expires_at);

CREATE TABLE reply_ratings (
    message_id  INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    staff_id    INTEGER REFERENCES staff (id) ON DELETE SET NULL,
    rating      INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    rated_by    TEXT NOT NULL,
    rated_at    TEXT NOT NULL
);
CREATE INDEX reply_ratings_when ON reply_ratings (rated_at);
CREATE INDEX feedback_answered ON feedback (answered_at);
-- A ticket's family (it and the tickets merged into it, followed down) and a recipient's tickets as a CC
-- recipient, without reading every ticket or every CC row.
CREATE INDEX tickets_merged_into ON tickets (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX cc_recipients_address ON cc_recipients (address);
