-- Reads of one user's data stay indexed, whatever the number of users:
-- their voicemail account (the user's own page, GET /api/v1/users/{username}) and their
-- audit history (`ucbridge users show`, matched case-insensitively as usernames are).
CREATE INDEX voicemail_accounts_local_username ON voicemail_accounts (local_username);
CREATE INDEX audit_log_username ON audit_log (LOWER(username));
