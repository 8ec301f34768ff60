//! listChange: the lab's change queue, fed by triggers on the object tables.

use crate::common;

use common::*;
use ucbridge_lab::LabConfig;

fn start_id(queue: &str, id: &str) -> String {
    format!("<startChangeId queueId=\"{queue}\">{id}</startChangeId><objectList><object>User</object></objectList>")
}

#[tokio::test]
async fn changes_are_queued_paged_and_validated() {
    let (lab, client) = start(LabConfig {
        users: 5,
        ..LabConfig::default()
    })
    .await;
    // Seeding happens before the AXL service "starts": the queue begins empty.
    let first = ok(&lab, &client, "listChange", "").await;
    assert!(first.texts("change").is_empty(), "{}", first.body);
    let queue = first.text("queueId").unwrap();
    let next = first.text("nextStartChangeId").unwrap();

    ok(&lab, &client, "addUser", "<user><lastName>Q</lastName><userid>queued</userid><presenceGroupName>Standard Presence group</presenceGroupName></user>").await;
    ok(
        &lab,
        &client,
        "updateUser",
        "<userid>queued</userid><department>X</department>",
    )
    .await;
    ok(
        &lab,
        &client,
        "addLine",
        "<line><pattern>7777</pattern><usage>Device</usage></line>",
    )
    .await;
    ok(&lab, &client, "removeUser", "<userid>queued</userid>").await;

    let users = ok(&lab, &client, "listChange", &start_id(&queue, &next)).await;
    assert_eq!(users.texts("action"), ["a", "u", "r"], "{}", users.body);
    // The update names what it changed (G's example: changedTag name + new value), so no
    // get is needed; the add must be fetched.
    assert_eq!(users.texts("doGet"), ["true", "false", "false"]);
    assert_eq!(users.texts("changedTag"), ["X"], "{}", users.body);
    assert!(users
        .body
        .contains(r#"<changedTag name="department">X</changedTag>"#));
    let all = call(
        &lab,
        &client,
        "listChange",
        "14.0",
        &format!("<startChangeId queueId=\"{queue}\">{next}</startChangeId>"),
    )
    .await;
    assert_eq!(
        all.texts("action"),
        ["a", "u", "a", "r"],
        "the Line add is in the unfiltered queue"
    );
    let after = users.text("nextStartChangeId").unwrap();
    let empty = ok(&lab, &client, "listChange", &start_id(&queue, &after)).await;
    assert!(empty.texts("change").is_empty());
    assert_eq!(empty.text("nextStartChangeId").unwrap(), after);

    for version in ["11.5", "12.5", "14.0"] {
        let a = call(
            &lab,
            &client,
            "listChange",
            version,
            &start_id(&queue, &next),
        )
        .await;
        assert_eq!(a.status, 200);
        if let Err(report) = ucbridge_testkit::validate_axl_bodies(version, &[a.bytes()]) {
            panic!("listChange response for {version} is not schema-valid:\n{report}");
        }
    }

    // A stale queueId: the Developer Guide's 5007 "full sync is needed".
    let stale = call(&lab, &client, "listChange", "14.0", &start_id("0000", "1")).await;
    assert_eq!(stale.status, 500);
    assert_eq!(stale.axlcode(), Some(5007));
    assert!(stale.body.contains("full sync is needed"));
    lab.shutdown().await;
}

/// Issue 11 item 7: changedTags carry the changed tags; a change the lab cannot name as a
/// tag (an association, a reference) keeps doGet true.
#[tokio::test]
async fn changed_tags_name_what_an_update_changed() {
    let (lab, client) = start(LabConfig::default()).await;
    let first = ok(&lab, &client, "listChange", "").await;
    let queue = first.text("queueId").unwrap();
    let next = first.text("nextStartChangeId").unwrap();
    ok(&lab, &client, "addUser", &add_user_xml("tagged", "")).await;
    ok(
        &lab,
        &client,
        "addPhone",
        &add_phone_xml("SEP0000000CAFE1", ""),
    )
    .await;
    // One operation, two tags: one change with both.
    ok(
        &lab,
        &client,
        "updateUser",
        "<userid>tagged</userid><title>Boss</title><mailid>t@example.com</mailid>",
    )
    .await;
    ok(&lab, &client, "updateUser", "<userid>tagged</userid><associatedDevices><device>SEP0000000CAFE1</device></associatedDevices>").await;
    ok(
        &lab,
        &client,
        "updatePhone",
        "<name>SEP0000000CAFE1</name><description>desk</description>",
    )
    .await;
    ok(
        &lab,
        &client,
        "updatePhone",
        "<name>SEP0000000CAFE1</name><devicePoolName>HQ</devicePoolName>",
    )
    .await;
    let all = call(
        &lab,
        &client,
        "listChange",
        "14.0",
        &format!("<startChangeId queueId=\"{queue}\">{next}</startChangeId>"),
    )
    .await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        all.texts("action"),
        ["a", "a", "u", "u", "u", "u"],
        "{}",
        all.body
    );
    assert_eq!(
        all.texts("doGet"),
        ["true", "true", "false", "true", "false", "true"]
    );
    assert_eq!(all.texts("changedTag"), ["t@example.com", "Boss", "desk"]);
    assert!(
        all.body
            .contains(r#"<changedTag name="title">Boss</changedTag>"#),
        "{}",
        all.body
    );
    assert!(all
        .body
        .contains(r#"<changedTag name="description">desk</changedTag>"#));
    if let Err(report) = ucbridge_testkit::validate_axl_bodies("14.0", &[all.bytes()]) {
        panic!("listChange with changedTags is not schema-valid:\n{report}");
    }
    lab.shutdown().await;
}
