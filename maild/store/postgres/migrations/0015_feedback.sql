-- Feedback requests (issue 11): one per ticket, sent once it has been closed for a while in a department
-- that asks for feedback; the token is the one the client's link carries (the page comes with the web view).
CREATE TABLE feedback (
    ticket_id     BIGINT PRIMARY KEY REFERENCES tickets (id) ON DELETE CASCADE,
    token         TEXT NOT NULL UNIQUE,
    requested_at  TEXT NOT NULL,
    rating        INTEGER,
    comment       TEXT NOT NULL DEFAULT '',
    answered_at   TEXT NOT NULL DEFAULT ''
);
-- Tickets closed before this version are not asked (an upgrade must not mail every client ever served):
-- they are recorded as skipped (requested_at ''), under a random token like any other (never guessable).
INSERT INTO feedback (ticket_id, token, requested_at)
    SELECT id, 'skipped-' || md5(random()::text || clock_timestamp()::text || id::text) || md5(random()::text), '' FROM tickets WHERE status = 'Closed';
