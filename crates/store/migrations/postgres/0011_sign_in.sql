-- Sign-in (#12): a login name is looked up among the synced CUCM end users by userid,
-- the part before @ of the userid (a byte-order range on the same index, hence COLLATE "C"),
-- mail address or extension.
CREATE INDEX cucm_users_userid_lower ON cucm_users ((lower(userid)) COLLATE "C");
CREATE INDEX cucm_users_mailid_lower ON cucm_users (lower(mailid));
CREATE INDEX cucm_users_primary_extension ON cucm_users (primary_extension);
