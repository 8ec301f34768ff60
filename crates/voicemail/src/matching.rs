//! Account matching (seed 002 "CISCO ID Source" x "Local ID Source"): each CUC user is
//! matched to exactly one of ucbridge's local users, or reported — never guessed.

use std::collections::HashMap;

use serde::Serialize;
use ucbridge_store::local_index::LocalIndex;
use ucbridge_store::LocalUser;

use crate::config::{AccountMatching, CucIdSource, ImapUserSource};

/// A CUC user matched to a local user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedAccount {
    pub cuc_object_id: String,
    pub cuc_alias: String,
    pub cuc_display_name: Option<String>,
    pub local_username: String,
    pub imap_user: String,
    /// The local user's address (To of the built messages).
    pub email: Option<String>,
}

/// A CUC user left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmatchedAccount {
    pub cuc_alias: String,
    /// The value used for matching, when there was one.
    pub key: Option<String>,
    pub reason: String,
    /// Local users it could have been (ambiguous matches).
    pub candidates: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MatchReport {
    pub matched: Vec<MatchedAccount>,
    pub unmatched: Vec<UnmatchedAccount>,
}

fn local_part(s: &str) -> &str {
    s.split('@').next().unwrap_or(s)
}

/// The CUC side's key, lower-cased (aliases and addresses compare case-insensitively).
pub fn cuc_key(user: &ucbridge_cuc::User, source: CucIdSource) -> Option<String> {
    let value = match source {
        CucIdSource::Alias => Some(user.alias.as_str()),
        CucIdSource::AliasLocalPart => Some(local_part(&user.alias)),
        CucIdSource::SmtpAddress => user.smtp_address.as_deref(),
        CucIdSource::SmtpLocalPart => user.smtp_address.as_deref().map(local_part),
        CucIdSource::Extension => user.extension.as_deref(),
    }?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_lowercase())
}

