-- Notifications, step one: the events a change caused, written in the change's own transaction (so they
-- exist exactly when it committed). Expanding them into mail (recipients, rendering: notify/follow.py)
-- happens right after, outside the write lock, in one short transaction that writes the outbox rows and
-- takes these rows out; a crash in between leaves them here for the next expansion, never lost or doubled.

CREATE TABLE notify_queue (
    id          INTEGER PRIMARY KEY,
    ticket_id   INTEGER REFERENCES tickets (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    event       TEXT NOT NULL               -- the Event as JSON (desk/events.py)
);
