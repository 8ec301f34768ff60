-- The server (`ucbridge serve`): admin accounts, sessions and API tokens; settings edited
-- on the admin page (connections, rules), with secrets sealed by SecretBox; and the job
-- scheduler shared by several nodes (leases, schedules, claimed runs).
-- Times are milliseconds since the Unix epoch.

CREATE TABLE admin_accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    -- argon2id PHC string.
    password_hash TEXT NOT NULL,
    -- 'admin' or 'read_only'.
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A login session; the cookie holds a random token, the table only its SHA-256.
CREATE TABLE admin_sessions (
    token_hash TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    -- Sent back in X-CSRF-Token on every unsafe request made with the cookie.
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);

-- API tokens (Authorization: Bearer); only the SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);

-- Settings edited through the API: 'connection.cucm', 'rules.directory_sync', ...
-- `value` is JSON and never holds a secret; `secret` is SecretBox-sealed to `name`.
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    secret TEXT,
    secret_key_id TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);

-- One lease per job: the node holding an unexpired lease runs the job. `token` grows on
-- every change of holder (a fencing token). Expiry is compared with the database's clock,
-- so nodes' clocks need not agree.
CREATE TABLE job_leases (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Schedule and "run now" requests per job.
CREATE TABLE jobs (
    job TEXT PRIMARY KEY,
    -- 'every 15m' or a cron expression; NULL = only on request.
    schedule TEXT,
    enabled BIGINT NOT NULL,
    next_run_at BIGINT,
    run_requested_at BIGINT,
    run_requested_by TEXT,
    updated_at BIGINT NOT NULL
);

-- Runs of scheduled jobs. (job, slot) is unique: a slot is one due time or one "run now"
-- request, so even two nodes that both believe they hold the lease cannot run it twice.
CREATE TABLE job_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    slot TEXT NOT NULL,
    node TEXT NOT NULL,
    lease_token BIGINT NOT NULL,
    -- 'schedule' or 'manual'.
    trigger_kind TEXT NOT NULL,
    requested_by TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    -- 'running', 'succeeded', 'refused', 'failed', 'abandoned'.
    status TEXT NOT NULL,
    -- JSON: {"phase": "...", "done": n, "total": n}.
    progress TEXT,
    -- JSON summary of what the run did.
    result TEXT,
    error TEXT,
    UNIQUE (job, slot)
);
CREATE INDEX job_runs_recent ON job_runs (job, started_at);
