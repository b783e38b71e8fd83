-- The search index's function (0010) in PL/pgSQL instead of SQL: the same result, at a third less of the
-- cost of writing a message. unaccent(regdictionary, text) is only STABLE, so the SQL function could not
-- be inlined into the index expression, and PostgreSQL planned its body again for every INSERT (~0.1 ms
-- a message, measured with pg_stat_statements); a PL/pgSQL function keeps its plan for the session. The
-- index needs no rebuilding: every value stays what it was.

DO $$
DECLARE
    schema_name TEXT := (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                         WHERE e.extname = 'unaccent');
BEGIN
    IF schema_name IS NOT NULL THEN
        EXECUTE format('CREATE OR REPLACE FUNCTION ticketd_words(TEXT) RETURNS TEXT LANGUAGE plpgsql IMMUTABLE'
                       ' PARALLEL SAFE AS $f$ BEGIN RETURN pg_catalog.regexp_replace(pg_catalog.lower('
                       '%I.unaccent(%L::regdictionary, $1)), ''[^[:alnum:]]+'', '' '', ''g''); END $f$',
                       schema_name, schema_name || '.unaccent');
    ELSE
        CREATE OR REPLACE FUNCTION ticketd_words(TEXT) RETURNS TEXT LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
            AS $f$ BEGIN RETURN pg_catalog.regexp_replace(pg_catalog.lower($1), '[^[:alnum:]]+', ' ', 'g'); END $f$;
    END IF;
END
$$;
