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
/// the index was built from (or those given to [`LocalIndex::insert`]).
#[derive(Debug)]
pub struct LocalIndex {
    aliases: bool,
    emails: bool,
    by_username: HashMap<Box<str>, Hits>,
    by_alias: HashMap<Box<str>, Hits>,
    by_email: HashMap<Box<str>, Hits>,
}

/// The positions under one value: almost always one, held without an allocation (the
/// index has an entry per local user, so this is most of its size).
#[derive(Debug)]
enum Hits {
    One(usize),
    Many(Vec<usize>),
}

impl Hits {
    fn as_slice(&self) -> &[usize] {
        match self {
            Hits::One(pos) => std::slice::from_ref(pos),
            Hits::Many(list) => list,
        }
    }

    /// Add `pos` unless it is there already.
    fn add(&mut self, pos: usize) {
        match self {
            Hits::One(one) if *one == pos => {}
            Hits::One(one) => *self = Hits::Many(vec![*one, pos]),
            Hits::Many(list) if list.contains(&pos) => {}
            Hits::Many(list) => list.push(pos),
        }
    }
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

    /// An index with no users yet, filled with [`LocalIndex::insert`] (a sync streams the
    /// users in and keeps only their keys).
    pub fn empty(key: LocalKey) -> Self {
        LocalIndex {
            aliases: matches!(key, LocalKey::AnyAlias | LocalKey::AliasOrEmail),
            emails: matches!(key, LocalKey::AnyEmail | LocalKey::AliasOrEmail),
            by_username: HashMap::new(),
            by_alias: HashMap::new(),
            by_email: HashMap::new(),
        }
    }

    fn build(locals: &[LocalUser], key: LocalKey, include: impl Fn(&LocalUser) -> bool) -> Self {
        let mut idx = Self::empty(key);
        idx.by_username.reserve(locals.len());
        for (i, u) in locals.iter().enumerate().filter(|(_, u)| include(u)) {
            let r = &u.record;
            idx.insert(i, &r.username, r.email.as_deref(), &r.aliases);
        }
        idx
    }

    /// Add the user at position `pos`.
    pub fn insert(&mut self, pos: usize, username: &str, email: Option<&str>, aliases: &[String]) {
        add(&mut self.by_username, username, pos);
        if self.emails {
            if let Some(e) = email {
                add(&mut self.by_email, e, pos);
            }
        }
        for a in aliases {
            // An alias that is an address counts as one of the user's e-mails.
            if a.contains('@') {
                if self.emails {
                    add(&mut self.by_email, a, pos);
                }
            } else if self.aliases {
                add(&mut self.by_alias, a, pos);
            }
        }
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
        map.get(value).map(Hits::as_slice).unwrap_or(&[])
    }
}

/// `pos` under `value` once (a user may repeat a value across its e-mail and aliases).
fn add(map: &mut HashMap<Box<str>, Hits>, value: &str, pos: usize) {
    map.entry(normalise(value).into_boxed_str())
        .and_modify(|hits| hits.add(pos))
        .or_insert(Hits::One(pos));
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
