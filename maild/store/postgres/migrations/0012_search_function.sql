-- The search index's function (0010) in PL/pgSQL instead of SQL: the same result, at less cost for every
-- message written. unaccent(regdictionary, text) is only STABLE, so the SQL function could not be inlined
-- into the index expression, and PostgreSQL planned its body again for every INSERT (found with
-- pg_stat_statements); a PL/pgSQL function keeps its plan for the session. The function keeps doing what
-- 0010 made it do (folding accents with unaccent, or not when the server had no unaccent then, even if it
-- has now): the index holds its values, so it needs no rebuilding.

DO $$
DECLARE
    schema_name TEXT := (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                         WHERE e.extname = 'unaccent');
    folds BOOLEAN := pg_catalog.pg_get_functiondef('ticketd_words(text)'::pg_catalog.regprocedure)
                     LIKE '%unaccent%';
BEGIN
    IF folds AND schema_name IS NOT NULL THEN
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
