-- Mail read right (issue 9): the S/MIME and PGP signature parts of a message, recorded as signatures on
-- it rather than judged (and dropped) as attachments. Their bytes, and the exact signed bytes a check
-- needs, stay in the raw mail (inbound.raw of the message's inbound_id).

CREATE TABLE message_signatures (
    id            INTEGER PRIMARY KEY,
    message_id    INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,             -- smime | pgp
    content_type  TEXT NOT NULL,             -- as the mail labelled the part
    filename      TEXT NOT NULL DEFAULT '',  -- as the mail named it (shown, never used on disk)
    size          INTEGER NOT NULL
);
CREATE INDEX message_signatures_message ON message_signatures (message_id);
