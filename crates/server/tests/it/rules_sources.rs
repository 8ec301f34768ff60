//! The sync rules' directory-source settings through `PUT /api/v1/rules`: a precedence
//! (`sources`) and `source_fields` over configured sources are saved; a name that is not
//! a configured source is refused with a 400 naming it (and nothing is saved), the
//! OpenAPI document says so, and the admin page's list of mergeable fields is the sync
//! engine's.

use axum::http::StatusCode;
use serde_json::{json, Value};
use ucbridge_store::SourceKind;

use crate::common::{self, TestNode};

/// The names between `const MERGED_FIELDS = [` and `];` in the admin page's script.
fn page_merged_fields() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/web/app.js");
    let script = std::fs::read_to_string(path).expect("app.js is readable");
    let start = script
        .find("const MERGED_FIELDS = [")
        .expect("app.js declares MERGED_FIELDS");
    let list = &script[start..];
    let list = &list[..list.find("];").expect("the list ends")];
    list.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_admin_page_offers_exactly_the_mergeable_fields() {
    let engine: Vec<String> = ucbridge_sync::merged::MERGED_FIELDS
        .iter()
        .map(|f| (*f).to_owned())
        .collect();
    assert_eq!(page_merged_fields(), engine);
}

/// A copy of `rules` with `sources` and `source_fields` set.
fn with_sources(rules: &Value, sources: Value, source_fields: Value) -> Value {
    let mut out = rules.clone();
    out["sources"] = sources;
    out["source_fields"] = source_fields;
    out
}

#[tokio::test]
async fn rules_name_only_configured_sources() {
    let node = TestNode::start(common::local_config()).await;
    // A second cluster, as a `[sources.east]` table (or `sync refresh --source`) registers it.
    node.store
        .register_source("east", SourceKind::Cucm, Some("east"))
        .await
        .expect("the source is registered");
    let admin = node.admin().await;
    let defaults = admin.get("/api/v1/rules").await.expect(StatusCode::OK).json;
    assert_eq!(defaults["sources"], json!([]), "{defaults}");

    // Configured sources and mergeable fields: saved and served back as saved.
    let good = with_sources(
        &defaults,
        json!(["east", "cucm"]),
        json!({"cucm": ["primary_extension", "associated_devices"]}),
    );
    let saved = admin
        .put_json("/api/v1/rules", &good)
        .await
        .expect(StatusCode::OK)
        .json;
    assert_eq!(saved["sources"], json!(["east", "cucm"]));
    let now = admin.get("/api/v1/rules").await.json;
    assert_eq!(now["source_fields"], good["source_fields"], "{now}");

    // An unknown source, in the precedence or in source_fields: 400 naming it and the
    // configured ones; the saved rules stay.
    let refusals = [
        (
            with_sources(&defaults, json!(["cucm", "west"]), json!({})),
            "sources: \"west\" is not a configured source (configured: cucm, east)",
        ),
        (
            with_sources(&defaults, json!(["cucm"]), json!({"ghost": ["mailid"]})),
            "source_fields: \"ghost\" is not a configured source",
        ),
        // A configured source's field list: only mergeable fields (the engine's check).
        (
            with_sources(&defaults, json!(["east"]), json!({"east": ["shoe_size"]})),
            "unknown field \"shoe_size\"",
        ),
        // Configured, but not in the precedence list.
        (
            with_sources(&defaults, json!(["cucm"]), json!({"east": ["mailid"]})),
            "source_fields names \"east\", which is not in sources",
        ),
    ];
    for (rules, message) in refusals {
        let answer = admin
            .put_json("/api/v1/rules", &rules)
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(answer.error_code(), "bad_request");
        assert!(
            answer.error_message().contains(message),
            "{message:?} in {}",
            answer.error_message()
        );
    }
    assert_eq!(admin.get("/api/v1/rules").await.json, now, "nothing saved");

    // The OpenAPI document describes that 400.
    let doc = admin.get("/openapi.json").await.expect(StatusCode::OK).json;
    let refused = &doc["paths"]["/api/v1/rules"]["put"]["responses"]["400"]["description"];
    assert!(
        refused
            .as_str()
            .is_some_and(|d| d.contains("not a configured source")),
        "{refused}"
    );
    node.shutdown().await;
}
