-- Identity (issue 4): client accounts and their people, registered users, staff, CC recipients.

CREATE TABLE clients (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

-- People of an account: its owner, its authorised users and its contacts (sub-accounts).
CREATE TABLE client_people (
    client_id  INTEGER NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    role       TEXT NOT NULL,            -- owner | user | contact
    PRIMARY KEY (client_id, email)
);
CREATE INDEX client_people_email ON client_people (email);

-- Users who can log in to the client area but belong to no account.
CREATE TABLE registered_users (
    email       TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);

CREATE TABLE staff (
    id          INTEGER PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL DEFAULT '',
    username    TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE cc_recipients (
    ticket_id  INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    address    TEXT NOT NULL,
    PRIMARY KEY (ticket_id, address)
);

ALTER TABLE tickets ADD COLUMN client_id INTEGER REFERENCES clients (id);
