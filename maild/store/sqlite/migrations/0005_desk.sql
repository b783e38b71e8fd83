-- The desk, notifications and the outbox (issue 8).

-- Staff: admin or not, a signature for replies, and which departments they work in and hear from.
ALTER TABLE staff ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;
ALTER TABLE staff ADD COLUMN signature TEXT NOT NULL DEFAULT '';

CREATE TABLE staff_departments (
    staff_id       INTEGER NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    department_id  INTEGER NOT NULL REFERENCES departments (id) ON DELETE CASCADE,
    member         INTEGER NOT NULL DEFAULT 0,   -- works the department's tickets
    notify         INTEGER NOT NULL DEFAULT 0,   -- wants its new-ticket and client-reply mail
    PRIMARY KEY (staff_id, department_id)
);
-- Staff added before this version replied to any ticket: they keep working in every department.
INSERT INTO staff_departments (staff_id, department_id, member, notify)
    SELECT s.id, d.id, 1, 0 FROM staff s CROSS JOIN departments d;

-- Tickets: who has it and who was asked to look; how outbound mail threads.
ALTER TABLE tickets ADD COLUMN assigned_to INTEGER REFERENCES staff (id) ON DELETE SET NULL;
ALTER TABLE tickets ADD COLUMN flagged_to INTEGER REFERENCES staff (id) ON DELETE SET NULL;
ALTER TABLE tickets ADD COLUMN root_message_id TEXT NOT NULL DEFAULT '';  -- first in every References
ALTER TABLE tickets ADD COLUMN thread_index TEXT NOT NULL DEFAULT '';     -- the client's last Outlook Thread-Index
CREATE INDEX tickets_flagged ON tickets (flagged_to);
CREATE INDEX tickets_assigned ON tickets (assigned_to);

ALTER TABLE messages ADD COLUMN staff_id INTEGER REFERENCES staff (id) ON DELETE SET NULL;

CREATE TABLE watchers (
    ticket_id  INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    staff_id   INTEGER NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    PRIMARY KEY (ticket_id, staff_id)
);

-- A CC recipient taken from a client's mail may be 'pending': it gets no ticket mail until staff confirm it.
ALTER TABLE cc_recipients ADD COLUMN state TEXT NOT NULL DEFAULT 'confirmed';   -- confirmed | pending
ALTER TABLE cc_recipients ADD COLUMN added_by TEXT NOT NULL DEFAULT '';

-- The outbox: one row per mail and recipient, written in the transaction of the change that caused it.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    ticket_id        INTEGER REFERENCES tickets (id) ON DELETE SET NULL,
    event            TEXT NOT NULL,              -- the event that caused it (admin_reply, ...), or test
    audience         TEXT NOT NULL,              -- client | staff
    automatic        INTEGER NOT NULL DEFAULT 1, -- carries Auto-Submitted; counts toward the per-address cap
    sender           TEXT NOT NULL,              -- the department address it comes from (VERP base)
    recipient        TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    subject          TEXT NOT NULL DEFAULT '',
    raw              BLOB NOT NULL,              -- the rendered message; the envelope is made at send time
    state            TEXT NOT NULL DEFAULT 'queued',   -- queued | sent | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    next_attempt_at  TEXT NOT NULL,
    sent_at          TEXT,
    last_error       TEXT NOT NULL DEFAULT '',   -- the server's answer or the connection error
    bounced_at       TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at, id);
CREATE INDEX outbox_recipient ON outbox (recipient, created_at);
CREATE INDEX outbox_ticket ON outbox (ticket_id, id);
