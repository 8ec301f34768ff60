-- End users of the user page (issue #12 item 5): sessions of synced local users, kept
-- apart from admin sessions (another table, another key: a user session can never be read
-- as an admin one), and per user the first and last sign-in and the outcome of the last
-- WebPhone (third-party SIP device) ensure. Times are milliseconds since the Unix epoch.

-- A sign-in session of a local user; the cookie holds a random token, the table only its
-- SHA-256.
CREATE TABLE end_user_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The CUCM end user (AXL userid) the sign-in proved.
    cucm_userid TEXT NOT NULL,
    -- 'cucm_password' or 'sso'.
    method TEXT NOT NULL,
    -- Sent back in X-CSRF-Token on every unsafe request made with the cookie.
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX end_user_sessions_expiry ON end_user_sessions (expires_at);
CREATE INDEX end_user_sessions_user ON end_user_sessions (user_id);

CREATE TABLE end_user_state (
    user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    first_signin_at BIGINT NOT NULL,
    last_signin_at BIGINT NOT NULL,
    -- When the WebPhone was last ensured (NULL: never tried), and why it failed (NULL: it
    -- did not).
    webphone_checked_at BIGINT,
    webphone_problem TEXT
);
