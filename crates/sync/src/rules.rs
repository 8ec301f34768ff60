//! Sync rules: how CUCM end users become ucbridge users.
//!
//! Written in the `[directory_sync]` table of the configuration file, e.g.
//!
//! ```toml
//! [directory_sync]
//! orphans = "disable"              # disable | delete | keep
//! max_removal_share = 0.10         # refuse to remove more than 10 % in one run
//! [directory_sync.key]
//! cucm = "userid"                  # userid | userid_local_part | mailid | mailid_local_part | extension
//! local = "username"               # username | any_alias | any_email | alias_or_email
//! [directory_sync.fields]
//! email = [{ field = "mailid" }, { template = "{userid}@example.com" }]
//! extension = [{ field = "primary_extension" }, { field = "telephone_number" }]
//! office = { constant = "London Office" }
//! ```
//!
//! A field rule is a list of sources; the first that yields a non-empty value wins. A field
//! without a rule is unmanaged: sync never touches it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ucbridge_store::{SourceUser, UserField};

use crate::schedule::Schedule;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RulesError {
    #[error("unknown CUCM field {0:?} in a sync rule (known: {known})", known = CucmField::names().join(", "))]
    UnknownCucmField(String),
    #[error("unknown local field {0:?} in [directory_sync.fields] (known: {known})", known = UserField::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", "))]
    UnknownLocalField(String),
    #[error("template {template:?}: {problem}")]
    BadTemplate { template: String, problem: String },
    #[error("max_removal_share must be between 0 and 1, not {0}")]
    BadShare(f64),
    #[error("the username rule is empty: created users need a username")]
    NoUsernameRule,
    #[error("bad schedule: {0}")]
    BadSchedule(String),
    #[error("bad sources: {0}")]
    BadSources(String),
}

/// A field of a CUCM end user (snapshot) that rules can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CucmField {
    Userid,
    UseridLocalPart,
    FirstName,
    MiddleName,
    LastName,
    DisplayName,
    Mailid,
    MailidLocalPart,
    TelephoneNumber,
    PrimaryExtension,
    Department,
    Manager,
    Title,
    MobileNumber,
    HomeNumber,
    PagerNumber,
    DirectoryUri,
    FirstDevice,
}

const CUCM_FIELDS: &[(&str, CucmField)] = &[
    ("userid", CucmField::Userid),
    ("userid_local_part", CucmField::UseridLocalPart),
    ("first_name", CucmField::FirstName),
    ("middle_name", CucmField::MiddleName),
    ("last_name", CucmField::LastName),
    ("display_name", CucmField::DisplayName),
    ("mailid", CucmField::Mailid),
    ("mailid_local_part", CucmField::MailidLocalPart),
    ("telephone_number", CucmField::TelephoneNumber),
    ("primary_extension", CucmField::PrimaryExtension),
    ("department", CucmField::Department),
    ("manager", CucmField::Manager),
    ("title", CucmField::Title),
    ("mobile_number", CucmField::MobileNumber),
    ("home_number", CucmField::HomeNumber),
    ("pager_number", CucmField::PagerNumber),
    ("directory_uri", CucmField::DirectoryUri),
    ("first_device", CucmField::FirstDevice),
];

