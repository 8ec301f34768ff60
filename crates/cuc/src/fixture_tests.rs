//! The readers against Cisco's own payloads (`shared/fixtures/cuc-samples`, never copied
//! here).

use ucbridge_testkit::fixture_bytes;

use crate::model::{read_error, FolderInfo, Message, MessagePage, UserPage, VersionInfo};
use crate::node::{from_json, from_xml};

fn xml(name: &str) -> Option<crate::node::Node> {
    let bytes = fixture_bytes(&format!("cuc-samples/{name}"))?;
    Some(from_xml(&bytes).unwrap_or_else(|e| panic!("{name}: {e}")))
}

#[test]
fn inbox_list_from_the_cumi_guide() {
    let Some(n) = xml("cumi-inbox-messages.xml") else {
        return;
    };
    let page = MessagePage::read_node(&n).unwrap();
    assert_eq!(page.total, 1);
    let m = &page.messages[0];
    assert_eq!(m.id, "0:b4ffbaa5-19ad-4f4f-b95a-933a32e00d64");
    assert_eq!(m.subject.as_deref(), Some("Message from user1 (1001)"));
    assert!(m.read && m.from_subscriber && !m.dispatch);
    assert_eq!(m.from.smtp_address.as_deref(), Some("connectionserver"));
    assert_eq!(m.from.dtmf_access_id.as_deref(), Some("1001"));
    assert_eq!(m.caller_id.number.as_deref(), Some("1001"));
    assert_eq!(m.arrival_time_ms, Some(1_522_069_679_000));
    assert_eq!((m.size_bytes, m.duration_ms), (Some(37291), Some(3340)));
    assert_eq!(m.imap_uid.as_deref(), Some("22"));
    assert_eq!(m.msg_type.as_deref(), Some("Voice"));
}

#[test]
fn inbox_from_the_sso_browser_sample() {
    let Some(n) = xml("cumi-inbox-sso-sample.xml") else {
        return;
    };
    let page = MessagePage::read_node(&n).unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.messages[0].subject.as_deref(), Some("test"));
    assert_eq!(
        page.messages[0].from.smtp_address.as_deref(),
        Some("user1@ds-cuc105.cisco.com")
    );
}

#[test]
fn message_detail_with_attachment_and_recipient() {
    let Some(n) = xml("cumi-message-detail.xml") else {
        return;
    };
    let m = Message::read_node(&n).unwrap();
    assert_eq!(m.attachments.len(), 1);
    let a = &m.attachments[0];
    assert!(a.uri.ends_with("/attachments/0"));
    assert_eq!(
        a.content_type.as_deref(),
        Some("audio/wav; name=voicemessage.wav")
    );
    assert_eq!(m.recipients.len(), 1);
    assert_eq!(m.recipients[0].kind, "TO");
    assert_eq!(
        m.recipients[0].address.dtmf_access_id.as_deref(),
        Some("1009")
    );
    assert_eq!(m.recipients[0].address.display_name, None);
}

#[test]
fn folder_with_empty_values_as_published() {
    let Some(n) = xml("cumi-folder.xml") else {
        return;
    };
    let f = FolderInfo::read_node(&n).unwrap();
    assert_eq!((f.message_count, f.usn, f.uid_validity), (0, None, None));
}

#[test]
fn cupi_user_list_xml() {
    let Some(n) = xml("cupi-users-list.xml") else {
        return;
    };
    let page = UserPage::read_node(&n).unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.users.len(), 2);
    let john = &page.users[1];
    assert_eq!(john.alias, "John10000");
    assert_eq!(john.object_id, "8321097e-cca4-483f-b24c-0f2175e6e4c9");
    assert_eq!(john.extension.as_deref(), Some("10000"));
    assert_eq!(john.email_address.as_deref(), Some("john@cisco.com"));
    assert_eq!(john.first_name.as_deref(), Some("John"));
    assert_eq!(page.users[0].first_name, None);
}

#[test]
fn cupi_single_user_json_is_an_object_not_an_array() {
    let Some(bytes) = fixture_bytes("cuc-samples/cupi-users-query-single.json") else {
        return;
    };
    let page = UserPage::read_node(&from_json(&bytes, "Users").unwrap()).unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.users.len(), 1);
    assert_eq!(page.users[0].alias, "username");
    assert_eq!(page.users[0].extension.as_deref(), Some("2367777"));
    assert_eq!(
        page.users[0].department.as_deref(),
        Some("Information Technology")
    );
}

#[test]
fn version_information() {
    let Some(n) = xml("vmrest-version.xml") else {
        return;
    };
    assert_eq!(VersionInfo::read_node(&n).unwrap().version, "8.6.2.0ES3");
}

#[test]
fn error_bodies_real_and_documented() {
    for (file, code, message) in [
        (
            "cupi-error-details-404.xml",
            "NOT_FOUND",
            "scheduleset - ObjectId=30d9c0df-534b-437a-a6b7-439adfd850da",
        ),
        (
            "cupi-error-details-400.xml",
            "DATA_EXCEPTION",
            "ScheduleSet not found",
        ),
    ] {
        let Some(n) = xml(file) else {
            return;
        };
        assert_eq!(
            read_error(&n),
            Some((code.to_owned(), message.to_owned())),
            "{file}"
        );
    }
    // The CUMI guide's example is an HTTP transcript: the XML starts after the headers.
    let Some(raw) = fixture_bytes("cuc-samples/cumi-error-403-doc-example.txt") else {
        return;
    };
    let text = String::from_utf8_lossy(&raw);
    let start = text.find("<?xml").expect("the example holds XML");
    let n = from_xml(text[start..].as_bytes()).unwrap();
    let (code, message) = read_error(&n).unwrap();
    assert_eq!(code, "E_VMWS_MSG_MAILBOX_FULL");
    assert!(
        message.starts_with("Destination mailbox is full"),
        "{message}"
    );
    assert!(message.contains("E_CML_SEND_QUOTA_EXCEEDED"), "{message}");
    // JSON form read by the DevNet samples: {"errors":{"code":..,"message":..}}.
    let j = from_json(
        br#"{"errors":{"code":"NOT_FOUND","message":"gone"}}"#,
        "ErrorDetails",
    )
    .unwrap();
    assert_eq!(read_error(&j), Some(("NOT_FOUND".into(), "gone".into())));
}