/// Match every CUC user against the local users.
pub fn match_accounts(
    cuc_users: &[ucbridge_cuc::User],
    locals: &[LocalUser],
    rule: AccountMatching,
    imap_user: ImapUserSource,
) -> MatchReport {
    // Disabled users own no new mailbox; only the rule's key is indexed.
    let index = LocalIndex::enabled_only(locals, rule.local);
    let mut report = MatchReport::default();
    // First pass: CUC user -> local index.
    let mut tentative: Vec<(usize, usize)> = Vec::new();
    for (ci, user) in cuc_users.iter().enumerate() {
        let Some(key) = cuc_key(user, rule.cuc) else {
            report.unmatched.push(UnmatchedAccount {
                cuc_alias: user.alias.clone(),
                key: None,
                reason: format!("the CUC user has no {:?} value", rule.cuc),
                candidates: vec![],
            });
            continue;
        };
        match index.lookup(rule.local, &key) {
            [] => report.unmatched.push(UnmatchedAccount {
                cuc_alias: user.alias.clone(),
                key: Some(key),
                reason: format!("no enabled local user has this value as {:?}", rule.local),
                candidates: vec![],
            }),
            [one] => tentative.push((ci, *one)),
            many => report.unmatched.push(UnmatchedAccount {
                cuc_alias: user.alias.clone(),
                key: Some(key),
                reason: "ambiguous: several local users match".into(),
                candidates: many
                    .iter()
                    .map(|i| locals[*i].record.username.clone())
                    .collect(),
            }),
        }
    }
    // Second pass: a local user claimed by two CUC users is ambiguous for both.
    let mut claims: HashMap<usize, Vec<usize>> = HashMap::new();
    for (ci, li) in &tentative {
        claims.entry(*li).or_default().push(*ci);
    }
    for (ci, li) in tentative {
        let user = &cuc_users[ci];
        let local = &locals[li].record;
        if claims[&li].len() > 1 {
            report.unmatched.push(UnmatchedAccount {
                cuc_alias: user.alias.clone(),
                key: cuc_key(user, rule.cuc),
                reason: format!(
                    "ambiguous: local user {:?} is matched by several CUC users ({})",
                    local.username,
                    claims[&li]
                        .iter()
                        .map(|c| cuc_users[*c].alias.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                candidates: vec![local.username.clone()],
            });
            continue;
        }
        let login = match imap_user {
            ImapUserSource::Username => Some(local.username.clone()),
            ImapUserSource::Email => local.email.clone(),
        };
        let Some(login) = login else {
            report.unmatched.push(UnmatchedAccount {
                cuc_alias: user.alias.clone(),
                key: cuc_key(user, rule.cuc),
                reason: format!(
                    "local user {:?} has no e-mail for the IMAP login",
                    local.username
                ),
                candidates: vec![local.username.clone()],
            });
            continue;
        };
        report.matched.push(MatchedAccount {
            cuc_object_id: user.object_id.clone(),
            cuc_alias: user.alias.clone(),
            cuc_display_name: user.display_name.clone(),
            local_username: local.username.clone(),
            imap_user: login,
            email: local.email.clone(),
        });
    }
    report.matched.sort_by(|a, b| a.cuc_alias.cmp(&b.cuc_alias));
    report
        .unmatched
        .sort_by(|a, b| a.cuc_alias.cmp(&b.cuc_alias));
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use ucbridge_store::local_index::LocalKey;
    use ucbridge_store::UserRecord;

    fn cuc(alias: &str, smtp: Option<&str>, ext: Option<&str>) -> ucbridge_cuc::User {
        ucbridge_cuc::User {
            object_id: format!("oid-{alias}"),
            alias: alias.into(),
            first_name: None,
            last_name: None,
            display_name: None,
            email_address: None,
            smtp_address: smtp.map(str::to_owned),
            extension: ext.map(str::to_owned),
            department: None,
            uri: None,
        }
    }

    fn local(id: i64, username: &str, email: Option<&str>, aliases: &[&str]) -> LocalUser {
        LocalUser {
            id,
            record: UserRecord {
                username: username.into(),
                email: email.map(str::to_owned),
                aliases: aliases.iter().map(|a| a.to_string()).collect(),
                source: "local".into(),
                ..UserRecord::default()
            },
            has_password: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn rule(cuc: CucIdSource, local: LocalKey) -> AccountMatching {
        AccountMatching { cuc, local }
    }

    #[test]
    fn every_source_pairing_matches() {
        let users = [cuc(
            "Jdoe@corp.example",
            Some("jdoe_corp.example@cuc.lab"),
            Some("1001"),
        )];
        let locals = [
            local(
                1,
                "jdoe",
                Some("john.doe@example.com"),
                &["1001", "jdoe_corp.example@cuc.lab"],
            ),
            local(2, "other", Some("jdoe@corp.example"), &[]),
        ];
        let m = |c, l| {
            match_accounts(&users, &locals, rule(c, l), ImapUserSource::Username)
                .matched
                .first()
                .map(|a| a.local_username.clone())
        };
        assert_eq!(
            m(CucIdSource::AliasLocalPart, LocalKey::Username).as_deref(),
            Some("jdoe")
        );
        assert_eq!(
            m(CucIdSource::Alias, LocalKey::AnyEmail).as_deref(),
            Some("other")
        );
        assert_eq!(
            m(CucIdSource::Alias, LocalKey::AliasOrEmail).as_deref(),
            Some("other")
        );
        assert_eq!(
            m(CucIdSource::Extension, LocalKey::AnyAlias).as_deref(),
            Some("jdoe")
        );
        assert_eq!(
            m(CucIdSource::Extension, LocalKey::AliasOrEmail).as_deref(),
            Some("jdoe")
        );
        assert_eq!(
            m(CucIdSource::SmtpAddress, LocalKey::AnyEmail).as_deref(),
            Some("jdoe")
        );
        assert_eq!(m(CucIdSource::SmtpLocalPart, LocalKey::Username), None);
        assert_eq!(m(CucIdSource::Alias, LocalKey::Username), None);
    }

    #[test]
    fn ambiguity_is_reported_not_guessed() {
        let users = [
            cuc("a", None, Some("1001")),
            cuc("b", None, Some("1002")),
            cuc("c", None, None),
        ];
        let locals = [
            local(1, "x", None, &["1001"]),
            local(2, "y", None, &["1001", "1002"]),
        ];
        let r = match_accounts(
            &users,
            &locals,
            rule(CucIdSource::Extension, LocalKey::AnyAlias),
            ImapUserSource::Username,
        );
        // "a" matches x and y; "b" matches only y.
        assert_eq!(r.matched.len(), 1);
        assert_eq!(r.matched[0].cuc_alias, "b");
        let a = r.unmatched.iter().find(|u| u.cuc_alias == "a").unwrap();
        assert_eq!(a.candidates, ["x", "y"]);
        assert!(r
            .unmatched
            .iter()
            .any(|u| u.cuc_alias == "c" && u.key.is_none()));
        // Two CUC users onto one local user: neither is taken.
        let users = [cuc("a", None, Some("1001")), cuc("b", None, Some("1001"))];
        let locals = [local(1, "x", None, &["1001"])];
        let r = match_accounts(
            &users,
            &locals,
            rule(CucIdSource::Extension, LocalKey::AnyAlias),
            ImapUserSource::Username,
        );
        assert!(r.matched.is_empty());
        assert_eq!(r.unmatched.len(), 2);
        // Disabled users are not matched; the IMAP login can be the e-mail.
        let mut disabled = local(1, "a", Some("a@example.com"), &[]);
        disabled.record.disabled = true;
        let r = match_accounts(
            &[cuc("a", None, None)],
            &[disabled],
            AccountMatching::default(),
            ImapUserSource::Username,
        );
        assert!(r.matched.is_empty());
        let r = match_accounts(
            &[cuc("a", None, None)],
            &[local(1, "a", Some("a@example.com"), &[])],
            AccountMatching::default(),
            ImapUserSource::Email,
        );
        assert_eq!(r.matched[0].imap_user, "a@example.com");
    }
}