impl CucmField {
    pub fn parse(name: &str) -> Result<CucmField, RulesError> {
        CUCM_FIELDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| RulesError::UnknownCucmField(name.to_owned()))
    }

    fn names() -> Vec<&'static str> {
        CUCM_FIELDS.iter().map(|(n, _)| *n).collect()
    }

    /// The value of this field for `u`; empty strings read as absent.
    pub fn value(self, u: &SourceUser) -> Option<&str> {
        let v = match self {
            CucmField::Userid => Some(u.userid.as_str()),
            CucmField::UseridLocalPart => Some(local_part(&u.userid)),
            CucmField::FirstName => u.first_name.as_deref(),
            CucmField::MiddleName => u.middle_name.as_deref(),
            CucmField::LastName => u.last_name.as_deref(),
            CucmField::DisplayName => u.display_name.as_deref(),
            CucmField::Mailid => u.mailid.as_deref(),
            CucmField::MailidLocalPart => u.mailid.as_deref().map(local_part),
            CucmField::TelephoneNumber => u.telephone_number.as_deref(),
            CucmField::PrimaryExtension => u.primary_extension.as_deref(),
            CucmField::Department => u.department.as_deref(),
            CucmField::Manager => u.manager.as_deref(),
            CucmField::Title => u.title.as_deref(),
            CucmField::MobileNumber => u.mobile_number.as_deref(),
            CucmField::HomeNumber => u.home_number.as_deref(),
            CucmField::PagerNumber => u.pager_number.as_deref(),
            CucmField::DirectoryUri => u.directory_uri.as_deref(),
            CucmField::FirstDevice => u.first_device(),
        };
        v.map(str::trim).filter(|s| !s.is_empty())
    }
}

/// "Part before @": the whole value when it has no @.
pub fn local_part(s: &str) -> &str {
    s.split_once('@').map_or(s, |(l, _)| l)
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum ValueSource {
    Field {
        field: String,
    },
    Constant {
        constant: String,
    },
    /// `{field}` placeholders, e.g. `{userid}@example.com`; empty when any referenced
    /// field is empty, so the next source in the list is tried.
    Template {
        template: String,
    },
}

/// One source, or a list tried in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldRule {
    One(ValueSource),
    FirstOf(Vec<ValueSource>),
}

impl FieldRule {
    fn sources(&self) -> &[ValueSource] {
        match self {
            FieldRule::One(s) => std::slice::from_ref(s),
            FieldRule::FirstOf(v) => v,
        }
    }
}

/// Which CUCM value identifies a user (the seed's "CISCO ID Source").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CucmKey {
    Userid,
    UseridLocalPart,
    Mailid,
    MailidLocalPart,
    Extension,
}

/// Which local value it is matched against (the seed's "Local ID Source"); the store owns
/// it with the one local-user index, re-exported here so `rules::LocalKey` keeps working.
pub use ucbridge_store::local_index::LocalKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncKey {
    pub cucm: CucmKey,
    pub local: LocalKey,
}

impl Default for SyncKey {
    fn default() -> Self {
        SyncKey {
            cucm: CucmKey::Userid,
            local: LocalKey::Username,
        }
    }
}

impl SyncKey {
    /// The key of a CUCM user, lower-cased (CUCM userids are case-insensitive).
    pub fn cucm_value(&self, u: &SourceUser) -> Option<String> {
        let f = match self.cucm {
            CucmKey::Userid => CucmField::Userid,
            CucmKey::UseridLocalPart => CucmField::UseridLocalPart,
            CucmKey::Mailid => CucmField::Mailid,
            CucmKey::MailidLocalPart => CucmField::MailidLocalPart,
            CucmKey::Extension => CucmField::PrimaryExtension,
        };
        f.value(u).map(str::to_lowercase)
    }
}

/// What happens to a synced user whose CUCM end user disappeared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanAction {
    Disable,
    Delete,
    Keep,
}

fn default_orphans() -> OrphanAction {
    OrphanAction::Disable
}
fn default_share() -> f64 {
    0.10
}
fn default_username() -> FieldRule {
    FieldRule::One(ValueSource::Field {
        field: "userid".into(),
    })
}

