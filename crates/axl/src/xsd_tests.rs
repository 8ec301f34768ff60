//! Every request this client sends, validated against Cisco's AXL XSD for each supported
//! schema that the shared fixtures hold (11.5, 12.5, 14.0, 15.0). The requests are the real
//! ones: each operation is run against the lab and the sent envelopes are captured.

use ucbridge_lab::{LabConfig, RunningLab};

use crate::*;

/// A CUCM release that accepts `schema` (AXL Developer Guide, "Schema Version Requested
/// vs. Version Applied").
fn release_accepting(schema: SchemaVersion) -> &'static str {
    match schema {
        SchemaVersion::V15_0 => "15.0.1.11900(23)",
        SchemaVersion::V11_5 => "12.5.1.10000(22)",
        _ => "14.0.1.14900(11)",
    }
}

async fn exercise_every_operation(schema: SchemaVersion) -> Vec<Vec<u8>> {
    let lab = RunningLab::start(LabConfig {
        cucm_version: release_accepting(schema).into(),
        users: 3,
        ..LabConfig::default()
    })
    .await
    .expect("lab starts");
    let defaults = LabConfig::default();
    let mut config = AxlConfig::new(lab.axl_url(), defaults.username, defaults.password);
    config.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    config.version = Some(schema);
    let client = AxlClient::connect(config).await.expect("connects");

    client.get_ccm_version().await.expect("getCCMVersion");
    client
        .list_users_page(&UserSearch::all(), UserTag::ALL, 0, 10)
        .await
        .expect("listUser");
    let search = UserSearch {
        last_name: Some("%".into()),
        department: Some("%".into()),
        ..UserSearch::default()
    };
    client
        .list_users_page(&search, &[UserTag::Userid], 0, 10)
        .await
        .expect("listUser by name");
    client
        .add_line(&NewLine {
            description: Some("xsd <check> & co".into()),
            alerting_name: Some("Digest Phone".into()),
            ..NewLine::device("88001", Some("Internal_PT"))
        })
        .await
        .expect("addLine");
    client
        .add_user(&NewUser {
            userid: "xsd.user".into(),
            last_name: "Schema".into(),
            first_name: Some("Xavier".into()),
            display_name: Some("Xavier Schema".into()),
            mailid: Some("xsd.user@example.com".into()),
            department: Some("QA".into()),
            primary_extension: Some(DirectoryNumber::new("88001", Some("Internal_PT"))),
            enable_cti: Some(true),
            digest_credentials: Some(Secret::new("d1gest-S3cret")),
            telephone_number: Some("+1 408 555 0199".into()),
            title: Some("Tester".into()),
            ..NewUser::default()
        })
        .await
        .expect("addUser");
    let mut phone = NewPhone::sip("CSFXSDUSER", "Third-party SIP Device (Advanced)", "Default");
    phone.description = Some("digest phone".into());
    phone.security_profile =
        Some("Third-party SIP Device Advanced - Standard SIP Secure Profile".into());
    phone.calling_search_space = Some("Internal_CSS".into());
    phone.owner_user_name = Some("xsd.user".into());
    phone.digest_user = Some("xsd.user".into());
    phone.lines = vec![PhoneLine {
        index: 1,
        label: Some("88001".into()),
        display: Some("Xavier".into()),
        dirn: DirectoryNumber::new("88001", Some("Internal_PT")),
    }];
    client.add_phone(&phone).await.expect("addPhone");
    client
        .update_user(
            Key::Name("xsd.user"),
            &UserUpdate {
                associated_devices: Some(vec!["CSFXSDUSER".into()]),
                mailid: Some("x.schema@example.com".into()),
                ..UserUpdate::default()
            },
        )
        .await
        .expect("updateUser");
    client
        .get_user(Key::Name("xsd.user"))
        .await
        .expect("getUser");
    client
        .update_phone(
            Key::Name("CSFXSDUSER"),
            &PhoneUpdate {
                description: Some("updated".into()),
                digest_user: Some("xsd.user".into()),
                ..PhoneUpdate::default()
            },
        )
        .await
        .expect("updatePhone");
    client
        .get_phone(Key::Name("CSFXSDUSER"))
        .await
        .expect("getPhone");
    client
        .list_phones_page(&PhoneSearch::default(), PhoneTag::ALL, 0, 10)
        .await
        .expect("listPhone");
    client
        .get_line(LineKey::Pattern {
            pattern: "88001",
            route_partition: Some("Internal_PT"),
        })
        .await
        .expect("getLine");
    client
        .list_lines_page(&LineSearch::default(), LineTag::ALL, 0, 10)
        .await
        .expect("listLine");
    client
        .execute_sql_query(
            SqlQuery::new("select userid from enduser where userid = ?").bind("a<b&'c"),
        )
        .await
        .expect("executeSQLQuery");
    let first = client
        .list_change(None, &[])
        .await
        .expect("listChange (first)");
    client
        .list_change(Some(&first.cursor), &["User", "Phone"])
        .await
        .expect("listChange (next)");
    client
        .remove_phone(Key::Name("CSFXSDUSER"))
        .await
        .expect("removePhone");
    client
        .remove_line(LineKey::Pattern {
            pattern: "88001",
            route_partition: Some("Internal_PT"),
        })
        .await
        .expect("removeLine");
    client
        .authenticate_user(
            "xsd.user",
            &UserCredential::Password(Secret::new("pa<ss> & \"word\"")),
        )
        .await
        .expect("doAuthenticateUser (password)");
    client
        .authenticate_user("xsd.user", &UserCredential::Pin(Secret::new("12345")))
        .await
        .expect("doAuthenticateUser (PIN)");
    client
        .remove_user(Key::Name("xsd.user"))
        .await
        .expect("removeUser");

    let sent = client.sent_envelopes();
    let ops: std::collections::BTreeSet<&str> = sent.iter().map(|(op, _)| *op).collect();
    assert_eq!(ops.len(), 18, "every operation was exercised: {ops:?}");
    lab.shutdown().await;
    sent.into_iter().map(|(_, body)| body).collect()
}

#[tokio::test]
async fn requests_validate_against_cisco_xsd_in_every_version() {
    for schema in [
        SchemaVersion::V11_5,
        SchemaVersion::V12_5,
        SchemaVersion::V14_0,
        SchemaVersion::V15_0,
    ] {
        let envelopes = exercise_every_operation(schema).await;
        if let Err(report) = ucbridge_testkit::validate_axl_bodies(&schema.to_string(), &envelopes)
        {
            panic!("requests for schema {schema} do not validate:\n{report}");
        }
    }
}
