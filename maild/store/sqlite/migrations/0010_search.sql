-- Keyword search over tickets' messages (issue 10): FTS5 on SQLite (PostgreSQL: its own text search, see
-- that engine's migration of the same number). The index follows the messages table through triggers, so
-- it changes in the very transaction that writes a message. Tokens: Unicode letters and digits, case and
-- diacritics folded (unicode61), no stemming: mail comes in every language.

CREATE VIRTUAL TABLE messages_fts USING fts5(
    subject, body, content = 'messages', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, subject, body) VALUES (new.id, new.subject, new.body);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, body) VALUES ('delete', old.id, old.subject, old.body);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, body ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, body) VALUES ('delete', old.id, old.subject, old.body);
    INSERT INTO messages_fts (rowid, subject, body) VALUES (new.id, new.subject, new.body);
END;

INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
