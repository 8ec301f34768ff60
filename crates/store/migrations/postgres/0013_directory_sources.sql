-- Directory sources (issue 15): any number of named sources of people, each `cucm` (one
-- CUCM cluster) or `ldap` (OpenLDAP or Active Directory). The CUCM snapshot that existed
-- before stays where it was (`cucm_users`) as the default source named "cucm"; every other
-- source keeps its snapshot in `source_users`, keyed by source and the entry's stable
-- identity (CUCM pkid, LDAP entryUUID or AD objectGUID), so renames keep the user.
-- Refresh state per source stays in `snapshot_state` (already keyed by source).

CREATE TABLE directory_sources (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    cluster TEXT,
    created_at BIGINT,
    updated_at BIGINT
);
INSERT INTO directory_sources (name, kind, cluster) VALUES ('cucm', 'cucm', 'cucm');

CREATE TABLE source_users (
    source TEXT NOT NULL,
    uuid TEXT NOT NULL,
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
    changed_at BIGINT NOT NULL,
    dn TEXT,
    disabled BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (source, uuid)
);
CREATE INDEX source_users_userid ON source_users (source, userid);

-- Filled by a full refresh of one source, swapped into source_users only when complete.
CREATE TABLE source_users_staging (
    source TEXT NOT NULL,
    uuid TEXT NOT NULL,
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
    changed_at BIGINT NOT NULL,
    dn TEXT,
    disabled BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (source, uuid)
);

-- Which source(s) each local user came from, and the CUCM cluster it belongs to (device
-- provisioning and voicemail use the user's own cluster). Existing synced users came from
-- the default CUCM source.
CREATE TABLE user_sources (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    source_key TEXT NOT NULL,
    cluster TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, source)
);
CREATE INDEX user_sources_key ON user_sources (source, source_key);
INSERT INTO user_sources (user_id, source, source_key, cluster, updated_at)
    SELECT id, 'cucm', source_key, 'cucm', updated_at FROM users
    WHERE source = 'cucm' AND source_key IS NOT NULL;

-- Per source: where incremental reading continues (LDAP: the highest modifyTimestamp or
-- uSNChanged seen; `sync_cookie`: the RFC 4533 syncrepl cookie), and the per-entry
-- problems of the last refresh (JSON, at most 100 kept).
ALTER TABLE snapshot_state ADD COLUMN poll_cursor TEXT;
ALTER TABLE snapshot_state ADD COLUMN sync_cookie TEXT;
ALTER TABLE snapshot_state ADD COLUMN entry_problems TEXT;
ALTER TABLE snapshot_state ADD COLUMN entry_problem_count BIGINT NOT NULL DEFAULT 0;

-- Writes to source_users bump this counter, as writes to cucm_users bump theirs (0003).
INSERT INTO data_versions (name, version) VALUES ('source_users', 0);