/// The `[directory_sync]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRules {
    #[serde(default)]
    pub key: SyncKey,
    /// Username of users that sync creates.
    #[serde(default = "default_username")]
    pub username: FieldRule,
    /// Managed fields; absent = the defaults below; a field left out is unmanaged.
    #[serde(default = "default_fields")]
    pub fields: BTreeMap<String, FieldRule>,
    /// Aliases sync maintains on each user (all non-empty values); empty = unmanaged.
    #[serde(default)]
    pub aliases: Vec<ValueSource>,
    #[serde(default = "default_orphans")]
    pub orphans: OrphanAction,
    /// Largest share of synced users one run may disable or delete without confirmation.
    #[serde(default = "default_share")]
    pub max_removal_share: f64,
    /// When the server runs the sync: `"every 15m"` or a cron expression
    /// (`sec min hour day month weekday`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// Sources by precedence, e.g. `["ad", "cucm"]`: one person found in several (by the
    /// sync key) takes each field from the first source that has it. Empty: the default
    /// CUCM source alone (as before sources existed).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Per source, the snapshot fields it may supply (e.g. `cucm = ["primary_extension",
    /// "associated_devices"]`); a source not named supplies every field.
    #[serde(default)]
    pub source_fields: BTreeMap<String, Vec<String>>,
}

fn field(name: &str) -> ValueSource {
    ValueSource::Field { field: name.into() }
}

/// The mapping of the seed's "CUCM Fields mapping" table.
fn default_fields() -> BTreeMap<String, FieldRule> {
    let one = |f: &str| FieldRule::One(field(f));
    BTreeMap::from([
        ("first_name".into(), one("first_name")),
        ("last_name".into(), one("last_name")),
        (
            "display_name".into(),
            FieldRule::FirstOf(vec![
                field("display_name"),
                ValueSource::Template {
                    template: "{first_name} {last_name}".into(),
                },
            ]),
        ),
        ("email".into(), one("mailid")),
        (
            "extension".into(),
            FieldRule::FirstOf(vec![field("primary_extension"), field("telephone_number")]),
        ),
        ("department".into(), one("department")),
        ("title".into(), one("title")),
        ("mobile".into(), one("mobile_number")),
        ("pager".into(), one("pager_number")),
        ("manager".into(), one("manager")),
        ("directory_uri".into(), one("directory_uri")),
        ("device_name".into(), one("first_device")),
    ])
}

impl Default for SyncRules {
    fn default() -> Self {
        SyncRules {
            key: SyncKey::default(),
            username: default_username(),
            fields: default_fields(),
            aliases: Vec::new(),
            orphans: default_orphans(),
            max_removal_share: default_share(),
            schedule: None,
            sources: Vec::new(),
            source_fields: BTreeMap::new(),
        }
    }
}

/// Rules checked and resolved, ready to evaluate quickly for every user.
#[derive(Debug, Clone)]
pub struct CompiledRules {
    /// Digest of the rules (and of this engine's version): part of a run's fingerprint, so
    /// changed rules always trigger a full comparison.
    pub fingerprint: String,
    pub key: SyncKey,
    username: Vec<Source>,
    fields: Vec<(UserField, Vec<Source>)>,
    aliases: Vec<Source>,
    pub orphans: OrphanAction,
    pub max_removal_share: f64,
    pub schedule: Option<Schedule>,
    /// Sources by precedence; empty = the default CUCM source alone.
    pub sources: Vec<String>,
    /// Per source, the snapshot fields it may supply (absent: all).
    pub source_fields: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
enum Source {
    Field(CucmField),
    Constant(String),
    Template(Vec<Piece>),
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Field(CucmField),
}

fn compile_template(t: &str) -> Result<Vec<Piece>, RulesError> {
    let bad = |problem: &str| RulesError::BadTemplate {
        template: t.to_owned(),
        problem: problem.to_owned(),
    };
    let mut pieces = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| bad("unclosed {"))?;
        pieces.push(Piece::Field(CucmField::parse(after[..close].trim())?));
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(bad("} without {"));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

fn compile_source(s: &ValueSource) -> Result<Source, RulesError> {
    Ok(match s {
        ValueSource::Field { field } => Source::Field(CucmField::parse(field)?),
        ValueSource::Constant { constant } => Source::Constant(constant.clone()),
        ValueSource::Template { template } => Source::Template(compile_template(template)?),
    })
}

impl Source {
    fn eval(&self, u: &SourceUser) -> Option<String> {
        match self {
            Source::Field(f) => f.value(u).map(str::to_owned),
            Source::Constant(c) => Some(c.clone()).filter(|c| !c.is_empty()),
            Source::Template(pieces) => {
                let mut out = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Field(f) => out.push_str(f.value(u)?),
                    }
                }
                Some(out).filter(|s| !s.trim().is_empty())
            }
        }
    }
}

