//! Property tests of the parsers that take administrator input: sync rules (templates,
//! field names, whole rule sets) and job schedules. Arbitrary input never panics; valid
//! input means what it says. 256 cases each by default (proptest's default); set
//! `PROPTEST_CASES` for a longer run, e.g. `PROPTEST_CASES=20000 cargo test -p
//! ucbridge-sync --test parsers_prop`.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use ucbridge_store::SourceUser;
use ucbridge_sync::rules::{FieldRule, SyncRules, ValueSource};
use ucbridge_sync::schedule::{Schedule, MAX_INTERVAL};

/// Field names a template may use, with the value each has in [`user`].
const FIELDS: &[(&str, &str)] = &[
    ("userid", "jsmith@corp.example"),
    ("userid_local_part", "jsmith"),
    ("first_name", "John"),
    ("last_name", "Smith"),
    ("department", "Sales"),
    ("mailid", "john.smith@corp.example"),
    ("mailid_local_part", "john.smith"),
    ("title", "Rep"),
];

fn user() -> SourceUser {
    SourceUser {
        uuid: "{A}".into(),
        userid: "jsmith@corp.example".into(),
        first_name: Some("John".into()),
        last_name: Some("Smith".into()),
        department: Some("Sales".into()),
        mailid: Some("john.smith@corp.example".into()),
        title: Some("Rep".into()),
        ..SourceUser::default()
    }
}

fn with_office_template(template: &str) -> SyncRules {
    let mut rules = SyncRules::default();
    rules.fields.insert(
        "office".into(),
        FieldRule::One(ValueSource::Template {
            template: template.to_owned(),
        }),
    );
    rules
}

/// A template piece: literal text without braces, or a known field.
fn piece() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        "[^{}]{0,12}".prop_map(|t| (t.clone(), t)),
        (0..FIELDS.len()).prop_map(|i| (format!("{{{}}}", FIELDS[i].0), FIELDS[i].1.to_owned())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn any_template_compiles_or_is_refused_without_panic(template in "\\PC{0,64}") {
        if let Ok(rules) = with_office_template(&template).compile() {
            let _ = rules.fields(&user());
        }
    }

    #[test]
    fn brace_heavy_templates_never_panic(template in "[{}a-z_ ]{0,40}") {
        if let Ok(rules) = with_office_template(&template).compile() {
            let _ = rules.fields(&user());
        }
    }

    /// A template of literal text and known fields renders exactly the concatenation.
    #[test]
    fn valid_templates_render_their_pieces(pieces in proptest::collection::vec(piece(), 1..6)) {
        let template: String = pieces.iter().map(|(t, _)| t.as_str()).collect();
        let expected: String = pieces.iter().map(|(_, v)| v.as_str()).collect();
        let rules = with_office_template(&template).compile();
        prop_assert!(rules.is_ok(), "{template:?}: {:?}", rules.err());
        let office = rules
            .unwrap()
            .fields(&user())
            .into_iter()
            .find(|(f, _)| f.name() == "office")
            .and_then(|(_, v)| v);
        let want = Some(expected.clone()).filter(|e| !e.trim().is_empty());
        prop_assert_eq!(office, want, "template {:?}", template);
    }

    /// Whole rule sets from arbitrary JSON text: parse and compile never panic, and what
    /// compiles survives a serialize/parse round trip with the same fingerprint.
    #[test]
    fn arbitrary_rule_documents_never_panic(text in "\\PC{0,200}") {
        if let Ok(rules) = serde_json::from_str::<SyncRules>(&text) {
            if let Ok(compiled) = rules.compile() {
                let again: SyncRules =
                    serde_json::from_str(&serde_json::to_string(&rules).unwrap()).unwrap();
                prop_assert_eq!(again.compile().unwrap().fingerprint, compiled.fingerprint);
            }
        }
    }

    #[test]
    fn any_schedule_text_parses_or_is_refused_without_panic(text in "\\PC{0,80}") {
        if let Ok(s) = Schedule::parse(&text) {
            let _ = s.next_after(Utc::now());
            let _ = s.next_after(chrono::DateTime::<Utc>::MAX_UTC);
        }
    }

    #[test]
    fn every_with_any_number_and_unit_never_panics(n in any::<u64>(), unit in "(s|m|h|d|w|y|ms|us|ns)") {
        let text = format!("every {n}{unit}");
        if let Ok(s) = Schedule::parse(&text) {
            prop_assert!(s.next_after(Utc::now()).is_some(), "{text}");
        }
    }

    /// `every <n>s` round-trips: accepted exactly within 1 s ..= 366 days, and the next
    /// run is `n` seconds later; humantime's own rendering parses back to the same thing.
    #[test]
    fn every_round_trips(secs in 0u64..(2 * MAX_INTERVAL.as_secs())) {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 10, 7, 0).unwrap();
        let parsed = Schedule::parse(&format!("every {secs}s"));
        let valid = (1..=MAX_INTERVAL.as_secs()).contains(&secs);
        prop_assert_eq!(parsed.is_ok(), valid, "{}", secs);
        if let Ok(s) = parsed {
            let secs_i = i64::try_from(secs).unwrap();
            prop_assert_eq!(s.next_after(t), Some(t + chrono::Duration::seconds(secs_i)));
            let rendered = humantime::format_duration(Duration::from_secs(secs)).to_string();
            let again = Schedule::parse(&format!("every {rendered}")).unwrap();
            prop_assert_eq!(again.next_after(t), s.next_after(t));
        }
    }
}
