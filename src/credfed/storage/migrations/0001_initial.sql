-- credfed SQLite schema 1.
--
-- Applied by credfed.storage.sqlite inside one transaction, which also sets
-- PRAGMA user_version; so no BEGIN/COMMIT here. Times are integer
-- microseconds since the Unix epoch (UTC); dates are ISO-8601 text.

CREATE TABLE clients (
    client_id  TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,           -- str(Role): admin, verifier, peer, issuer:<id>
    token_hash BLOB    NOT NULL UNIQUE,    -- SHA-256 of the token; the lookup key
    created_at INTEGER NOT NULL
);

CREATE TABLE issuers (
    issuer_id TEXT NOT NULL PRIMARY KEY,
    name      TEXT NOT NULL,
    sectors   TEXT NOT NULL,               -- JSON array of sector codes
    status    TEXT NOT NULL
);

CREATE TABLE credentials (
    credential_id       TEXT    NOT NULL PRIMARY KEY,
    issuer_id           TEXT    NOT NULL REFERENCES issuers (issuer_id),
    family_key          TEXT    NOT NULL,
    birth_date          TEXT    NOT NULL,
    valid_until         TEXT,
    supersedes          TEXT,
    -- The signed record, kept byte for byte.
    record_payload      BLOB    NOT NULL,
    record_payload_type TEXT    NOT NULL,
    record_key_id       TEXT    NOT NULL,
    record_signature    BLOB    NOT NULL,
    -- Current status (what the newest log entry says).
    status              TEXT    NOT NULL,
    reason              TEXT    NOT NULL,
    effective_at        INTEGER NOT NULL,
    suspended_until     TEXT,
    appeal_case_ref     TEXT,
    superseded_by       TEXT,
    last_entry_index    INTEGER NOT NULL
);

-- Serves the foreign key and per-issuer listings.
CREATE INDEX credentials_by_issuer ON credentials (issuer_id);

-- Leaf i of the status log, exact bytes. Leaves are contiguous from 0, so
-- the log size is max(idx) + 1, an O(log n) lookup on the rowid.
CREATE TABLE log_leaves (
    idx  INTEGER NOT NULL PRIMARY KEY,
    leaf BLOB    NOT NULL
);

-- Perfect Merkle subtrees. node_key packs (level, index) as
-- level << 56 | index, so a batch of ids is one IN list on the rowid: measured
-- faster than a (level, idx) composite key, whose row-value IN (VALUES ...)
-- form even falls back to a full scan.
CREATE TABLE log_nodes (
    node_key INTEGER NOT NULL PRIMARY KEY,
    hash     BLOB    NOT NULL
);

CREATE TABLE checkpoints (
    tree_size    INTEGER NOT NULL PRIMARY KEY,
    origin       TEXT    NOT NULL,
    root_hash    BLOB    NOT NULL,
    timestamp    INTEGER NOT NULL,
    -- The signed envelope, kept byte for byte.
    payload      BLOB    NOT NULL,
    payload_type TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    signature    BLOB    NOT NULL
);

-- The log and its checkpoints are append-only: refuse any rewrite, whoever
-- issues it (a bug, a maintenance script, another tool on the file).
CREATE TRIGGER log_leaves_no_update BEFORE UPDATE ON log_leaves
BEGIN
    SELECT RAISE(ABORT, 'log_leaves is append-only');
END;

CREATE TRIGGER log_leaves_no_delete BEFORE DELETE ON log_leaves
BEGIN
    SELECT RAISE(ABORT, 'log_leaves is append-only');
END;

CREATE TRIGGER log_nodes_no_update BEFORE UPDATE ON log_nodes
BEGIN
    SELECT RAISE(ABORT, 'log_nodes is append-only');
END;

CREATE TRIGGER log_nodes_no_delete BEFORE DELETE ON log_nodes
BEGIN
    SELECT RAISE(ABORT, 'log_nodes is append-only');
END;

CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints is append-only');
END;

CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints is append-only');
END;
