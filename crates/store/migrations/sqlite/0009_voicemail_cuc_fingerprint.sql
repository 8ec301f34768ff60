-- Cheaper reconcile (issue 17 item 4): CUC's per-folder MessageCount and USN as read just
-- before the last successful full read of the account's listings, and when that read was.
-- A reconcile that finds the same fingerprint (and unchanged IMAP HIGHESTMODSEQs) skips the
-- account; a full read is forced once the last one is older than `full_read_every`.

ALTER TABLE voicemail_accounts ADD COLUMN cuc_fingerprint TEXT;
ALTER TABLE voicemail_accounts ADD COLUMN cuc_full_read_at BIGINT;
