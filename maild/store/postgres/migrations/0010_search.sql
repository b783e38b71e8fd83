-- Keyword search over tickets' messages (issue 10); see the SQLite migration of the same number. The
-- 'simple' configuration (no stemming, as SQLite's unicode61) over the text with its accents removed by the
-- unaccent extension where the server has it (the identity where it has not). An expression index, kept
-- by PostgreSQL in the transaction that writes the message.

DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS unaccent;
        EXECUTE 'CREATE FUNCTION ticketd_fold(TEXT) RETURNS TEXT LANGUAGE SQL IMMUTABLE PARALLEL SAFE'
                ' AS $f$ SELECT lower(public.unaccent(''public.unaccent''::regdictionary, $1)) $f$';
    EXCEPTION WHEN OTHERS THEN
        EXECUTE 'CREATE FUNCTION ticketd_fold(TEXT) RETURNS TEXT LANGUAGE SQL IMMUTABLE PARALLEL SAFE'
                ' AS $f$ SELECT lower($1) $f$';
    END;
END
$$;

-- Letters and digits only, as SQLite's tokenizer sees them: PostgreSQL's parser would otherwise keep an
-- address, a URL or a path as one token, and "john" would not find john@example.com.
CREATE FUNCTION ticketd_words(TEXT) RETURNS TEXT LANGUAGE SQL IMMUTABLE PARALLEL SAFE
    AS $$ SELECT regexp_replace(ticketd_fold($1), '[^[:alnum:]]+', ' ', 'g') $$;

CREATE INDEX messages_search ON messages
    USING gin (to_tsvector('simple', ticketd_words(coalesce(subject, '') || ' ' || body)));
