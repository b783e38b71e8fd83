-- Keyword search over tickets' messages (issue 10); see the SQLite migration of the same number. The
-- 'simple' configuration (no stemming, as SQLite's unicode61) over the text folded to lower case, its
-- accents removed by the unaccent extension where the server has it, and cut to letters and digits (as
-- SQLite's tokenizer sees them: PostgreSQL's parser would keep an address, a URL or a path as one token,
-- and "john" would not find john@example.com). An expression index, kept by PostgreSQL in the transaction
-- that writes the message. The function names only what it calls with its schema: maintenance (ANALYZE,
-- autovacuum) evaluates index expressions with a search_path of pg_catalog alone.

DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS unaccent;
        EXECUTE format('CREATE FUNCTION ticketd_words(TEXT) RETURNS TEXT LANGUAGE SQL IMMUTABLE PARALLEL SAFE'
                       ' AS $f$ SELECT pg_catalog.regexp_replace(pg_catalog.lower(%I.unaccent(%L::regdictionary,'
                       ' $1)), ''[^[:alnum:]]+'', '' '', ''g'') $f$',
                       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                        WHERE e.extname = 'unaccent'),
                       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                        WHERE e.extname = 'unaccent') || '.unaccent');
    EXCEPTION WHEN OTHERS THEN
        EXECUTE 'CREATE FUNCTION ticketd_words(TEXT) RETURNS TEXT LANGUAGE SQL IMMUTABLE PARALLEL SAFE'
                ' AS $f$ SELECT pg_catalog.regexp_replace(pg_catalog.lower($1), ''[^[:alnum:]]+'', '' '', ''g'') $f$';
    END;
END
$$;

CREATE INDEX messages_search ON messages
    USING gin (to_tsvector('simple', ticketd_words(coalesce(subject, '') || ' ' || body)));
