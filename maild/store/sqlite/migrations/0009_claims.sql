-- Several nodes on one database (issue 10): what each node is working on.

-- Named leases: one holder at a time (an IMAP mailbox's importer, the scheduler), until a time; a node
-- renews what it holds well before that, and a node that died loses it when the time passes.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    until      TEXT NOT NULL,
    taken_at   TEXT NOT NULL
);

-- Spool, outbox and notification-queue rows claimed by a node's worker, sender or expander (PostgreSQL: FOR UPDATE SKIP LOCKED, with a
-- lease so that a dead node's rows go to another). SQLite, one node by nature, leaves them empty.
ALTER TABLE inbound ADD COLUMN claimed_by TEXT;
ALTER TABLE inbound ADD COLUMN claimed_until TEXT;
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_until TEXT;
ALTER TABLE notify_queue ADD COLUMN claimed_by TEXT;
ALTER TABLE notify_queue ADD COLUMN claimed_until TEXT;
