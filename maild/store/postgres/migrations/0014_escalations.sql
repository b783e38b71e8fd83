-- Escalation rules and response targets (issue 11): when each side last wrote, when a person last changed the ticket (a reply,
-- an option change: what lets a rule fire again; the system's own changes do not count), and which rule
-- fired on which ticket when.
ALTER TABLE tickets ADD COLUMN last_client_reply_at TEXT NOT NULL DEFAULT '';
ALTER TABLE tickets ADD COLUMN last_staff_reply_at TEXT NOT NULL DEFAULT '';
-- Counts a person's changes: a rule fired at count N fires again once the count has moved on (a counter,
-- not a time: clocks of nodes, and runs "as if" at another time, cannot reorder it).
ALTER TABLE tickets ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
-- Response targets: when staff first answered, when the ticket was last closed ('' while open).
ALTER TABLE tickets ADD COLUMN first_staff_reply_at TEXT NOT NULL DEFAULT '';
ALTER TABLE tickets ADD COLUMN closed_at TEXT NOT NULL DEFAULT '';
UPDATE tickets SET
    closed_at = CASE WHEN status = 'Closed' THEN updated_at ELSE '' END,
    first_staff_reply_at = coalesce((SELECT min(m.created_at) FROM messages m
                                     WHERE m.ticket_id = tickets.id AND m.kind = 'staff_reply'), ''),
    last_client_reply_at = coalesce((SELECT max(m.created_at) FROM messages m
                                     WHERE m.ticket_id = tickets.id AND m.kind = 'reply'), ''),
    last_staff_reply_at = coalesce((SELECT max(m.created_at) FROM messages m
                                    WHERE m.ticket_id = tickets.id AND m.kind = 'staff_reply'), '');

CREATE TABLE escalations_fired (
    ticket_id  BIGINT NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    rule       TEXT NOT NULL,
    fired_at   TEXT NOT NULL,
    seq        INTEGER NOT NULL DEFAULT 0,    -- the ticket's change_seq when it fired
    PRIMARY KEY (ticket_id, rule)
);
