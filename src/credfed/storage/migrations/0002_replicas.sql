-- credfed SQLite schema 2: replicas of other origins' status logs.
--
-- Applied by credfed.storage.sqlite inside one transaction, which also sets
-- PRAGMA user_version; so no BEGIN/COMMIT here. Times are integer
-- microseconds since the Unix epoch (UTC). ``origin`` is the two-letter
-- country code of the log's origin.

-- Leaf i of an origin's log, exact bytes, contiguous from 0 per origin: the
-- replica size is max(idx) + 1 WHERE origin = ?, an O(log n) lookup on the
-- primary key. ``hash`` is its Merkle leaf hash (the level-0 node): kept in
-- the leaf's row rather than as a row of its own, which measurably speeds
-- up catching up with a partner's log.
CREATE TABLE replica_leaves (
    origin TEXT    NOT NULL,
    idx    INTEGER NOT NULL,
    leaf   BLOB    NOT NULL,
    hash   BLOB    NOT NULL,
    PRIMARY KEY (origin, idx)
) WITHOUT ROWID;

-- Perfect Merkle subtrees of level 1 and up of an origin's log; node_key
-- packs (level, index) as level << 56 | index, as in log_nodes.
CREATE TABLE replica_nodes (
    origin   TEXT    NOT NULL,
    node_key INTEGER NOT NULL,
    hash     BLOB    NOT NULL,
    PRIMARY KEY (origin, node_key)
) WITHOUT ROWID;

-- The index of each credential's newest entry in an origin's log; upserted,
-- only ever to a larger index.
CREATE TABLE replica_status (
    origin        TEXT    NOT NULL,
    credential_id TEXT    NOT NULL,
    idx           INTEGER NOT NULL,
    PRIMARY KEY (origin, credential_id)
) WITHOUT ROWID;

-- The replica's current checkpoint: one row per origin, replaced as the
-- replica advances.
CREATE TABLE replica_checkpoints (
    origin       TEXT    NOT NULL PRIMARY KEY,
    tree_size    INTEGER NOT NULL,
    root_hash    BLOB    NOT NULL,
    timestamp    INTEGER NOT NULL,
    -- The signed envelope, kept byte for byte.
    payload      BLOB    NOT NULL,
    payload_type TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    signature    BLOB    NOT NULL
);

-- The first proof that an origin forked its log; kept for good.
CREATE TABLE fork_evidence (
    origin      TEXT    NOT NULL PRIMARY KEY,
    evidence    BLOB    NOT NULL,
    recorded_at INTEGER NOT NULL
);

-- Replicated logs and fork evidence are append-only, like the own log.
CREATE TRIGGER replica_leaves_no_update BEFORE UPDATE ON replica_leaves
BEGIN
    SELECT RAISE(ABORT, 'replica_leaves is append-only');
END;

CREATE TRIGGER replica_leaves_no_delete BEFORE DELETE ON replica_leaves
BEGIN
    SELECT RAISE(ABORT, 'replica_leaves is append-only');
END;

CREATE TRIGGER replica_nodes_no_update BEFORE UPDATE ON replica_nodes
BEGIN
    SELECT RAISE(ABORT, 'replica_nodes is append-only');
END;

CREATE TRIGGER replica_nodes_no_delete BEFORE DELETE ON replica_nodes
BEGIN
    SELECT RAISE(ABORT, 'replica_nodes is append-only');
END;

CREATE TRIGGER fork_evidence_no_update BEFORE UPDATE ON fork_evidence
BEGIN
    SELECT RAISE(ABORT, 'fork_evidence is append-only');
END;

CREATE TRIGGER fork_evidence_no_delete BEFORE DELETE ON fork_evidence
BEGIN
    SELECT RAISE(ABORT, 'fork_evidence is append-only');
END;
