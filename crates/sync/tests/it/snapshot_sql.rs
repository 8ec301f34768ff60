//! The full refresh reads users by keyset executeSQLQuery pages (users, then the devices
//! of exactly that page's pkid range). With pages of 7 users and 2 device rows, against
//! the lab over HTTPS, every snapshot user must be exactly what getUser gives (the
//! incremental path), so polls see no phantom changes: for the default source and for a
//! named cluster.

use std::time::Duration;

use ucbridge_axl::{
    AxlClient, AxlConfig, DirectoryNumber, Key, NewLine, NewPhone, NewUser, RetryPolicy, SqlQuery,
    UserUpdate,
};
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_store::{SourceUser, Store};
use ucbridge_sync::{SnapshotKeeper, SnapshotOptions};

async fn lab(users: usize, max_response_bytes: usize) -> (RunningLab, AxlClient) {
    let lab = RunningLab::start(LabConfig {
        users,
        seed: 15,
        max_response_bytes,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let defaults = LabConfig::default();
    let mut config = AxlConfig::new(lab.axl_url(), defaults.username, defaults.password);
    config.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };
    let client = AxlClient::connect(config).await.unwrap();
    (lab, client)
}

/// executeSQLUpdate, which the AXL client does not offer: the only way to make a user
/// inactive (status 2, what CUCM's LDAP sync does to users gone from the directory).
async fn sql_update(lab: &RunningLab, sql: &str) {
    let ca = reqwest::Certificate::from_pem(lab.ca_certificate_pem().unwrap().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let defaults = LabConfig::default();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:ns=\"http://www.cisco.com/AXL/API/14.0\"><soapenv:Header/><soapenv:Body>\
         <ns:executeSQLUpdate><sql>{sql}</sql></ns:executeSQLUpdate>\
         </soapenv:Body></soapenv:Envelope>"
    );
    let resp = http
        .post(lab.axl_url())
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"CUCM:DB ver=14.0 executeSQLUpdate\"")
        .basic_auth(defaults.username, Some(defaults.password))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    assert!(text.contains("<rowsUpdated>1</rowsUpdated>"), "{text}");
}

async fn add_phone(client: &AxlClient, name: &str) {
    let mut phone = NewPhone::sip(name, "Third-party SIP Device (Advanced)", "HQ");
    phone.security_profile =
        Some("Third-party SIP Device Advanced - Standard SIP Non-Secure Profile".into());
    client.add_phone(&phone).await.unwrap();
}

/// Give the users around the first page boundary what the seed lacks: several devices
/// (on the last user of page 1 and the first of page 2), an unpartitioned primary
/// extension, inactive status, every optional field and XML-special text; plus a user
/// with no extension and almost no fields.
async fn shape_users(lab: &RunningLab, client: &AxlClient, by_pkid: &[String]) {
    for name in ["SEPA00000000001", "SEPA00000000002", "SEPA00000000003"] {
        add_phone(client, name).await;
    }
    for name in ["SEPB00000000001", "SEPB00000000002"] {
        add_phone(client, name).await;
    }
    let devices = |names: &[&str]| UserUpdate {
        associated_devices: Some(names.iter().map(|n| n.to_string()).collect()),
        ..UserUpdate::default()
    };
    let update = |userid: String, u: UserUpdate| async move {
        client.update_user(Key::Name(&userid), &u).await.unwrap();
    };
    // Out of order on purpose: the snapshot keeps them sorted.
    let three = ["SEPA00000000003", "SEPA00000000001", "SEPA00000000002"];
    update(by_pkid[6].clone(), devices(&three)).await;
    let two = ["SEPB00000000002", "SEPB00000000001"];
    update(by_pkid[7].clone(), devices(&two)).await;
    client
        .add_line(&NewLine::device("79001", None))
        .await
        .unwrap();
    let unpartitioned = UserUpdate {
        primary_extension: Some(DirectoryNumber::new("79001", None)),
        ..UserUpdate::default()
    };
    update(by_pkid[8].clone(), unpartitioned).await;
    let everything = UserUpdate {
        middle_name: Some("Quincy".into()),
        display_name: Some("Dr. O'Brien & <Partners>".into()),
        manager: Some(by_pkid[0].clone()),
        mobile_number: Some("+1 408 555 0101".into()),
        home_number: Some("+1 408 555 0102".into()),
        pager_number: Some("+1 408 555 0103".into()),
        title: Some("R&D \"Lead\"".into()),
        directory_uri: Some("quincy@example.com".into()),
        ..UserUpdate::default()
    };
    update(by_pkid[3].clone(), everything).await;
    sql_update(
        lab,
        &format!(
            "UPDATE enduser SET status = 2 WHERE userid = '{}'",
            by_pkid[9]
        ),
    )
    .await;
    client
        .add_user(&NewUser {
            userid: "sql.noext".into(),
            last_name: "Noext".into(),
            ..NewUser::default()
        })
        .await
        .unwrap();
}

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (Store::open(&url).await.unwrap(), dir)
}

