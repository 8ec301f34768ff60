//! listChange: the lab's change queue, fed by triggers on the object tables.

mod common;

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
    assert_eq!(users.texts("doGet"), ["true", "true", "false"]);
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
