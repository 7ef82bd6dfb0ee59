-- credfed SQLite schema 4: lifetimes of API clients (token expiry and revocation).
--
-- Applied by credfed.storage.sqlite inside one transaction, which also sets
-- PRAGMA user_version; so no BEGIN/COMMIT here. Times are integer
-- microseconds since the Unix epoch (UTC).

-- When the client's token stops working; NULL: never. Existing clients
-- keep working (NULL).
ALTER TABLE clients ADD COLUMN expires_at INTEGER;

-- When the client was revoked; NULL: not revoked. Set once: revoking
-- again keeps the first time.
ALTER TABLE clients ADD COLUMN revoked_at INTEGER;
