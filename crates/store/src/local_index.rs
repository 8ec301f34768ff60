//! The one in-memory index of local users by username, alias or e-mail, shared by
//! directory sync (matching CUCM users) and voicemail (matching CUC users), so both engines
//! agree on what "the same user" means. Keys are compared trimmed and lower-cased.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::LocalUser;

/// Which local value a key is matched against (the seeds' "Local ID Source").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalKey {
    Username,
    AnyAlias,
    AnyEmail,
    /// A key containing @ is matched as any e-mail, otherwise as any alias.
    AliasOrEmail,
}

/// A lookup key: trimmed and lower-cased (usernames, aliases and addresses compare
/// case-insensitively).
pub fn normalise(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Local users by the value a [`LocalKey`] names; lookups answer positions in the slice
/// the index was built from.
#[derive(Debug, Default)]
pub struct LocalIndex {
    by_username: HashMap<String, Vec<usize>>,
    by_alias: HashMap<String, Vec<usize>>,
    by_email: HashMap<String, Vec<usize>>,
}

impl LocalIndex {
    /// Every user of `locals`. Usernames are always indexed (a created user must not take
    /// an existing name); aliases and e-mails only when `key` looks them up.
    pub fn new(locals: &[LocalUser], key: LocalKey) -> Self {
        Self::build(locals, key, |_| true)
    }

    /// Like [`LocalIndex::new`], leaving disabled users out (they cannot own anything new).
    pub fn enabled_only(locals: &[LocalUser], key: LocalKey) -> Self {
        Self::build(locals, key, |u| !u.record.disabled)
    }

    fn build(locals: &[LocalUser], key: LocalKey, include: impl Fn(&LocalUser) -> bool) -> Self {
        let aliases = matches!(key, LocalKey::AnyAlias | LocalKey::AliasOrEmail);
        let emails = matches!(key, LocalKey::AnyEmail | LocalKey::AliasOrEmail);
        let mut idx = LocalIndex {
            by_username: HashMap::with_capacity(locals.len()),
            ..LocalIndex::default()
        };
        for (i, u) in locals.iter().enumerate().filter(|(_, u)| include(u)) {
            let r = &u.record;
            idx.by_username
                .entry(normalise(&r.username))
                .or_default()
                .push(i);
            if emails {
                if let Some(e) = &r.email {
                    idx.by_email.entry(normalise(e)).or_default().push(i);
                }
            }
            for a in &r.aliases {
                // An alias that is an address counts as one of the user's e-mails.
                let (wanted, map) = if a.contains('@') {
                    (emails, &mut idx.by_email)
                } else {
                    (aliases, &mut idx.by_alias)
                };
                if !wanted {
                    continue;
                }
                let list = map.entry(normalise(a)).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        idx
    }

    /// Positions of the users whose `key` value is `value` (already [`normalise`]d).
    pub fn lookup(&self, key: LocalKey, value: &str) -> &[usize] {
        let map = match key {
            LocalKey::Username => &self.by_username,
            LocalKey::AnyAlias => &self.by_alias,
            LocalKey::AnyEmail => &self.by_email,
            LocalKey::AliasOrEmail if value.contains('@') => &self.by_email,
            LocalKey::AliasOrEmail => &self.by_alias,
        };
        map.get(value).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserRecord;

    fn user(username: &str, email: Option<&str>, aliases: &[&str], disabled: bool) -> LocalUser {
        LocalUser {
            id: 0,
            record: UserRecord {
                username: username.into(),
                email: email.map(str::to_owned),
                aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
                disabled,
                ..UserRecord::default()
            },
            has_password: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn keys_find_users_case_insensitively_and_addresses_count_as_email() {
        let locals = vec![
            user(
                "JDoe",
                Some("John.Doe@Example.com"),
                &["1001", "jd@other.org"],
                false,
            ),
            user("asmith", None, &["1001"], false),
        ];
        let idx = LocalIndex::new(&locals, LocalKey::AliasOrEmail);
        assert_eq!(idx.lookup(LocalKey::Username, "jdoe"), &[0]);
        assert_eq!(idx.lookup(LocalKey::AnyEmail, "john.doe@example.com"), &[0]);
        // An address alias is an e-mail, not an alias.
        assert_eq!(idx.lookup(LocalKey::AliasOrEmail, "jd@other.org"), &[0]);
        assert!(idx.lookup(LocalKey::AnyAlias, "jd@other.org").is_empty());
        // Two users with one alias: both are answered, the caller reports the ambiguity.
        assert_eq!(idx.lookup(LocalKey::AliasOrEmail, "1001"), &[0, 1]);
        assert_eq!(normalise("  JDoe "), "jdoe");
    }

    #[test]
    fn only_what_the_key_needs_is_indexed_and_disabled_users_can_be_left_out() {
        let locals = vec![
            user("jdoe", Some("jdoe@example.com"), &["1001"], true),
            user("asmith", Some("asmith@example.com"), &[], false),
        ];
        let by_name = LocalIndex::new(&locals, LocalKey::Username);
        assert_eq!(by_name.lookup(LocalKey::Username, "jdoe"), &[0]);
        assert!(by_name
            .lookup(LocalKey::AnyEmail, "jdoe@example.com")
            .is_empty());
        let enabled = LocalIndex::enabled_only(&locals, LocalKey::AnyEmail);
        assert!(enabled.lookup(LocalKey::Username, "jdoe").is_empty());
        assert!(enabled
            .lookup(LocalKey::AnyEmail, "jdoe@example.com")
            .is_empty());
        // Positions stay those of the slice, not of the enabled users.
        assert_eq!(
            enabled.lookup(LocalKey::AnyEmail, "asmith@example.com"),
            &[1]
        );
    }
}
