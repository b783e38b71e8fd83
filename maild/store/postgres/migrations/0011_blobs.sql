-- Attachment bytes in the database (issue 10); see the SQLite migration of the same number.

CREATE TABLE blobs (
    sha256      TEXT NOT NULL,
    chunk       INTEGER NOT NULL,
    data        BYTEA NOT NULL,
    size        BIGINT NOT NULL DEFAULT 0,
    chunks      INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (sha256, chunk)
);
CREATE INDEX blobs_created ON blobs (chunk, created_at);
-- Attachments are written once and read seldom: no compression (images, archives are compressed already).
ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;
