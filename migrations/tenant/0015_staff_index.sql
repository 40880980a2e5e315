-- Every room with logged-in members reads the tenant's staff (admins and
-- moderators, a handful of rows) every few seconds, so that a role given or
-- taken away in the database holds on open sockets: found by this index, not
-- by scanning every account.
CREATE INDEX accounts_user_staff_idx ON accounts_user (id) WHERE role IN ('admin', 'moderator');
