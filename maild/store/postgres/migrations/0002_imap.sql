-- IMAP import (issue 3); see the SQLite migration of the same number.

CREATE TABLE imap_folders (
    account      TEXT NOT NULL,
    folder       TEXT NOT NULL,
    uidvalidity  BIGINT NOT NULL,
    last_uid     BIGINT NOT NULL DEFAULT 0,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (account, folder)
);

CREATE TABLE imap_pending (
    account      TEXT NOT NULL,
    folder       TEXT NOT NULL,
    uidvalidity  BIGINT NOT NULL,
    uid          BIGINT NOT NULL,
    PRIMARY KEY (account, folder, uidvalidity, uid)
);

CREATE TABLE imap_status (
    account        TEXT PRIMARY KEY,
    state          TEXT NOT NULL,
    connected      INTEGER NOT NULL DEFAULT 0,
    last_sync      TEXT,
    last_error     TEXT,
    last_error_at  TEXT,
    next_try_at    TEXT,
    capabilities   TEXT NOT NULL DEFAULT '',
    updated_at     TEXT NOT NULL
);

CREATE UNIQUE INDEX inbound_imap_ref ON inbound (source_ref) WHERE source = 'imap';
