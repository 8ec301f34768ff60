-- Sign-in on further CUCM clusters (#15): a login name is looked up among a cluster's
-- snapshot entries (`source_users`) as among the default cluster's (0011);
-- the userid index in byte order (COLLATE "C") for the part-before-@ range, as in 0011.
CREATE INDEX source_users_userid_lower ON source_users ((lower(userid)) COLLATE "C", source);
CREATE INDEX source_users_mailid_lower ON source_users (lower(mailid), source);
CREATE INDEX source_users_primary_extension ON source_users (primary_extension, source);
