-- Directory sync: the CUCM end-user snapshot (stage 1), ucbridge's users (stage 2),
-- sync runs and their audit log. Times are milliseconds since the Unix epoch; booleans
-- are 0/1, so the same queries serve SQLite and PostgreSQL.

CREATE TABLE snapshot_state (
    source TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reason TEXT,
    source_updated_at BIGINT,
    last_full_refresh_at BIGINT,
    refresh_started_at BIGINT,
    refresh_owner TEXT,
    users_count BIGINT NOT NULL DEFAULT 0,
    change_queue_id TEXT,
    next_change_id BIGINT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE cucm_users (
    uuid TEXT PRIMARY KEY,
    userid TEXT NOT NULL,
    first_name TEXT,
    middle_name TEXT,
    last_name TEXT,
    display_name TEXT,
    mailid TEXT,
    telephone_number TEXT,
    primary_extension TEXT,
    primary_extension_partition TEXT,
    department TEXT,
    manager TEXT,
    title TEXT,
    mobile_number TEXT,
    home_number TEXT,
    pager_number TEXT,
    directory_uri TEXT,
    status BIGINT,
    associated_devices TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE INDEX cucm_users_userid ON cucm_users (userid);

-- Filled by a full refresh, swapped into cucm_users only when the refresh completed.
CREATE TABLE cucm_users_staging (
    uuid TEXT PRIMARY KEY,
    userid TEXT NOT NULL,
    first_name TEXT,
    middle_name TEXT,
    last_name TEXT,
    display_name TEXT,
    mailid TEXT,
    telephone_number TEXT,
    primary_extension TEXT,
    primary_extension_partition TEXT,
    department TEXT,
    manager TEXT,
    title TEXT,
    mobile_number TEXT,
    home_number TEXT,
    pager_number TEXT,
    directory_uri TEXT,
    status BIGINT,
    associated_devices TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL,
    first_name TEXT,
    last_name TEXT,
    display_name TEXT,
    email TEXT,
    aliases TEXT NOT NULL DEFAULT '[]',
    extension TEXT,
    department TEXT,
    office TEXT,
    title TEXT,
    mobile TEXT,
    pager TEXT,
    manager TEXT,
    directory_uri TEXT,
    device_name TEXT,
    password_hash TEXT,
    source TEXT NOT NULL DEFAULT 'local',
    source_key TEXT,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_username ON users (lower(username));
CREATE UNIQUE INDEX users_source_key ON users (source, source_key) WHERE source_key IS NOT NULL;

CREATE TABLE sync_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    dry_run BIGINT NOT NULL,
    status TEXT NOT NULL,
    message TEXT,
    creates BIGINT NOT NULL DEFAULT 0,
    updates BIGINT NOT NULL DEFAULT 0,
    disables BIGINT NOT NULL DEFAULT 0,
    deletes BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    plan TEXT
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT REFERENCES sync_runs (id),
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    username TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX audit_log_run ON audit_log (run_id);
