-- credfed SQLite schema 7: the partner country a peer token was issued to.
--
-- Applied by credfed.storage.sqlite inside one transaction, which also sets
-- PRAGMA user_version; so no BEGIN/COMMIT here.

-- Two-letter country of the partner a `peer` client was issued to: on the
-- mutual-TLS federation port its token works only with a certificate of
-- that partner's CA. NULL for other roles, and for peer clients created
-- before this column (refused on the federation port until recreated).
ALTER TABLE clients ADD COLUMN partner TEXT;
