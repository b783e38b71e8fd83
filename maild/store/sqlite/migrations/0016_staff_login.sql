-- Staff log in to the web view (issue 12): an argon2 hash of their password ('' = no password set: no
-- login), and a switch that turns an account off without deleting its history.
ALTER TABLE staff ADD COLUMN password_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE staff ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
