-- A username is one name in any case (`Admin` and `admin` are the same
-- account). Names that already differ only in case must be renamed by hand
-- first: the migration stops and lists them rather than choose for the operator.
DO $$
DECLARE
    clash text;
BEGIN
    SELECT pg_catalog.string_agg(names, '; ') INTO clash
    FROM (SELECT pg_catalog.string_agg(username, ', ' ORDER BY id) AS names
          FROM accounts_user
          GROUP BY pg_catalog.lower(username)
          HAVING pg_catalog.count(*) > 1) d;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'usernames that differ only in case must be renamed first: %', clash;
    END IF;
END $$;

CREATE UNIQUE INDEX accounts_user_username_lower_idx ON accounts_user (pg_catalog.lower(username));
