-- Device provisioning: what ucbridge created on CUCM for a user (a third-party SIP device
-- with a digest user, and maybe its directory number), so that "ucbridge created it" is
-- decidable and removal only touches ucbridge's own objects. The digest password is
-- stored encrypted (AEAD, see crates/provision/src/secret.rs), never in clear text.
-- Times are milliseconds since the Unix epoch; booleans are 0/1.

CREATE TABLE provisioned_devices (
    userid TEXT PRIMARY KEY,
    device_name TEXT NOT NULL,
    -- 'pending' while a run is creating it (a crash leaves it for the next run to clean
    -- up), 'active' once everything was created and read back.
    state TEXT NOT NULL,
    dn_pattern TEXT NOT NULL,
    -- '' = no partition (so the column can take part in a unique index on both backends).
    dn_partition TEXT NOT NULL,
    -- 1 when ucbridge added the directory number (allocated from the range), 0 when it
    -- reused the user's primary extension: only the former is removed with the device.
    dn_created BIGINT NOT NULL,
    digest_password_enc TEXT NOT NULL,
    key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX provisioned_devices_device ON provisioned_devices (device_name);
