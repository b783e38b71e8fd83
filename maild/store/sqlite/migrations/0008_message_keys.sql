-- Idempotence by a unique constraint (issue 10): the first handling of a message (its dedupe key: the
-- Message-ID and body hash) claims the key in the message's own transaction; the same message processed
-- again, by this node or another at the same moment, finds the key taken and is a duplicate. A message
-- that failed claims nothing (its transaction rolled back), so reprocessing it is not a duplicate.

CREATE TABLE message_keys (
    dedupe_key  TEXT PRIMARY KEY,
    inbound_id  INTEGER NOT NULL REFERENCES inbound (id)
);

-- What earlier versions handled (duplicates and failures do not count), first handling first.
INSERT INTO message_keys (dedupe_key, inbound_id)
    SELECT dedupe_key, min(inbound_id) FROM import_log
    WHERE dedupe_key != '' AND outcome NOT IN ('duplicate', 'failed') GROUP BY dedupe_key;