/// Compare field by field with getUser's answer (not through the keeper's own mapping).
async fn assert_like_get_user(client: &AxlClient, snap: &SourceUser) {
    let full = client.get_user(Key::Uuid(&snap.uuid)).await.unwrap();
    let who = &snap.userid;
    assert_eq!(full.uuid.as_deref(), Some(snap.uuid.as_str()), "{who}");
    assert_eq!(full.userid.as_deref(), Some(who.as_str()));
    assert_eq!(snap.first_name, full.first_name, "{who}");
    assert_eq!(snap.middle_name, full.middle_name, "{who}");
    assert_eq!(snap.last_name, full.last_name, "{who}");
    assert_eq!(snap.display_name, full.display_name, "{who}");
    assert_eq!(snap.mailid, full.mailid, "{who}");
    assert_eq!(snap.department, full.department, "{who}");
    assert_eq!(snap.manager, full.manager, "{who}");
    assert_eq!(snap.status, full.status, "{who}");
    assert_eq!(snap.directory_uri, full.directory_uri, "{who}");
    assert_eq!(snap.telephone_number, full.telephone_number, "{who}");
    assert_eq!(snap.title, full.title, "{who}");
    assert_eq!(snap.mobile_number, full.mobile_number, "{who}");
    assert_eq!(snap.home_number, full.home_number, "{who}");
    assert_eq!(snap.pager_number, full.pager_number, "{who}");
    let ext = full.primary_extension.as_ref();
    assert_eq!(
        snap.primary_extension.as_deref(),
        ext.map(|d| d.pattern.as_str()),
        "{who}"
    );
    assert_eq!(
        snap.primary_extension_partition.as_deref(),
        ext.and_then(|d| d.route_partition.as_deref()),
        "{who}"
    );
    let mut devices = full.associated_devices.clone();
    devices.sort();
    devices.dedup();
    assert_eq!(snap.associated_devices, devices, "{who}");
}

#[tokio::test]
async fn sql_pages_give_what_get_user_gives_and_polls_stay_quiet() {
    let (lab, client) = lab(30, LabConfig::default().max_response_bytes).await;
    let by_pkid: Vec<String> = client
        .execute_sql_query(SqlQuery::new("SELECT userid FROM enduser ORDER BY pkid"))
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.get("userid").map(str::to_owned))
        .collect();
    assert_eq!(by_pkid.len(), 30);
    shape_users(&lab, &client, &by_pkid).await;

    let (store, _dir) = store().await;
    let options = SnapshotOptions {
        page_size: 7,
        sql_page_size: 2,
        ..SnapshotOptions::default()
    };
    let cucm = SnapshotKeeper::new(client.clone(), store.clone(), options.clone());
    let east = SnapshotKeeper::for_source(client.clone(), store.clone(), options, "east", None)
        .await
        .unwrap();
    for keeper in [&cucm, &east] {
        let report = keeper.full_refresh(|_| {}).await.unwrap();
        // 31 users in pages of 7: 5 pages, the last one short.
        assert_eq!(report.pages, 5, "{}", keeper.source());
        assert_eq!(report.swap.total, 31, "{}", keeper.source());
    }

    let users = store.source_users().await.unwrap();
    assert_eq!(users.len(), 31);
    let (mut no_ext, mut partitioned, mut unpartitioned, mut several, mut inactive) =
        (0, 0, 0, 0, 0);
    for snap in &users {
        assert_like_get_user(&client, snap).await;
        let named = store.source_entry("east", &snap.uuid).await.unwrap();
        assert_eq!(named.map(|e| e.user).as_ref(), Some(snap), "east");
        no_ext += usize::from(snap.primary_extension.is_none());
        partitioned += usize::from(snap.primary_extension_partition.is_some());
        unpartitioned += usize::from(
            snap.primary_extension.is_some() && snap.primary_extension_partition.is_none(),
        );
        several += usize::from(snap.associated_devices.len() > 1);
        inactive += usize::from(snap.status == Some(2));
    }
    assert!(no_ext >= 1 && partitioned > 7, "{no_ext} {partitioned}");
    assert_eq!((unpartitioned, several, inactive), (1, 2, 1));

    // Unchanged CUCM: a poll and a second refresh change nothing.
    for keeper in [&cucm, &east] {
        let poll = keeper.poll_changes().await.unwrap();
        assert_eq!((poll.changes_seen, poll.rows_changed), (0, 0), "{poll:?}");
        let again = keeper.full_refresh(|_| {}).await.unwrap();
        let swap = again.swap;
        assert_eq!(
            (swap.added, swap.updated, swap.removed),
            (0, 0, 0),
            "{swap:?}"
        );
    }

    // Every user changed and changed back on CUCM: the poll fetches each with getUser
    // (the incremental path), and none differs from what the SQL pages stored.
    for snap in &users {
        let last = snap.last_name.clone().unwrap_or_default();
        for value in [format!("{last}x"), last] {
            let touch = UserUpdate {
                last_name: Some(value),
                ..UserUpdate::default()
            };
            client
                .update_user(Key::Name(&snap.userid), &touch)
                .await
                .unwrap();
        }
    }
    for keeper in [&cucm, &east] {
        let poll = keeper.poll_changes().await.unwrap();
        assert_eq!(poll.users_fetched, 31, "{}: {poll:?}", keeper.source());
        assert_eq!(poll.rows_changed, 0, "{}: {poll:?}", keeper.source());
    }
    lab.shutdown().await;
}

/// A CUCM answer over its size limit ("Query request too large") shrinks the SQL page to
/// what fits, and the refresh still reads every user exactly.
#[tokio::test]
async fn a_too_large_sql_answer_shrinks_the_page() {
    // About four user rows fit in 3,000 bytes; pages of 7 do not.
    let (lab, client) = lab(12, 3000).await;
    let (store, _dir) = store().await;
    let options = SnapshotOptions {
        page_size: 7,
        ..SnapshotOptions::default()
    };
    let keeper = SnapshotKeeper::new(client.clone(), store.clone(), options);
    let report = keeper.full_refresh(|_| {}).await.unwrap();
    assert_eq!(report.swap.total, 12);
    assert!(report.pages > 2, "pages of 7 were not shrunk: {report:?}");
    for snap in store.source_users().await.unwrap() {
        assert_like_get_user(&client, &snap).await;
    }
    lab.shutdown().await;
}