fn first_of(sources: &[Source], u: &SourceUser) -> Option<String> {
    sources.iter().find_map(|s| s.eval(u))
}

impl SyncRules {
    pub fn compile(&self) -> Result<CompiledRules, RulesError> {
        if !(0.0..=1.0).contains(&self.max_removal_share) {
            return Err(RulesError::BadShare(self.max_removal_share));
        }
        let username: Vec<Source> = self
            .username
            .sources()
            .iter()
            .map(compile_source)
            .collect::<Result<_, _>>()?;
        if username.is_empty() {
            return Err(RulesError::NoUsernameRule);
        }
        let mut fields = Vec::new();
        for (name, rule) in &self.fields {
            let f = UserField::from_name(name)
                .ok_or_else(|| RulesError::UnknownLocalField(name.clone()))?;
            let sources = rule
                .sources()
                .iter()
                .map(compile_source)
                .collect::<Result<_, _>>()?;
            fields.push((f, sources));
        }
        let aliases = self
            .aliases
            .iter()
            .map(compile_source)
            .collect::<Result<_, _>>()?;
        self.check_sources()?;
        let schedule = self
            .schedule
            .as_deref()
            .map(Schedule::parse)
            .transpose()
            .map_err(RulesError::BadSchedule)?;
        let fingerprint = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(env!("CARGO_PKG_VERSION").as_bytes());
            h.update(serde_json::to_vec(self).unwrap_or_default());
            h.finalize()
                .iter()
                .take(12)
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        Ok(CompiledRules {
            fingerprint,
            key: self.key,
            username,
            fields,
            aliases,
            orphans: self.orphans,
            max_removal_share: self.max_removal_share,
            schedule,
            sources: self.sources.clone(),
            source_fields: self.source_fields.clone(),
        })
    }
}

