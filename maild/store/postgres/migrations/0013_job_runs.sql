-- The scheduler's jobs (issue 11): when each last ran, on which node, as of which time, and what it did.
-- The due state of the work itself lives in the tables the jobs look at (a ticket's status and times).
CREATE TABLE job_runs (
    name         TEXT PRIMARY KEY,
    node         TEXT NOT NULL DEFAULT '',
    started_at   TEXT NOT NULL DEFAULT '',
    finished_at  TEXT NOT NULL DEFAULT '',
    as_of        TEXT NOT NULL DEFAULT '',
    result       TEXT NOT NULL DEFAULT '{}',
    error        TEXT NOT NULL DEFAULT '',
    runs         INTEGER NOT NULL DEFAULT 0
);
