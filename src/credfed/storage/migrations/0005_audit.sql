-- credfed SQLite schema 5: the audit trail (credfed.audit).
--
-- Applied by credfed.storage.sqlite inside one transaction, which also sets
-- PRAGMA user_version; so no BEGIN/COMMIT here. Times are integer
-- microseconds since the Unix epoch (UTC).

-- One row per audited call or local command, hash-chained: hash =
-- SHA-256(prev_hash || canonical JSON of the record's fields), prev_hash =
-- the hash of the record seq - 1 (32 zero bytes for seq 1). Never a
-- holder's name, birth date or other attribute: subjects are ids.
CREATE TABLE audit_log (
    seq         INTEGER NOT NULL PRIMARY KEY,  -- 1, 2, 3 ... in the order of writing
    at          INTEGER NOT NULL,
    client_id   TEXT    NOT NULL,
    client_name TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    country     TEXT,
    action      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,              -- JSON array of ids
    count       INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    prev_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL
);

-- Which records name a subject: serves `credfed access-log` (a holder's
-- view of who checked a credential) without a scan of the whole trail.
-- Derived from audit_log.subject; `credfed audit verify` checks it matches.
CREATE TABLE audit_subjects (
    subject TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (subject, seq)
) WITHOUT ROWID;

-- The chain stays one line: a new record must follow the newest one and
-- link to its hash (defence in depth; the store builds it that way).
CREATE TRIGGER audit_log_linear BEFORE INSERT ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log: a record must follow the newest and link to its hash')
    WHERE NEW.seq IS NOT coalesce((SELECT max(seq) FROM audit_log), 0) + 1
       OR NEW.prev_hash IS NOT coalesce(
              (SELECT hash FROM audit_log WHERE seq = NEW.seq - 1), zeroblob(32));
END;

-- The trail is append-only: refuse any rewrite, whoever issues it.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_subjects_no_update BEFORE UPDATE ON audit_subjects
BEGIN
    SELECT RAISE(ABORT, 'audit_subjects is append-only');
END;

CREATE TRIGGER audit_subjects_no_delete BEFORE DELETE ON audit_subjects
BEGIN
    SELECT RAISE(ABORT, 'audit_subjects is append-only');
END;
