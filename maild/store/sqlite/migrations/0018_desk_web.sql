-- The staff desk in the browser (issue 12): ticket tags, a related service (free text: a hostname or an
-- order number) and predefined replies.
ALTER TABLE tickets ADD COLUMN related_service TEXT NOT NULL DEFAULT '';

CREATE TABLE ticket_tags (
    ticket_id  INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    PRIMARY KEY (ticket_id, tag)
);
CREATE INDEX ticket_tags_tag ON ticket_tags (tag, ticket_id);

CREATE TABLE predefined_replies (
    id          INTEGER PRIMARY KEY,
    title       TEXT NOT NULL UNIQUE,
    body        TEXT NOT NULL,
    created_by  TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);

CREATE INDEX tickets_department ON tickets (department_id, status, last_reply_at);
CREATE INDEX tickets_last_reply ON tickets (last_reply_at);
