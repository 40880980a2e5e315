-- No role but the schema's owner may create objects in `public` (the default
-- before PostgreSQL 15 let every role do so, which lets one plant functions
-- that outrank built-ins: CVE-2018-1058). A role that does not own `public`
-- gets a warning here, not an error; the server pins its search_path anyway.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
