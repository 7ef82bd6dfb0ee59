-- credfed SQLite schema 6: the health monitor's write probe.
--
-- Applied by credfed.storage.sqlite inside one transaction, which also sets
-- PRAGMA user_version; so no BEGIN/COMMIT here. Times are integer
-- microseconds since the Unix epoch (UTC).

-- One row, rewritten every few seconds by the health monitor
-- (credfed.rpc.healthmon) to prove the database still takes a write: a
-- lock held by another process, a full disk or a read-only file shows
-- here before a registrar's call meets it. Holds no data of anyone.
CREATE TABLE health_probe (
    id        INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
);
