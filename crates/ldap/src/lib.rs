//! LDAP export of ucbridge's users (uid, password, telephoneNumber) with ldap3.
