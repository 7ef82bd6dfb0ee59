-- credfed SQLite schema 3: recognition rules.
--
-- Applied by credfed.storage.sqlite inside one transaction, which also sets
-- PRAGMA user_version; so no BEGIN/COMMIT here.

-- Every version of every recognition rule this node holds: its own (country
-- is this node's) and its partners' (received over federation, kept only
-- after their signature was checked). The signed envelope is kept byte for
-- byte; the current rule is the highest version of a (country, rule_id).
CREATE TABLE recognition_rules (
    country      TEXT    NOT NULL,
    rule_id      TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    payload      BLOB    NOT NULL,
    payload_type TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    signature    BLOB    NOT NULL,
    PRIMARY KEY (country, rule_id, version)
) WITHOUT ROWID;

-- Versions are history: never rewritten (a withdrawal is a new version).
CREATE TRIGGER recognition_rules_no_update BEFORE UPDATE ON recognition_rules
BEGIN
    SELECT RAISE(ABORT, 'recognition_rules is append-only');
END;

CREATE TRIGGER recognition_rules_no_delete BEFORE DELETE ON recognition_rules
BEGIN
    SELECT RAISE(ABORT, 'recognition_rules is append-only');
END;
