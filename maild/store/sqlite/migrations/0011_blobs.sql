-- Attachment bytes in the database (issue 10), for nodes without a shared filesystem ([attachments] store =
-- "database"; the default keeps them as files under the state directory). Content-addressed like the files:
-- one row per chunk of a blob; chunk 0, written last, carries the size and the chunk count, so a blob is
-- there only once it is whole (a crash mid-write leaves chunks without a chunk 0, collected later).

CREATE TABLE blobs (
    sha256      TEXT NOT NULL,
    chunk       INTEGER NOT NULL,
    data        BLOB NOT NULL,
    size        INTEGER NOT NULL DEFAULT 0,
    chunks      INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (sha256, chunk)
);
CREATE INDEX blobs_created ON blobs (chunk, created_at);
