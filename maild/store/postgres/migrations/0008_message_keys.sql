-- Idempotence by a unique constraint (issue 10); see the SQLite migration of the same number.

CREATE TABLE message_keys (
    dedupe_key  TEXT PRIMARY KEY,
    inbound_id  BIGINT NOT NULL REFERENCES inbound (id)
);

-- What earlier versions handled (duplicates and failures do not count), first handling first.
INSERT INTO message_keys (dedupe_key, inbound_id)
    SELECT dedupe_key, min(inbound_id) FROM import_log
    WHERE dedupe_key != '' AND outcome NOT IN ('duplicate', 'failed') GROUP BY dedupe_key;