impl SyncRules {
    fn check_sources(&self) -> Result<(), RulesError> {
        let mut seen = std::collections::HashSet::new();
        for name in &self.sources {
            if name.trim().is_empty() || !seen.insert(name.as_str()) {
                return Err(RulesError::BadSources(format!(
                    "{name:?} is empty or listed twice in sources"
                )));
            }
        }
        for (name, fields) in &self.source_fields {
            if !self.sources.contains(name) {
                return Err(RulesError::BadSources(format!(
                    "source_fields names {name:?}, which is not in sources"
                )));
            }
            for f in fields {
                if !crate::merged::MERGED_FIELDS.contains(&f.as_str()) {
                    return Err(RulesError::BadSources(format!(
                        "source_fields.{name}: unknown field {f:?} (known: {})",
                        crate::merged::MERGED_FIELDS.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }
}

impl CompiledRules {
    pub fn username(&self, u: &SourceUser) -> Option<String> {
        first_of(&self.username, u)
    }

    /// The managed fields and their values for `u`.
    pub fn fields(&self, u: &SourceUser) -> Vec<(UserField, Option<String>)> {
        self.fields
            .iter()
            .map(|(f, sources)| (*f, first_of(sources, u)))
            .collect()
    }

    /// Aliases to maintain, or `None` when aliases are unmanaged.
    pub fn aliases(&self, u: &SourceUser) -> Option<Vec<String>> {
        if self.aliases.is_empty() {
            return None;
        }
        let mut out: Vec<String> = Vec::new();
        for s in &self.aliases {
            if let Some(v) = s.eval(u) {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(&v)) {
                    out.push(v);
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsmith() -> SourceUser {
        SourceUser {
            uuid: "{A}".into(),
            userid: "JSmith@corp.example".into(),
            first_name: Some("John".into()),
            last_name: Some("Smith".into()),
            telephone_number: Some("0123 456 789".into()),
            associated_devices: vec!["SEP00FF233CEB6E".into()],
            ..SourceUser::default()
        }
    }

    #[test]
    fn defaults_follow_the_seed_mapping() {
        let rules = SyncRules::default().compile().unwrap();
        let u = jsmith();
        let fields: BTreeMap<_, _> = rules.fields(&u).into_iter().collect();
        assert_eq!(
            fields[&UserField::DisplayName].as_deref(),
            Some("John Smith")
        );
        // No primary extension: the telephone number is the first extension.
        assert_eq!(
            fields[&UserField::Extension].as_deref(),
            Some("0123 456 789")
        );
        assert_eq!(
            fields[&UserField::DeviceName].as_deref(),
            Some("SEP00FF233CEB6E")
        );
        assert_eq!(fields[&UserField::Email], None);
        assert!(
            !fields.contains_key(&UserField::Office),
            "office is unmanaged"
        );
        assert_eq!(rules.username(&u).as_deref(), Some("JSmith@corp.example"));
        assert_eq!(
            rules.key.cucm_value(&u).as_deref(),
            Some("jsmith@corp.example")
        );
    }

    #[test]
    fn email_is_composed_when_cucm_has_none() {
        let rules: SyncRules = toml::from_str(
            r#"
            [key]
            cucm = "userid_local_part"
            local = "any_alias"
            [fields]
            email = [{ field = "mailid" }, { template = "{userid_local_part}@example.com" }]
            office = { constant = "London Office" }
            "#,
        )
        .unwrap();
        let rules = rules.compile().unwrap();
        let mut u = jsmith();
        let fields: BTreeMap<_, _> = rules.fields(&u).into_iter().collect();
        assert_eq!(
            fields[&UserField::Email].as_deref(),
            Some("JSmith@example.com")
        );
        assert_eq!(fields[&UserField::Office].as_deref(), Some("London Office"));
        assert_eq!(fields.len(), 2);
        u.mailid = Some("john.smith@corp.example".into());
        let fields: BTreeMap<_, _> = rules.fields(&u).into_iter().collect();
        assert_eq!(
            fields[&UserField::Email].as_deref(),
            Some("john.smith@corp.example")
        );
        assert_eq!(rules.key.cucm_value(&u).as_deref(), Some("jsmith"));
    }

    #[test]
    fn bad_rules_are_named() {
        let mut r = SyncRules::default();
        r.fields
            .insert("email".into(), FieldRule::One(field("mail")));
        assert_eq!(
            r.compile().unwrap_err(),
            RulesError::UnknownCucmField("mail".into())
        );
        let mut r = SyncRules::default();
        r.fields
            .insert("shoe_size".into(), FieldRule::One(field("userid")));
        assert!(matches!(
            r.compile().unwrap_err(),
            RulesError::UnknownLocalField(_)
        ));
        let mut r = SyncRules::default();
        r.fields.insert(
            "email".into(),
            FieldRule::One(ValueSource::Template {
                template: "{userid".into(),
            }),
        );
        assert!(matches!(
            r.compile().unwrap_err(),
            RulesError::BadTemplate { .. }
        ));
        let r = SyncRules {
            max_removal_share: 2.0,
            ..SyncRules::default()
        };
        assert!(matches!(r.compile().unwrap_err(), RulesError::BadShare(_)));
        let r = SyncRules {
            schedule: Some("whenever".into()),
            ..SyncRules::default()
        };
        assert!(matches!(
            r.compile().unwrap_err(),
            RulesError::BadSchedule(_)
        ));
        assert!(toml::from_str::<SyncRules>("orphans = \"explode\"").is_err());
    }
}
