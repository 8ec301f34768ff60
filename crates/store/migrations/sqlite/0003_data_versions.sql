-- Change detection for directory sync. Every transaction of ucbridge-store that changes
-- cucm_users or users bumps its counter, so "has anything changed since run N?" is one
-- row read instead of a full comparison. A run that leaves users in sync records the
-- fingerprint (counters + rules) it was computed from.
CREATE TABLE data_versions (
    name TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO data_versions (name, version) VALUES ('cucm_users', 0);
INSERT INTO data_versions (name, version) VALUES ('users', 0);
ALTER TABLE sync_runs ADD COLUMN fingerprint TEXT;
