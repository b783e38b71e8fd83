-- IMAP import (issue 3): what was imported from which mailbox folder, and what is left to do there.

-- Per account and folder: the UIDVALIDITY we know and the highest UID committed to the spool.
CREATE TABLE imap_folders (
    account      TEXT NOT NULL,
    folder       TEXT NOT NULL,
    uidvalidity  INTEGER NOT NULL,
    last_uid     INTEGER NOT NULL DEFAULT 0,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (account, folder)
);

-- Messages committed to the spool whose after-import action (flag, move, delete) is not yet done:
-- written in the same transaction as the spool rows, so a crash in between is finished on restart.
CREATE TABLE imap_pending (
    account      TEXT NOT NULL,
    folder       TEXT NOT NULL,
    uidvalidity  INTEGER NOT NULL,
    uid          INTEGER NOT NULL,
    PRIMARY KEY (account, folder, uidvalidity, uid)
);

-- What `ticketd imap status` and the web view show, per account.
CREATE TABLE imap_status (
    account        TEXT PRIMARY KEY,
    state          TEXT NOT NULL,          -- starting | connected | idle | backoff | login_failed | error
    connected      INTEGER NOT NULL DEFAULT 0,
    last_sync      TEXT,
    last_error     TEXT,
    last_error_at  TEXT,
    next_try_at    TEXT,
    capabilities   TEXT NOT NULL DEFAULT '',
    updated_at     TEXT NOT NULL
);

-- One spool row per IMAP message: source_ref is account/folder/uidvalidity/uid.
CREATE UNIQUE INDEX inbound_imap_ref ON inbound (source_ref) WHERE source = 'imap';
