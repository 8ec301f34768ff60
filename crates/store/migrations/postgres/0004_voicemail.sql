-- Voicemail sync (CUC <-> IMAP): matched accounts, the IMAP folders that mirror CUC's
-- inbox/sent/deleted, and per message what each side looked like after the last sync.
-- Times are milliseconds since the Unix epoch; booleans 0/1 (same SQL on both backends).

CREATE TABLE voicemail_accounts (
    cuc_object_id TEXT PRIMARY KEY,
    cuc_alias TEXT NOT NULL,
    local_username TEXT NOT NULL,
    imap_user TEXT NOT NULL,
    last_sync_at BIGINT,
    last_success_at BIGINT,
    last_error TEXT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE INDEX voicemail_accounts_alias ON voicemail_accounts (cuc_alias);

-- Folder identity: RFC 8474 MAILBOXID when the server offers OBJECTID, otherwise
-- UIDVALIDITY (kept by RENAME, never reused for another mailbox of the user).
CREATE TABLE voicemail_folders (
    cuc_object_id TEXT NOT NULL,
    role TEXT NOT NULL,
    imap_name TEXT NOT NULL,
    mailbox_id TEXT,
    uid_validity BIGINT NOT NULL,
    highest_modseq BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (cuc_object_id, role)
);

CREATE TABLE voicemail_messages (
    cuc_object_id TEXT NOT NULL,
    cuc_message_id TEXT NOT NULL,
    cuc_folder TEXT NOT NULL,
    cuc_read BIGINT NOT NULL,
    imap_role TEXT,
    imap_uid_validity BIGINT,
    imap_uid BIGINT,
    imap_seen BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (cuc_object_id, cuc_message_id)
);
