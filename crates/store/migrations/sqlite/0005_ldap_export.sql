-- LDAP export (crates/ldap): what ucbridge wrote to the directory for each local user, so
-- an incremental export touches only users whose entry would change, a renamed entry can be
-- found again, and removal deletes only entries ucbridge itself added.
-- Times are milliseconds since the Unix epoch; booleans are 0/1.

CREATE TABLE ldap_export_entries (
    -- users.id. No foreign key on purpose: the row must outlive a deleted user so that
    -- the next export can still find and remove that user's entry.
    user_id BIGINT PRIMARY KEY,
    -- The username when last exported (for reports once the user is gone).
    username TEXT NOT NULL,
    dn TEXT NOT NULL,
    -- SHA-256 over the exported attribute values (and the DN).
    fingerprint TEXT NOT NULL,
    -- 1 when ucbridge added the entry; 0 when the entry existed and was only updated.
    created BIGINT NOT NULL,
    exported_at BIGINT NOT NULL
);
CREATE INDEX ldap_export_entries_dn ON ldap_export_entries (dn);

CREATE TABLE ldap_export_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'incremental' or 'resynchronize'.
    mode TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    -- 'running', then 'ok', 'partial' (some users failed) or 'failed'.
    status TEXT NOT NULL,
    added BIGINT NOT NULL DEFAULT 0,
    modified BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0,
    unchanged BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    message TEXT
);
-- At most one running export, even across nodes sharing a PostgreSQL database.
CREATE UNIQUE INDEX ldap_export_runs_one_running ON ldap_export_runs (status)
    WHERE status = 'running';
