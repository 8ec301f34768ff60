//! The lab over real HTTPS: CUCM behaviours, XSD validity, zeep samples.

use crate::common;

use std::time::Duration;

use common::*;
use ucbridge_lab::LabConfig;

const ALL_USER_TAGS: &str = "<returnedTags><firstName/><middleName/><lastName/><userid/><mailid/>\
    <department/><manager/><primaryExtension/><enableCti/><status/><directoryUri/>\
    <telephoneNumber/><title/><mobileNumber/><homeNumber/><pagerNumber/></returnedTags>";

#[tokio::test]
async fn responses_validate_against_the_xsd() {
    let (lab, client) = start(LabConfig {
        users: 30,
        seed: 3,
        ..LabConfig::default()
    })
    .await;
    let mut bodies = Vec::new();
    let mut keep = |a: Answer| {
        assert_eq!(a.status, 200, "{}", a.body);
        bodies.push(a.bytes());
    };
    keep(ok(&lab, &client, "getCCMVersion", "").await);
    let list = ok(
        &lab,
        &client,
        "listUser",
        &format!("<searchCriteria><userid>%</userid></searchCriteria>{ALL_USER_TAGS}<skip>0</skip><first>10</first>"),
    )
    .await;
    let first_user = list.text("userid").expect("seeded users are listed");
    keep(list);
    keep(ok(&lab, &client, "listUser", "<searchCriteria><userid>nobody%</userid></searchCriteria><returnedTags><userid/></returnedTags>").await);
    keep(
        ok(
            &lab,
            &client,
            "getUser",
            &format!("<userid>{first_user}</userid>"),
        )
        .await,
    );
    keep(
        ok(
            &lab,
            &client,
            "addUser",
            &add_user_xml("xsd.user", "<digestCredentials>s3cret</digestCredentials>"),
        )
        .await,
    );
    keep(ok(&lab, &client, "addLine", "<line><pattern>4100</pattern><description>xsd</description><usage>Device</usage><routePartitionName>Internal_PT</routePartitionName></line>").await);
    keep(ok(&lab, &client, "addPhone", &add_phone_xml("SEPAAAABBBBCCCC", "<lines><line><index>1</index><label>L1</label><dirn><pattern>4100</pattern><routePartitionName>Internal_PT</routePartitionName></dirn></line></lines><ownerUserName>xsd.user</ownerUserName><digestUser>xsd.user</digestUser>")).await);
    keep(ok(&lab, &client, "updateUser", "<userid>xsd.user</userid><associatedDevices><device>SEPAAAABBBBCCCC</device></associatedDevices><primaryExtension><pattern>4100</pattern><routePartitionName>Internal_PT</routePartitionName></primaryExtension><title>Tester</title>").await);
    keep(ok(&lab, &client, "getUser", "<userid>xsd.user</userid>").await);
    keep(
        ok(
            &lab,
            &client,
            "updatePhone",
            "<name>SEPAAAABBBBCCCC</name><description>updated</description>",
        )
        .await,
    );
    let phone = ok(&lab, &client, "getPhone", "<name>SEPAAAABBBBCCCC</name>").await;
    assert_eq!(phone.text("digestUser").as_deref(), Some("xsd.user"));
    assert_eq!(phone.text("description").as_deref(), Some("updated"));
    keep(phone);
    keep(ok(&lab, &client, "listPhone", "<searchCriteria><name>SEP%</name></searchCriteria><returnedTags><name/><description/><product/><model/><class/><protocol/><protocolSide/><callingSearchSpaceName/><devicePoolName/><commonPhoneConfigName/><locationName/><securityProfileName/><sipProfileName/><ownerUserName/><digestUser/></returnedTags><first>5</first>").await);
    keep(
        ok(
            &lab,
            &client,
            "getLine",
            "<pattern>4100</pattern><routePartitionName>Internal_PT</routePartitionName>",
        )
        .await,
    );
    keep(ok(&lab, &client, "listLine", "<searchCriteria><pattern>%</pattern></searchCriteria><returnedTags><pattern/><description/><usage/><routePartitionName/><alertingName/><shareLineAppearanceCssName/></returnedTags><first>5</first>").await);
    keep(
        ok(
            &lab,
            &client,
            "executeSQLQuery",
            "<sql>select first 5 pkid, userid, enablecti, mailid from enduser</sql>",
        )
        .await,
    );
    keep(ok(&lab, &client, "removePhone", "<name>SEPAAAABBBBCCCC</name>").await);
    keep(ok(&lab, &client, "removeUser", "<userid>xsd.user</userid>").await);
    ucbridge_testkit::validate_axl_bodies("14.0", &bodies).expect("14.0 responses validate");

    // Older schemas on the same CUCM 14: 11.5 LUser still has displayName.
    let mut older = Vec::new();
    for version in ["11.5", "12.5"] {
        let a = call(&lab, &client, "listUser", version, &format!("<searchCriteria><userid>%</userid></searchCriteria>{ALL_USER_TAGS}<first>3</first>")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a
            .body
            .contains(&format!("http://www.cisco.com/AXL/API/{version}")));
        let g = call(&lab, &client, "getPhone", version, "<name>nope</name>").await;
        assert_eq!(g.status, 500);
        older.push((version, a.bytes()));
    }
    for (version, body) in older {
        ucbridge_testkit::validate_axl_bodies(version, &[body]).expect("older schema validates");
    }
    lab.shutdown().await;

    let (lab15, client) = start(LabConfig {
        cucm_version: "15.0.1.10000(1)".into(),
        users: 5,
        ..LabConfig::default()
    })
    .await;
    let a = call(
        &lab15,
        &client,
        "listUser",
        "15.0",
        &format!("<searchCriteria><userid>%</userid></searchCriteria>{ALL_USER_TAGS}"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = call(&lab15, &client, "getCCMVersion", "15.0", "").await;
    assert_eq!(v.text("version").as_deref(), Some("15.0.1.10000(1)"));
    ucbridge_testkit::validate_axl_bodies("15.0", &[a.bytes(), v.bytes()]).expect("15.0 validates");
    lab15.shutdown().await;
}

#[tokio::test]
async fn zeep_samples_replay() {
    let samples = [
        "getCCMVersion",
        "addUser-digestCredentials",
        "addLine",
        "addPhone-sip-digestUser",
        "getUser",
        "listUser",
        "updatePhone",
        "executeSQLQuery-digest-in",
    ];
    let (lab, client) = start_default().await;
    // Prerequisite of getUser/updatePhone samples: user johnq.
    ok(&lab, &client, "addUser", &add_user_xml("johnq", "")).await;
    let mut sql_answer = None;
    for name in samples {
        let Some(path) = ucbridge_testkit::fixture(&format!(
            "axl-samples/{name}.request.zeep-generated-14.0.xml"
        )) else {
            return;
        };
        let body = std::fs::read_to_string(&path).expect("sample readable");
        let op = name.split('-').next().expect("operation name");
        let action = format!("\"CUCM:DB ver=14.0 {op}\"");
        let a = post(&lab, &client, Some(&action), body, true).await;
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        if op == "executeSQLQuery" {
            sql_answer = Some(a);
        }
    }
    let sql = sql_answer.expect("SQL sample ran");
    assert_eq!(sql.texts("userid"), vec!["rsrc.sp.000011116666"]);
    assert_eq!(sql.texts("name"), vec!["SEP001122334455"]);
    // updatePhone's sample made johnq the owner.
    let phone = ok(&lab, &client, "getPhone", "<name>SEP001122334455</name>").await;
    assert_eq!(phone.text("ownerUserName").as_deref(), Some("johnq"));
    assert_eq!(phone.texts("pattern"), vec!["4001"]);
    lab.shutdown().await;
}

#[tokio::test]
async fn authentication_and_sessions() {
    let (lab, client) = start(LabConfig {
        session_idle_timeout: Duration::from_millis(300),
        ..LabConfig::default()
    })
    .await;
    let body = || envelope("getCCMVersion", "14.0", "");
    let action = Some("CUCM:DB ver=14.0 getCCMVersion");

    let anon = post(&lab, &client, action, body(), false).await;
    assert_eq!(anon.status, 401);
    assert_eq!(
        anon.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"Cisco AXL API\"")
    );
    assert!(anon.body.contains("HTTP Status 401"));

    let wrong = client
        .post(lab.axl_url())
        .basic_auth(USER, Some("wrong"))
        .body(body())
        .send()
        .await
        .expect("answered");
    assert_eq!(wrong.status().as_u16(), 401);

    let page = client
        .get(lab.axl_url())
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("answered");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .text()
        .await
        .expect("body")
        .contains("The AXL Web Service is working and accepting requests"));

    let first = post(&lab, &client, action, body(), true).await;
    assert_eq!(first.status, 200);
    let cookie = first
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("session cookie set")
        .to_owned();
    assert!(cookie.starts_with("JSESSIONIDSSO="), "{cookie}");
    assert!(cookie.contains("Path=/; Secure; HttpOnly"));
    let pair = cookie.split(';').next().expect("name=value").to_owned();

    let reuse = client
        .post(lab.axl_url())
        .header("SOAPAction", "CUCM:DB ver=14.0 getCCMVersion")
        .header("Cookie", &pair)
        .body(body())
        .send()
        .await
        .expect("answered");
    assert_eq!(reuse.status().as_u16(), 200);
    assert_eq!(lab.stats().cookie_session_hits, 1);

    tokio::time::sleep(Duration::from_millis(450)).await;
    let expired = client
        .post(lab.axl_url())
        .header("Cookie", &pair)
        .body(body())
        .send()
        .await
        .expect("answered");
    assert_eq!(expired.status().as_u16(), 404);
    let unknown = client
        .post(lab.axl_url())
        .header("Cookie", "JSESSIONIDSSO=FFFF")
        .body(body())
        .send()
        .await
        .expect("answered");
    assert_eq!(unknown.status().as_u16(), 404);
    assert!(lab.stats().basic_auth_checks >= 3);
    lab.shutdown().await;
}

#[tokio::test]
async fn versioning_and_axis2_faults() {
    let (lab, client) = start_default().await;
    // 15.0 is not accepted by CUCM 14 (notes §1 table).
    let a = call(&lab, &client, "getCCMVersion", "15.0", "").await;
    assert_eq!(a.status, 599);
    assert!(a.body.contains("HTTP Status 599"));
    // Header and namespace disagree.
    let a = post(
        &lab,
        &client,
        Some("\"CUCM:DB ver=12.5 getCCMVersion\""),
        envelope("getCCMVersion", "14.0", ""),
        true,
    )
    .await;
    assert_eq!(a.status, 599);
    // Version-only, unquoted SOAPAction (real 12.5 accepted it).
    let a = post(
        &lab,
        &client,
        Some("CUCM:DB ver=12.5"),
        envelope("getCCMVersion", "12.5", ""),
        true,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Discovery: no SOAPAction + namespace 1.0 → lowest schema, 11.0 on CUCM 14.
    let a = post(
        &lab,
        &client,
        None,
        envelope("getCCMVersion", "1.0", ""),
        true,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body
            .contains("xmlns:ns=\"http://www.cisco.com/AXL/API/11.0\""),
        "{}",
        a.body
    );
    assert_eq!(a.text("version").as_deref(), Some("14.0.1.14900(11)"));
    // Malformed XML → 599.
    let a = post(
        &lab,
        &client,
        Some("CUCM:DB ver=14.0 getCCMVersion"),
        "<soapenv:Envelope><oops".into(),
        true,
    )
    .await;
    assert_eq!(a.status, 599);
    // SOAP::Lite's action form (seed 001) is served by the body element; when the body
    // names no operation either, Axis2's fault quotes the action as sent.
    let a = post(
        &lab,
        &client,
        Some("\"http://www.cisco.com/AXL/API/14.0#addPhonee\""),
        envelope("addPhonee", "14.0", &add_phone_xml("SEP000000000001", "")),
        true,
    )
    .await;
    assert_eq!(a.status, 500);
    assert!(a.body.contains("axis2ns2:Client"));
    assert!(
        a.body
            .contains("WSA Action = http://www.cisco.com/AXL/API/14.0#addPhonee"),
        "{}",
        a.body
    );
    // The lab's real origin where CUCM names its own host and port (issue 11 item 7).
    let origin = lab.axl_url().trim_end_matches("/axl/").to_owned();
    assert!(
        a.body
            .contains(&format!("{origin}/axl/services/AXLAPIService")),
        "{}",
        a.body
    );
    assert!(a.text("axlcode").is_none());
    assert_eq!(
        a.headers.get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    // Unknown operation.
    let a = call(&lab, &client, "getCCMVersion123", "14.0", "").await;
    assert_eq!(a.status, 500);
    assert!(
        a.body
            .contains("WSA Action = CUCM:DB ver=14.0 getCCMVersion123"),
        "{}",
        a.body
    );
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/xml;charset=UTF-8")
    );
    // Also served without the trailing slash.
    let url = lab.axl_url();
    let r = client
        .post(url.trim_end_matches('/'))
        .basic_auth(USER, Some(PASSWORD))
        .header("SOAPAction", "CUCM:DB ver=14.0 getCCMVersion")
        .body(envelope("getCCMVersion", "14.0", ""))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 200);
    let stats = lab.stats();
    assert!(stats.faults >= 2);
    assert!(
        stats
            .by_operation
            .get("getCCMVersion")
            .copied()
            .unwrap_or(0)
            >= 3
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn axl_faults() {
    let (lab, client) = start_default().await;
    ok(&lab, &client, "addUser", &add_user_xml("dup", "")).await;
    let a = call(&lab, &client, "addUser", "14.0", &add_user_xml("dup", "")).await;
    assert_eq!(a.status, 500);
    assert_eq!(a.axlcode(), Some(-239));
    assert_eq!(a.text("faultcode").as_deref(), Some("soapenv:Client"));
    assert_eq!(
        a.text("faultstring").as_deref(),
        Some(
            "Could not insert new row - duplicate value in a UNIQUE INDEX column (Unique Index:)."
        )
    );
    assert_eq!(a.text("request").as_deref(), Some("addUser"));

    let line = "<line><pattern>5000</pattern><usage>Device</usage><routePartitionName>Internal_PT</routePartitionName></line>";
    ok(&lab, &client, "addLine", line).await;
    let a = call(&lab, &client, "addLine", "14.0", line).await;
    assert_eq!(a.axlcode(), Some(4052), "{}", a.body);
    assert_eq!(
        a.text("axlmessage").as_deref(),
        Some("Cannot insert or update pattern. A DN exists with the same pattern and partition.")
    );
    // Same pattern, no partition: a different DN.
    ok(
        &lab,
        &client,
        "addLine",
        "<line><pattern>5000</pattern><usage>Device</usage></line>",
    )
    .await;
    let a = call(&lab, &client, "addLine", "14.0", "<line><pattern>5000</pattern><usage>Device</usage><routePartitionName xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:nil=\"true\"/></line>").await;
    assert_eq!(a.axlcode(), Some(4052));

    let bad_pool = add_phone_xml("SEP00000000AAAA", "").replace(
        "<devicePoolName>Default</devicePoolName>",
        "<devicePoolName>Nope</devicePoolName>",
    );
    let a = call(&lab, &client, "addPhone", "14.0", &bad_pool).await;
    assert_eq!(a.axlcode(), Some(5007));
    assert_eq!(
        a.text("faultstring").as_deref(),
        Some("Item not valid: The specified Device Pool 'Nope' was not found")
    );
    let a = call(
        &lab,
        &client,
        "addPhone",
        "14.0",
        &add_phone_xml("SEP00000000AAAA", "<digestUser>ghost</digestUser>"),
    )
    .await;
    assert_eq!(
        a.text("faultstring").as_deref(),
        Some("Item not valid: The specified User 'ghost' was not found")
    );
    // The failed add left nothing behind.
    let a = call(
        &lab,
        &client,
        "getPhone",
        "14.0",
        "<name>SEP00000000AAAA</name>",
    )
    .await;
    assert_eq!(a.axlcode(), Some(5007));
    assert_eq!(
        a.text("faultstring").as_deref(),
        Some("Item not valid: The specified Phone was not found")
    );
    let a = call(&lab, &client, "getUser", "14.0", "<userid>ghost</userid>").await;
    assert_eq!(
        a.text("faultstring").as_deref(),
        Some("Item not valid: The specified User was not found")
    );
    let a = call(
        &lab,
        &client,
        "removeUser",
        "14.0",
        "<uuid>{00000000-0000-0000-0000-000000000000}</uuid>",
    )
    .await;
    assert_eq!(a.axlcode(), Some(5007));
    let a = call(
        &lab,
        &client,
        "addUser",
        "14.0",
        "<user><firstName>x</firstName><userid>nolast</userid></user>",
    )
    .await;
    assert_eq!(a.axlcode(), Some(5003));
    let a = call(
        &lab,
        &client,
        "executeSQLQuery",
        "14.0",
        "<sql>delete from enduser</sql>",
    )
    .await;
    assert_eq!(a.text("faultcode").as_deref(), Some("soapenv:Client"));
    let a = call(
        &lab,
        &client,
        "executeSQLQuery",
        "14.0",
        "<sql>select x from nowhere</sql>",
    )
    .await;
    assert_eq!(a.axlcode(), Some(-206), "{}", a.body);
    lab.shutdown().await;
}

fn suggestion(faultstring: &str) -> (u64, u64) {
    let total = faultstring
        .split("Total rows matched: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("total rows in the fault");
    let fit = faultstring
        .split("less than ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("suggestion in the fault");
    (total, fit)
}

#[tokio::test]
async fn size_cap_fault_and_its_suggestion_works() {
    let (lab, client) = start(LabConfig {
        users: 400,
        seed: 9,
        max_response_bytes: 40_000,
        ..LabConfig::default()
    })
    .await;
    let tags = ALL_USER_TAGS;
    let a = call(
        &lab,
        &client,
        "listUser",
        "14.0",
        &format!("<searchCriteria><userid>%</userid></searchCriteria>{tags}"),
    )
    .await;
    assert_eq!(a.status, 500);
    assert_eq!(a.axlcode(), Some(-1));
    assert_eq!(a.text("faultcode").as_deref(), Some("soapenv:Server"));
    let message = a.text("faultstring").expect("faultstring");
    assert!(message.starts_with("Query request too large. Total rows matched: 400 rows. Suggestive Row Fetch: less than "), "{message}");
    let (_, fit) = suggestion(&message);
    assert!(fit > 10 && fit < 400, "{fit}");
    let page = call(&lab, &client, "listUser", "14.0", &format!("<searchCriteria><userid>%</userid></searchCriteria>{tags}<skip>0</skip><first>{}</first>", fit - 1)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.texts("userid").len() as u64, fit - 1);
    assert!(page.body.len() <= 40_000);

    let a = call(
        &lab,
        &client,
        "executeSQLQuery",
        "14.0",
        "<sql>select * from enduser</sql>",
    )
    .await;
    assert_eq!(a.axlcode(), Some(-1));
    let (total, fit) = suggestion(&a.text("faultstring").expect("faultstring"));
    assert_eq!(total, 400);
    let sql = format!("<sql>select skip 10 first {} * from enduser</sql>", fit - 1);
    let a = call(&lab, &client, "executeSQLQuery", "14.0", &sql).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.texts("row").len() as u64, fit - 1);
    lab.shutdown().await;
}

#[tokio::test]
async fn throttling_returns_503() {
    let (lab, client) = start(LabConfig {
        max_concurrent_requests: Some(1),
        writes_per_minute: Some(2),
        ..LabConfig::default()
    })
    .await;
    lab.faults().delay_responses(Duration::from_millis(300));
    let calls = (0..4).map(|_| call(&lab, &client, "getCCMVersion", "14.0", ""));
    let answers = futures::future::join_all(calls).await;
    let busy = answers.iter().filter(|a| a.status == 503).count();
    assert!(busy >= 1, "some concurrent requests were refused");
    assert!(answers.iter().any(|a| a.status == 200));
    assert!(answers
        .iter()
        .filter(|a| a.status == 503)
        .all(|a| a.body.contains("HTTP Status 503")));
    lab.faults().delay_responses(Duration::ZERO);

    ok(&lab, &client, "addUser", &add_user_xml("w1", "")).await;
    ok(&lab, &client, "addUser", &add_user_xml("w2", "")).await;
    let third = call(&lab, &client, "addUser", "14.0", &add_user_xml("w3", "")).await;
    assert_eq!(third.status, 503);
    // Reads are not rate limited.
    ok(&lab, &client, "getUser", "<userid>w1</userid>").await;
    assert_eq!(lab.stats().throttled as usize, busy + 1);
    lab.shutdown().await;
}

#[tokio::test]
async fn digest_in_sql_and_skip_first() {
    let (lab, client) = start(LabConfig {
        users: 20,
        seed: 5,
        ..LabConfig::default()
    })
    .await;
    ok(
        &lab,
        &client,
        "addUser",
        &add_user_xml("dect.digest", "<digestCredentials>pw</digestCredentials>"),
    )
    .await;
    ok(&lab, &client, "addPhone", &add_phone_xml("SEP0011223344AA", "<lines><line><index>1</index><dirn><pattern>7001</pattern><routePartitionName>Internal_PT</routePartitionName></dirn></line></lines><digestUser>dect.digest</digestUser>")).await;
    let q = "<sql>select eu.userid, d.name from enduser eu join enduserdevicemap m on m.fkenduser = eu.pkid join device d on d.pkid = m.fkdevice where m.tkuserassociation = 3</sql>";
    let a = ok(&lab, &client, "executeSQLQuery", q).await;
    assert_eq!(a.texts("userid"), vec!["dect.digest"]);
    assert_eq!(a.texts("name"), vec!["SEP0011223344AA"]);
    let a = ok(
        &lab,
        &client,
        "executeSQLQuery",
        "<sql>select t.name from typeuserassociation t where t.enum = 3</sql>",
    )
    .await;
    assert_eq!(a.texts("name"), vec!["Digest In"]);

    let all = ok(
        &lab,
        &client,
        "executeSQLQuery",
        "<sql>select userid from enduser order by userid</sql>",
    )
    .await;
    let all = all.texts("userid");
    let page = ok(
        &lab,
        &client,
        "executeSQLQuery",
        "<sql>SELECT SKIP 5 FIRST 4 userid FROM enduser ORDER BY userid</sql>",
    )
    .await;
    assert_eq!(page.texts("userid"), all[5..9].to_vec());
    // NULL → empty element, booleans t/f, count(*) named "count".
    let a = ok(
        &lab,
        &client,
        "executeSQLQuery",
        "<sql>select count(*), max(enablecti) from enduser where userid = 'dect.digest'</sql>",
    )
    .await;
    assert_eq!(a.texts("count"), vec!["1"]);
    let a = ok(
        &lab,
        &client,
        "executeSQLQuery",
        "<sql>select mailid, enablecti from enduser where userid = 'dect.digest'</sql>",
    )
    .await;
    assert!(a.body.contains("<mailid/>"), "{}", a.body);
    assert_eq!(a.texts("enablecti"), vec!["t"]);
    let empty = ok(
        &lab,
        &client,
        "executeSQLQuery",
        "<sql>select userid from enduser where 1 = 0</sql>",
    )
    .await;
    assert!(empty.body.contains("<return/>"));
    lab.shutdown().await;
}

#[tokio::test]
async fn fault_injection() {
    let (lab, client) = start_default().await;
    lab.faults().drop_next_responses(1);
    let resp = client
        .post(lab.axl_url())
        .basic_auth(USER, Some(PASSWORD))
        .header("SOAPAction", "CUCM:DB ver=14.0 getCCMVersion")
        .body(envelope("getCCMVersion", "14.0", ""))
        .send()
        .await;
    let broken = match resp {
        Err(_) => true,
        Ok(r) => r.text().await.is_err(),
    };
    assert!(broken, "a dropped response must surface as an error");
    ok(&lab, &client, "getCCMVersion", "").await;

    lab.faults().fail_next_with_status(2, 502);
    assert_eq!(
        call(&lab, &client, "getCCMVersion", "14.0", "")
            .await
            .status,
        502
    );
    assert_eq!(
        call(&lab, &client, "getCCMVersion", "14.0", "")
            .await
            .status,
        502
    );
    ok(&lab, &client, "getCCMVersion", "").await;
    lab.shutdown().await;
}

#[tokio::test]
async fn seeding_is_deterministic_and_paging_is_stable() {
    let config = LabConfig {
        users: 2_000,
        seed: 42,
        tls: false,
        ..LabConfig::default()
    };
    let first_page = |lab, client| async move {
        let a = call(lab, client, "listUser", "14.0", "<searchCriteria><userid>%</userid></searchCriteria><returnedTags><userid/><mailid/><telephoneNumber/></returnedTags><first>20</first>").await;
        (a.texts("userid"), a.body)
    };
    let (a, ca) = start(config.clone()).await;
    let (b, cb) = start(config.clone()).await;
    let (c, cc) = start(LabConfig { seed: 43, ..config }).await;
    let (ids_a, body_a) = first_page(&a, &ca).await;
    let (_, body_b) = first_page(&b, &cb).await;
    let (ids_c, _) = first_page(&c, &cc).await;
    assert_eq!(ids_a.len(), 20);
    assert_eq!(body_a, body_b, "same seed, same users and uuids");
    assert_ne!(ids_a, ids_c);
    assert!(a.axl_url().starts_with("http://"));

    // Pages of 500 cover everyone exactly once.
    let mut seen = std::collections::HashSet::new();
    for page in 0..5 {
        let r = call(&a, &ca, "listUser", "14.0", &format!("<searchCriteria><userid>%</userid></searchCriteria><returnedTags><userid/></returnedTags><skip>{}</skip><first>500</first>", page * 500)).await;
        let ids = r.texts("userid");
        if page == 4 {
            assert!(r.body.contains("<return/>"), "past the end: empty return");
        }
        for id in ids {
            assert!(seen.insert(id), "no user on two pages");
        }
    }
    assert_eq!(seen.len(), 2_000);
    // searchCriteria is a case-insensitive LIKE.
    let r = call(&a, &ca, "listUser", "14.0", "<searchCriteria><lastName>SMITH</lastName></searchCriteria><returnedTags><lastName/></returnedTags>").await;
    assert!(r.texts("lastName").iter().all(|n| n == "Smith"));
    assert!(!r.texts("lastName").is_empty());
    let phones = call(&a, &ca, "listPhone", "14.0", "<searchCriteria><devicePoolName>HQ</devicePoolName></searchCriteria><returnedTags><name/><devicePoolName/></returnedTags>").await;
    assert!(phones.texts("name").len() > 100);
    assert!(phones.texts("devicePoolName").iter().all(|p| p == "HQ"));
    for lab in [a, b, c] {
        lab.shutdown().await;
    }
}

#[tokio::test]
async fn user_data_is_escaped_both_ways() {
    let (lab, client) = start_default().await;
    let tricky = "a&lt;b&amp;\"c"; // a<b&"c once unescaped
    ok(
        &lab,
        &client,
        "addUser",
        &add_user_xml(tricky, "<department>R&amp;D &lt;lab&gt;</department>"),
    )
    .await;
    let a = ok(
        &lab,
        &client,
        "getUser",
        &format!("<userid>{tricky}</userid>"),
    )
    .await;
    assert_eq!(a.text("userid").as_deref(), Some("a<b&\"c"));
    assert_eq!(a.text("department").as_deref(), Some("R&D <lab>"));
    let q = ok(
        &lab,
        &client,
        "executeSQLQuery",
        "<sql>select userid from enduser where department like 'R&amp;D%'</sql>",
    )
    .await;
    assert_eq!(q.texts("userid"), vec!["a<b&\"c"]);
    let l = ok(&lab, &client, "listUser", "<searchCriteria><userid>a&lt;%</userid></searchCriteria><returnedTags><userid/></returnedTags>").await;
    assert_eq!(l.texts("userid"), vec!["a<b&\"c"]);
    ucbridge_testkit::validate_axl_bodies("14.0", &[a.bytes(), q.bytes(), l.bytes()])
        .expect("escaped responses validate");
    lab.shutdown().await;
}

/// Seed 001's request as Perl SOAP::Lite sends it: `uri` as the default namespace of the
/// operation element, the AXL 7 `newPhone` wrapper, `xsi:type` on every value, the seed's
/// element order.
fn soap_lite_add_phone(version: &str, name: &str, digest_user: &str) -> String {
    let field = |tag: &str, value: &str| format!("<{tag} xsi:type=\"xsd:string\">{value}</{tag}>");
    let fields = [
        ("name", name),
        ("description", "DECT handset"),
        ("devicePoolName", "Default"),
        ("model", "Third-party SIP Device (Advanced)"),
        ("product", "Third-party SIP Device (Advanced)"),
        ("protocol", "SIP"),
        ("digestUser", digest_user),
        ("sipProfileName", "Standard SIP Profile"),
        ("class", "Phone"),
        (
            "securityProfileName",
            "Third-party SIP Device Advanced - Standard SIP Secure Profile",
        ),
    ];
    let inner: String = fields.iter().map(|(t, v)| field(t, v)).collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:soapenc=\"http://schemas.xmlsoap.org/soap/encoding/\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" \
         xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>\
         <addPhone xmlns=\"http://www.cisco.com/AXL/API/{version}\"><newPhone>{inner}</newPhone>\
         </addPhone></soap:Body></soap:Envelope>"
    )
}

async fn digest_in_rows(
    lab: &ucbridge_lab::RunningLab,
    client: &reqwest::Client,
    device: &str,
) -> Vec<String> {
    let q = format!(
        "<sql>select eu.userid from enduserdevicemap m join enduser eu on eu.pkid = m.fkenduser \
         join device d on d.pkid = m.fkdevice where m.tkuserassociation = 3 and d.name = '{device}'</sql>"
    );
    ok(lab, client, "executeSQLQuery", &q).await.texts("userid")
}

#[tokio::test]
async fn seed_001_url_form_soap_action_silently_drops_digest_user() {
    let (lab, client) = start_default().await;
    for user in ["rsrc.sp.000011116666", "rsrc.sp.000011117777"] {
        ok(
            &lab,
            &client,
            "addUser",
            &add_user_xml(user, "<digestCredentials>pw</digestCredentials>"),
        )
        .await;
    }
    // SOAP::Lite's default action, raw HTTP: served (no fault) under the lowest schema of
    // CUCM 14, 11.0, and digestUser is gone.
    let url_action = "\"http://www.cisco.com/AXL/API/14.0#addPhone\"";
    let body = soap_lite_add_phone("14.0", "SEP0000000D0001", "rsrc.sp.000011116666");
    let a = post(&lab, &client, Some(url_action), body, true).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body
            .contains("xmlns:ns=\"http://www.cisco.com/AXL/API/11.0\""),
        "{}",
        a.body
    );
    assert!(
        a.text("return").is_some_and(|uuid| uuid.starts_with('{')),
        "{}",
        a.body
    );
    let phone = ok(&lab, &client, "getPhone", "<name>SEP0000000D0001</name>").await;
    assert_eq!(
        phone.text("digestUser").as_deref(),
        Some(""),
        "digest user \"None\""
    );
    assert_eq!(phone.text("description").as_deref(), Some("DECT handset"));
    assert_eq!(
        phone.text("securityProfileName").as_deref(),
        Some("Third-party SIP Device Advanced - Standard SIP Secure Profile")
    );
    assert!(digest_in_rows(&lab, &client, "SEP0000000D0001")
        .await
        .is_empty());
    // updatePhone on the same path: the rest applies, digestUser does not.
    let update = envelope(
        "updatePhone",
        "14.0",
        "<name>SEP0000000D0001</name><description>again</description><digestUser>rsrc.sp.000011116666</digestUser>",
    );
    let a = post(
        &lab,
        &client,
        Some("http://www.cisco.com/AXL/API/14.0#updatePhone"),
        update,
        true,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let phone = ok(&lab, &client, "getPhone", "<name>SEP0000000D0001</name>").await;
    assert_eq!(phone.text("description").as_deref(), Some("again"));
    assert_eq!(phone.text("digestUser").as_deref(), Some(""));

    // The seed's fix, in today's form: the CUCM action keeps digestUser.
    let body = soap_lite_add_phone("14.0", "SEP0000000D0002", "rsrc.sp.000011117777");
    let a = post(
        &lab,
        &client,
        Some("\"CUCM:DB ver=14.0 addPhone\""),
        body,
        true,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let kept = ok(&lab, &client, "getPhone", "<name>SEP0000000D0002</name>").await;
    assert_eq!(
        kept.text("digestUser").as_deref(),
        Some("rsrc.sp.000011117777")
    );
    assert_eq!(
        digest_in_rows(&lab, &client, "SEP0000000D0002").await,
        ["rsrc.sp.000011117777"]
    );
    ucbridge_testkit::validate_axl_bodies("14.0", &[phone.bytes(), kept.bytes()])
        .expect("getPhone responses validate");

    // A CUCM action with a schema CUCM 14 does not serve fails (seed: `ver=8.5` failed), and
    // on the fallback path the body namespace must be served too (lab choice).
    let body = soap_lite_add_phone("8.5", "SEP0000000D0003", "rsrc.sp.000011117777");
    let a = post(
        &lab,
        &client,
        Some("\"CUCM:DB ver=8.5 addPhone\""),
        body.clone(),
        true,
    )
    .await;
    assert_eq!(a.status, 599);
    let a = post(
        &lab,
        &client,
        Some("\"http://www.cisco.com/AXL/API/8.5#addPhone\""),
        body,
        true,
    )
    .await;
    assert_eq!(a.status, 599);
    let a = call(
        &lab,
        &client,
        "getPhone",
        "14.0",
        "<name>SEP0000000D0003</name>",
    )
    .await;
    assert_eq!(a.axlcode(), Some(5007), "nothing was added");

    // The switch that makes correct requests behave like the URL form, and back.
    lab.faults().force_silent_drops(true);
    ok(
        &lab,
        &client,
        "updatePhone",
        "<name>SEP0000000D0001</name><digestUser>rsrc.sp.000011116666</digestUser>",
    )
    .await;
    let phone = ok(&lab, &client, "getPhone", "<name>SEP0000000D0001</name>").await;
    assert_eq!(phone.text("digestUser").as_deref(), Some(""));
    lab.faults().force_silent_drops(false);
    ok(
        &lab,
        &client,
        "updatePhone",
        "<name>SEP0000000D0001</name><digestUser>rsrc.sp.000011116666</digestUser>",
    )
    .await;
    let phone = ok(&lab, &client, "getPhone", "<name>SEP0000000D0001</name>").await;
    assert_eq!(
        phone.text("digestUser").as_deref(),
        Some("rsrc.sp.000011116666")
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn execute_sql_update_inserts_updates_deletes_and_refuses_the_rest() {
    let (lab, client) = start(LabConfig {
        users: 12,
        seed: 7,
        ..LabConfig::default()
    })
    .await;
    let update = |sql: &str| format!("<sql>{sql}</sql>");
    let mut bodies = Vec::new();
    let a = ok(&lab, &client, "executeSQLUpdate", &update("insert into routepartition (pkid, name) values ('0c0ffee0-0000-4000-8000-000000000001', 'SQL_PT')")).await;
    assert_eq!(a.texts("rowsUpdated"), ["1"]);
    bodies.push(a.bytes());
    let a = ok(
        &lab,
        &client,
        "executeSQLQuery",
        &update("select name from routepartition where name = 'SQL_PT'"),
    )
    .await;
    assert_eq!(a.texts("name"), ["SQL_PT"]);
    let users = ok(
        &lab,
        &client,
        "executeSQLQuery",
        &update("select count(*) as n from enduser"),
    )
    .await;
    let a = ok(
        &lab,
        &client,
        "executeSQLUpdate",
        &update("update enduser set department = 'SQL' where 1 = 1;"),
    )
    .await;
    assert_eq!(a.texts("rowsUpdated"), users.texts("n"));
    assert_eq!(a.texts("rowsUpdated"), ["12"]);
    bodies.push(a.bytes());
    let a = ok(&lab, &client, "getUser", &format!("<userid>{}</userid>", ok(&lab, &client, "listUser", "<searchCriteria><userid>%</userid></searchCriteria><returnedTags><userid/></returnedTags><first>1</first>").await.text("userid").expect("a user"))).await;
    assert_eq!(a.text("department").as_deref(), Some("SQL"));
    let a = ok(
        &lab,
        &client,
        "executeSQLUpdate",
        &update("DELETE FROM routepartition WHERE name = 'nothing'"),
    )
    .await;
    assert_eq!(a.texts("rowsUpdated"), ["0"]);
    bodies.push(a.bytes());
    let a = ok(
        &lab,
        &client,
        "executeSQLUpdate",
        &update("delete from routepartition where name = 'SQL_PT'"),
    )
    .await;
    assert_eq!(a.texts("rowsUpdated"), ["1"]);
    bodies.push(a.bytes());
    ucbridge_testkit::validate_axl_bodies("14.0", &bodies).expect("rowsUpdated validates");

    // Refused: a select, DDL, two statements, RETURNING; nothing of them is applied.
    for sql in [
        "select * from enduser",
        "drop table enduser",
        "delete from enduser; delete from device",
        "update enduser set department = 'X' returning userid",
    ] {
        let a = call(&lab, &client, "executeSQLUpdate", "14.0", &update(sql)).await;
        assert_eq!(a.status, 500, "{sql}: {}", a.body);
        assert_eq!(
            a.text("faultcode").as_deref(),
            Some("soapenv:Client"),
            "{sql}"
        );
        assert_ne!(a.axlcode(), None, "{sql}");
        assert_eq!(a.text("request").as_deref(), Some("executeSQLUpdate"));
    }
    // Nor does executeSQLQuery run (or silently skip) a second statement.
    let a = call(
        &lab,
        &client,
        "executeSQLQuery",
        "14.0",
        &update("select userid from enduser; delete from enduser"),
    )
    .await;
    assert_eq!(a.axlcode(), Some(5003), "{}", a.body);
    let a = ok(
        &lab,
        &client,
        "executeSQLQuery",
        &update("select count(*) as n from enduser where department = 'SQL'"),
    )
    .await;
    assert_eq!(a.texts("n"), ["12"]);
    // Informix's codes for constraint failures; a failed statement changes nothing.
    let dup = "insert into routepartition (pkid, name) values ('0c0ffee0-0000-4000-8000-000000000002', 'Internal_PT')";
    let a = call(&lab, &client, "executeSQLUpdate", "14.0", &update(dup)).await;
    assert_eq!(a.axlcode(), Some(-239), "{}", a.body);
    let a = call(
        &lab,
        &client,
        "executeSQLUpdate",
        "14.0",
        &update("update device set fkdevicepool = 'no-such-pool'"),
    )
    .await;
    assert_eq!(a.axlcode(), Some(-691), "{}", a.body);
    let a = call(
        &lab,
        &client,
        "executeSQLUpdate",
        "14.0",
        &update("update nowhere set x = 1"),
    )
    .await;
    assert_eq!(a.axlcode(), Some(-206), "{}", a.body);
    lab.shutdown().await;
}

#[tokio::test]
async fn execute_sql_update_is_a_throttled_write() {
    let (lab, client) = start(LabConfig {
        writes_per_minute: Some(1),
        ..LabConfig::default()
    })
    .await;
    let sql = "<sql>update enduser set department = 'x' where 1 = 0</sql>";
    ok(&lab, &client, "executeSQLUpdate", sql).await;
    let a = call(&lab, &client, "executeSQLUpdate", "14.0", sql).await;
    assert_eq!(a.status, 503);
    lab.shutdown().await;
}

/// `soapAction="CUCM:DB ver=X.Y <name>"` names of a fixture WSDL.
fn fixture_wsdl_operations(version: &str) -> Option<std::collections::BTreeSet<String>> {
    let path = ucbridge_testkit::fixture(&format!("axl-schema/{version}/AXLAPI.wsdl"))?;
    let wsdl = std::fs::read_to_string(path).expect("WSDL readable");
    let prefix = format!("soapAction=\"CUCM:DB ver={version} ");
    Some(
        wsdl.split(prefix.as_str())
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn wsdl_operation_list_matches_the_fixture() {
    let list = ucbridge_lab::wsdl_operations();
    for version in ["11.5", "12.5", "14.0", "15.0"] {
        let Some(fixture) = fixture_wsdl_operations(version) else {
            return;
        };
        let ours: std::collections::BTreeSet<String> = list
            .iter()
            .filter(|o| version != "11.5" || o.since == "11.5")
            .map(|o| o.name.to_owned())
            .collect();
        assert_eq!(ours, fixture, "operations of {version}");
    }
    let names: std::collections::BTreeSet<&str> = list.iter().map(|o| o.name).collect();
    for op in ucbridge_lab::emulated_operations() {
        assert!(names.contains(op), "{op} is an operation of the WSDL");
    }
}

#[tokio::test]
async fn wsdl_operations_not_emulated_are_told_apart_from_misspellings() {
    let Some(ops) = fixture_wsdl_operations("14.0") else {
        return;
    };
    let emulated = ucbridge_lab::emulated_operations();
    let (lab, client) = start_default().await;
    let mut not_emulated = 0;
    for op in ops.iter().filter(|op| !emulated.contains(&op.as_str())) {
        let a = call(&lab, &client, op, "14.0", "").await;
        assert_eq!(a.status, 500, "{op}");
        let text = a.text("faultstring").unwrap_or_default();
        assert_eq!(
            text,
            format!("{op} is an operation of AXL schema 14.0 that is not emulated by the lab")
        );
        assert_eq!(a.axlcode(), Some(-1), "{op}");
        assert_eq!(a.text("request").as_deref(), Some(op.as_str()));
        not_emulated += 1;
    }
    assert_eq!(not_emulated, ops.len() - emulated.len());
    // Emulated operations never say so.
    let a = call(&lab, &client, "getCCMVersion", "14.0", "").await;
    assert_eq!(a.status, 200);
    // A misspelling is CUCM's Axis2 fault, with and without a CUCM action.
    for (action, expected) in [
        (
            Some("\"CUCM:DB ver=14.0 addSipProfil\""),
            "WSA Action = CUCM:DB ver=14.0 addSipProfil",
        ),
        (None, "WSA Action = CUCM:DB ver=14.0 addSipProfil"),
    ] {
        let a = post(
            &lab,
            &client,
            action,
            envelope("addSipProfil", "14.0", ""),
            true,
        )
        .await;
        assert_eq!(a.status, 500);
        assert!(a.body.contains(expected), "{}", a.body);
        assert!(a.text("axlcode").is_none());
    }
    // An operation 12.5 added does not exist in schema 11.5: Axis2's fault there.
    let added = ucbridge_lab::wsdl_operations()
        .into_iter()
        .find(|o| o.since == "12.5")
        .expect("12.5 added operations");
    let a = call(&lab, &client, added.name, "11.5", "").await;
    assert!(a.body.contains("EPR"), "{}", a.body);
    let a = call(&lab, &client, added.name, "12.5", "").await;
    assert!(a.body.contains("not emulated by the lab"), "{}", a.body);
    lab.shutdown().await;
}

/// A fault's axlcode and text, asserting HTTP 500.
fn fault_of(a: &Answer) -> (i64, String) {
    assert_eq!(a.status, 500, "{}", a.body);
    (
        a.axlcode().expect("an AXL fault"),
        a.text("axlmessage").unwrap_or_default(),
    )
}

/// Issue 11 item 3: the XSD facets (from the generated table) refuse what CUCM's schema
/// refuses, with a 5003 Client fault, and nothing is stored.
#[tokio::test]
async fn xsd_facets_are_enforced_on_requests() {
    let (lab, client) = start_default().await;
    // XUser.department is xsd:string: the lab's cap for unbounded text (255) applies.
    let huge = "D".repeat(12 * 1024 * 1024);
    let a = call(
        &lab,
        &client,
        "addUser",
        "14.0",
        &add_user_xml("huge.dept", &format!("<department>{huge}</department>")),
    )
    .await;
    let (code, message) = fault_of(&a);
    assert_eq!(code, 5003);
    assert!(
        message.contains("department") && message.contains("255"),
        "{message}"
    );
    assert!(
        a.body.len() < 2_000,
        "the value is not echoed: {} bytes",
        a.body.len()
    );
    assert_eq!(a.text("faultcode").as_deref(), Some("soapenv:Client"));
    let gone = call(
        &lab,
        &client,
        "getUser",
        "14.0",
        "<userid>huge.dept</userid>",
    )
    .await;
    assert_eq!(fault_of(&gone).0, 5007, "nothing was stored");
    ok(
        &lab,
        &client,
        "addUser",
        &add_user_xml(
            "fine.dept",
            &format!("<department>{}</department>", "D".repeat(255)),
        ),
    )
    .await;

    // maxLength (XPhone.description: String128), enumeration (XProduct), pattern
    // (axlapi:boolean) and a required choice (name|uuid), each from the XSD.
    let long_description = add_phone_xml("SEP00000000F001", "").replace(
        "<description>lab phone</description>",
        &format!("<description>{}</description>", "x".repeat(129)),
    );
    let (code, message) =
        fault_of(&call(&lab, &client, "addPhone", "14.0", &long_description).await);
    assert_eq!(code, 5003);
    assert!(
        message.contains("description") && message.contains("128"),
        "{message}"
    );
    let bad_product = add_phone_xml("SEP00000000F002", "").replace(
        "Third-party SIP Device (Advanced)</product>",
        "Cisco 9999</product>",
    );
    let (code, message) = fault_of(&call(&lab, &client, "addPhone", "14.0", &bad_product).await);
    assert_eq!(code, 5003);
    assert!(message.contains("XProduct"), "{message}");
    let (code, message) = fault_of(
        &call(
            &lab,
            &client,
            "updateUser",
            "14.0",
            "<userid>fine.dept</userid><enableCti>yes</enableCti>",
        )
        .await,
    );
    assert_eq!(code, 5003);
    assert!(
        message.contains("enableCti") && message.contains("pattern"),
        "{message}"
    );
    let (code, message) = fault_of(
        &call(
            &lab,
            &client,
            "getPhone",
            "14.0",
            "<returnedTags><name/></returnedTags>",
        )
        .await,
    );
    assert_eq!(code, 5003);
    assert!(message.contains("name or uuid"), "{message}");

    // ListUserReq's annotation: "At least one element under searchCriteria has to be
    // mentioned".
    let (code, message) = fault_of(
        &call(
            &lab,
            &client,
            "listUser",
            "14.0",
            "<searchCriteria/><returnedTags><userid/></returnedTags>",
        )
        .await,
    );
    assert_eq!(code, 5003);
    assert!(
        message.contains("At least one element under searchCriteria"),
        "{message}"
    );
    for phone in ["SEP00000000F001", "SEP00000000F002"] {
        let a = call(
            &lab,
            &client,
            "getPhone",
            "14.0",
            &format!("<name>{phone}</name>"),
        )
        .await;
        assert_eq!(fault_of(&a).0, 5007, "{phone} was not stored");
    }
    lab.shutdown().await;
}

/// Issue 11 item 4: every XFkType reference of an add/update names an existing object,
/// or the request fails with 5007 naming it — not a silent drop.
#[tokio::test]
async fn references_are_checked_everywhere() {
    let (lab, client) = start_default().await;
    let unknown = [
        ("addPhone", add_phone_xml("SEP00000000E001", "<phoneTemplateName>No Such Template</phoneTemplateName>"), "No Such Template"),
        ("addPhone", add_phone_xml("SEP00000000E002", "<softkeyTemplateName>Nope SK</softkeyTemplateName>"), "Nope SK"),
        ("addUser", add_user_xml("ref.user", "").replace("Standard Presence group", "No Such Group"), "No Such Group"),
        ("addUser", add_user_xml("ref.user2", "<subscribeCallingSearchSpaceName>CSS_Subscribe</subscribeCallingSearchSpaceName>"), "CSS_Subscribe"),
        ("addLine", "<line><pattern>4300</pattern><usage>Device</usage><callForwardAll><callingSearchSpaceName>Fwd_CSS</callingSearchSpaceName></callForwardAll></line>".to_owned(), "Fwd_CSS"),
        ("addLine", "<line><pattern>4301</pattern><usage>Device</usage><routePartitionName>No_PT</routePartitionName></line>".to_owned(), "No_PT"),
    ];
    for (op, inner, name) in &unknown {
        let (code, message) = fault_of(&call(&lab, &client, op, "14.0", inner).await);
        assert_eq!(code, 5007, "{op}: {message}");
        assert!(
            message.contains(name) && message.contains("was not found"),
            "{message}"
        );
    }
    for (op, inner) in [
        ("getPhone", "<name>SEP00000000E001</name>"),
        ("getUser", "<userid>ref.user</userid>"),
        ("getLine", "<pattern>4300</pattern>"),
    ] {
        assert_eq!(
            fault_of(&call(&lab, &client, op, "14.0", inner).await).0,
            5007,
            "{op}: nothing stored"
        );
    }

    // Default-install names resolve; updates are checked the same way.
    ok(&lab, &client, "addPhone", &add_phone_xml("SEP00000000E003", "<phoneTemplateName>Standard 8845 SIP</phoneTemplateName><softkeyTemplateName>Standard User</softkeyTemplateName>")).await;
    for (inner, name) in [
        (
            "<name>SEP00000000E003</name><callingSearchSpaceName>Nope_CSS</callingSearchSpaceName>",
            "Nope_CSS",
        ),
        (
            "<name>SEP00000000E003</name><locationName>Nowhere</locationName>",
            "Nowhere",
        ),
        (
            "<name>SEP00000000E003</name><mediaResourceListName>No_MRL</mediaResourceListName>",
            "No_MRL",
        ),
        (
            "<name>SEP00000000E003</name><ownerUserName>nobody</ownerUserName>",
            "nobody",
        ),
    ] {
        let (code, message) = fault_of(&call(&lab, &client, "updatePhone", "14.0", inner).await);
        assert_eq!(code, 5007, "{message}");
        assert!(message.contains(name), "{message}");
    }
    // Clearing a reference (empty or nil) is not a lookup.
    ok(
        &lab,
        &client,
        "updatePhone",
        "<name>SEP00000000E003</name><callingSearchSpaceName/>",
    )
    .await;
    lab.shutdown().await;
}

/// Issue 11 item 5: more than 16 MB of concurrent responses → CUCM's memory throttle
/// (G "Data Throttling" Scenario 2: three large queries at once, the third refused).
#[tokio::test]
async fn concurrent_responses_over_16_mb_get_the_memory_throttle() {
    let (lab, client) = start(LabConfig {
        users: 14_000,
        seed: 11,
        ..LabConfig::default()
    })
    .await;
    let listing = |first: usize| {
        format!("<searchCriteria><userid>%</userid></searchCriteria>{ALL_USER_TAGS}<first>{first}</first>")
    };
    // Size the pages from a sample so that each answer is between 16/3 and 8 MB.
    let sample = ok(&lab, &client, "listUser", &listing(200)).await;
    let per_row = sample.body.len() / 200;
    let first = (6_500_000 / per_row).min(14_000);
    lab.faults().hold_responses(true);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (url, client, body) = (
                lab.axl_url(),
                client.clone(),
                envelope("listUser", "14.0", &listing(first)),
            );
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .basic_auth(USER, Some(PASSWORD))
                    .header("SOAPAction", "\"CUCM:DB ver=14.0 listUser\"")
                    .body(body)
                    .send()
                    .await
                    .expect("request sent");
                let status = r.status().as_u16();
                (status, r.text().await.expect("body read"))
            })
        })
        .collect();
    // Two answers are held (about 13 MB); the third goes over 16 MB.
    for _ in 0..500 {
        if lab.stats().memory_throttled >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lab.faults().hold_responses(false);
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("task joins"));
    }
    let faults: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == 500)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(faults.len(), 1, "exactly one of three is throttled");
    assert_eq!(answers.iter().filter(|(s, _)| *s == 200).count(), 2);
    assert_eq!(
        texts(faults[0], "axlmessage"),
        ["Maximum AXL Memory Allocation Consumed. Please retry once requests in progress have completed"]
    );
    assert_eq!(texts(faults[0], "axlcode"), ["-1"]);
    assert_eq!(texts(faults[0], "faultcode"), ["soapenv:Server"]);
    assert_eq!(lab.stats().memory_throttled, 1);
    // Once the others are sent, the budget is free again.
    let again = ok(&lab, &client, "listUser", &listing(first)).await;
    assert_eq!(again.texts("userid").len(), first);
    lab.shutdown().await;
}

/// Issue 11 item 7: versions, `/axl` without its slash, end users without the AXL role.
#[tokio::test]
async fn versions_slashless_endpoint_and_end_users_without_the_axl_role() {
    let (lab, client) = start(LabConfig {
        cucm_version: "12.5.1.10000(22)".into(),
        users: 3,
        ..LabConfig::default()
    })
    .await;
    // The guide's table: 12.5 serves 10.0 but no 10.5 (see version.rs).
    let served = call(&lab, &client, "getCCMVersion", "10.0", "").await;
    assert_eq!(served.status, 200, "{}", served.body);
    let not_served = call(&lab, &client, "getCCMVersion", "10.5", "").await;
    assert_eq!(not_served.status, 599);

    // POST /axl (no slash): Tomcat's redirect to /axl/, not a SOAP answer.
    let no_redirects = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(lab.ca_certificate_pem().expect("TLS").as_bytes())
                .expect("CA parses"),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client builds");
    let slashless = lab.axl_url().trim_end_matches('/').to_owned();
    let r = no_redirects
        .post(&slashless)
        .basic_auth(USER, Some(PASSWORD))
        .header("SOAPAction", "\"CUCM:DB ver=12.5 getCCMVersion\"")
        .body(envelope("getCCMVersion", "12.5", ""))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(lab.axl_url().as_str())
    );

    // An end user with the right password but without the AXL role: 403, not 401.
    let userid = call(
        &lab,
        &client,
        "listUser",
        "12.5",
        "<searchCriteria><userid>%</userid></searchCriteria><returnedTags><userid/></returnedTags>",
    )
    .await
    .text("userid")
    .expect("a seeded user");
    let as_user = |password: &'static str| {
        client
            .post(lab.axl_url())
            .basic_auth(&userid, Some(password))
            .header("SOAPAction", "\"CUCM:DB ver=12.5 getCCMVersion\"")
            .body(envelope("getCCMVersion", "12.5", ""))
            .send()
    };
    let forbidden = as_user("ucbridge-user").await.expect("answered");
    assert_eq!(forbidden.status().as_u16(), 403);
    assert!(forbidden.headers().get("www-authenticate").is_none());
    let wrong = as_user("wrong").await.expect("answered");
    assert_eq!(wrong.status().as_u16(), 401);
    lab.shutdown().await;
}

/// Issue 11 item 6: current models can be added; a model the release's schema does not
/// list is refused (8875 is in XProduct 15.0 only; the 9800 series in no fixture schema).
#[tokio::test]
async fn the_product_catalogue_follows_the_release() {
    let (lab, client) = start_default().await;
    let phone = |name: &str, product: &str| {
        add_phone_xml(name, "").replace(
            "<product>Third-party SIP Device (Advanced)</product>",
            &format!("<product>{product}</product><model>{product}</model>"),
        )
    };
    let current = [
        "Cisco 7821",
        "Cisco 7841",
        "Cisco 7861",
        "Cisco 8811",
        "Cisco 8841",
        "Cisco 8845",
        "Cisco 8851",
        "Cisco 8861",
        "Cisco 8865",
        "Cisco Webex Desk",
        "Cisco Webex Desk Pro",
        "Cisco Unified Client Services Framework",
        "Cisco Dual Mode for Android",
        "Cisco Dual Mode for iPhone",
        "Cisco Jabber for Tablet",
        "Third-party SIP Device (Basic)",
        "Third-party SIP Device (Advanced)",
    ];
    for (i, product) in current.iter().enumerate() {
        let name = format!("SEP00000000C{i:03}");
        ok(&lab, &client, "addPhone", &phone(&name, product)).await;
        let got = ok(&lab, &client, "getPhone", &format!("<name>{name}</name>")).await;
        assert_eq!(got.text("product").as_deref(), Some(*product));
    }
    for product in ["Cisco 8875", "Cisco 9861", "Cisco 9871"] {
        let a = call(
            &lab,
            &client,
            "addPhone",
            "14.0",
            &phone("SEP00000000CFFF", product),
        )
        .await;
        let (code, message) = fault_of(&a);
        assert_eq!(code, 5003, "{product}");
        assert!(message.contains("XProduct"), "{message}");
    }
    lab.shutdown().await;

    let (lab15, client) = start(LabConfig {
        cucm_version: "15.0.1.10000(1)".into(),
        ..LabConfig::default()
    })
    .await;
    let a = call(
        &lab15,
        &client,
        "addPhone",
        "15.0",
        &phone("SEP00000000D001", "Cisco 8875"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(
        &lab15,
        &client,
        "addPhone",
        "15.0",
        &phone("SEP00000000D002", "Cisco 9871"),
    )
    .await;
    assert_eq!(fault_of(&a).0, 5003);
    lab15.shutdown().await;
}

/// `<userid>…</userid><password>…</password>` (or `<pin>`), escaped.
fn auth_body(userid: &str, element: &str, secret: &str) -> String {
    let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
    format!(
        "<userid>{}</userid><{element}>{}</{element}>",
        esc(userid),
        esc(secret)
    )
}

/// One doAuthenticateUser: (userAuthenticated, code, answer), asserting 200. (Validating
/// takes xmllint a while, longer than the short lockouts here: callers validate after.)
async fn authenticate(
    lab: &ucbridge_lab::RunningLab,
    client: &reqwest::Client,
    version: &str,
    userid: &str,
    element: &str,
    secret: &str,
) -> (bool, i64, Answer) {
    let a = call(
        lab,
        client,
        "doAuthenticateUser",
        version,
        &auth_body(userid, element, secret),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let ok = a.text("userAuthenticated").expect("userAuthenticated");
    let code = a.text("code").and_then(|c| c.parse().ok()).expect("code");
    (ok == "true", code, a)
}

/// Issue 12 item 2: passwords and PINs per user, CUCM's credential policy (failed logons
/// counted, lockout at the threshold for its duration, administrator's lock, expiry).
#[tokio::test]
async fn do_authenticate_user_applies_the_credential_policy() {
    use ucbridge_lab::{CredentialKind, CredentialPolicy};
    // Long enough for a few requests on a busy machine, short enough not to slow the suite.
    let lockout = Duration::from_secs(2);
    let mut answers: Vec<(&str, Vec<u8>)> = Vec::new();
    let (lab, client) = start(LabConfig {
        users: 2,
        credential_policy: CredentialPolicy {
            failed_logon_threshold: 3,
            lockout_duration: Some(lockout),
            ..CredentialPolicy::default()
        },
        ..LabConfig::default()
    })
    .await;
    let users = call(
        &lab,
        &client,
        "listUser",
        "14.0",
        "<searchCriteria><userid>%</userid></searchCriteria><returnedTags><userid/></returnedTags>",
    )
    .await
    .texts("userid");
    let (alice, bob) = (&users[0], &users[1]);
    let creds = lab.credentials();
    let failed = |u: &str| creds.failed_logons(u, CredentialKind::Password).unwrap();

    // Lab defaults, in every fixture schema CUCM 14 serves (15.0: the next test).
    for version in ["11.5", "12.5", "14.0"] {
        let (ok, code, a) =
            authenticate(&lab, &client, version, alice, "password", "ucbridge-user").await;
        assert!(ok && code == 0, "{}", a.body);
        assert!(a.text("daysToExpiry").is_none(), "no expiry by default");
        answers.push((version, a.bytes()));
    }
    let (ok, code, _) = authenticate(&lab, &client, "14.0", alice, "pin", "12345").await;
    assert!(ok && code == 0);
    let (ok, code, _) = authenticate(&lab, &client, "14.0", alice, "pin", "54321").await;
    assert!(!ok && code == 1);
    assert_eq!(
        creds.failed_logons(alice, CredentialKind::Pin).unwrap(),
        Some(1)
    );
    // A PIN that breaks the XSD pattern is a schema fault, not a failed logon.
    let a = call(
        &lab,
        &client,
        "doAuthenticateUser",
        "14.0",
        &auth_body(alice, "pin", "12a"),
    )
    .await;
    assert_eq!(fault_of(&a).0, 5003);
    assert_eq!(
        creds.failed_logons(alice, CredentialKind::Pin).unwrap(),
        Some(1)
    );
    // Neither password nor PIN: the XSD's required choice.
    let a = call(
        &lab,
        &client,
        "doAuthenticateUser",
        "14.0",
        "<userid>x</userid>",
    )
    .await;
    assert_eq!(a.status, 500, "{}", a.body);

    // Unknown user: refused with a result, nothing counted anywhere.
    let (ok, code, a) = authenticate(&lab, &client, "14.0", "nobody", "password", "x").await;
    assert!(!ok && code == 5);
    answers.push(("14.0", a.bytes()));
    assert_eq!(failed("nobody"), None);

    // Two failures, then the right password: the count resets.
    for _ in 0..2 {
        let (ok, code, _) = authenticate(&lab, &client, "14.0", alice, "password", "wrong").await;
        assert!(!ok && code == 1);
    }
    assert_eq!(failed(alice), Some(2));
    assert!(
        authenticate(&lab, &client, "14.0", alice, "password", "ucbridge-user")
            .await
            .0
    );
    assert_eq!(failed(alice), Some(0));

    // Three failures lock the password; the right one is then refused, and not counted.
    for _ in 0..3 {
        authenticate(&lab, &client, "14.0", alice, "password", "wrong").await;
    }
    let (ok, code, a) =
        authenticate(&lab, &client, "14.0", alice, "password", "ucbridge-user").await;
    assert!(!ok && code == 2, "locked after the threshold");
    answers.push(("14.0", a.bytes()));
    assert_eq!(failed(alice), Some(3));
    // The PIN is another credential: not locked.
    assert!(
        authenticate(&lab, &client, "14.0", alice, "pin", "12345")
            .await
            .0
    );
    // After the lockout duration the right password works again.
    tokio::time::sleep(lockout + Duration::from_millis(200)).await;
    let (ok, code, _) =
        authenticate(&lab, &client, "14.0", alice, "password", "ucbridge-user").await;
    assert!(ok && code == 0, "lockout expired");

    // updateUser password/PIN replace the defaults (raw text, spaces kept).
    let a = call(
        &lab,
        &client,
        "updateUser",
        "14.0",
        &format!("<userid>{bob}</userid><password> N3w &amp; s3cret</password><pin>90817</pin>"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        !authenticate(&lab, &client, "14.0", bob, "password", "ucbridge-user")
            .await
            .0
    );
    assert!(
        authenticate(&lab, &client, "14.0", bob, "password", " N3w & s3cret")
            .await
            .0
    );
    assert!(
        !authenticate(&lab, &client, "14.0", bob, "pin", "12345")
            .await
            .0
    );
    assert!(
        authenticate(&lab, &client, "14.0", bob, "pin", "90817")
            .await
            .0
    );

    // The same password is the user's everywhere: AXL's 403 (authenticated, no role)
    // takes the new one and refuses the old default with 401.
    let as_bob = |password: &str| {
        client
            .post(lab.axl_url())
            .basic_auth(bob, Some(password))
            .header("SOAPAction", "\"CUCM:DB ver=14.0 getCCMVersion\"")
            .body(envelope("getCCMVersion", "14.0", ""))
            .send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(as_bob(" N3w & s3cret").await.expect("answered")),
        403
    );
    assert_eq!(
        status(as_bob("ucbridge-user").await.expect("answered")),
        401
    );

    // Locked by an administrator: refused with its own code until unlocked.
    assert!(creds
        .set_locked_by_administrator(bob, CredentialKind::Password, true)
        .unwrap());
    let (ok, code, _) = authenticate(&lab, &client, "14.0", bob, "password", " N3w & s3cret").await;
    assert!(!ok && code == 3);
    creds
        .set_locked_by_administrator(bob, CredentialKind::Password, false)
        .unwrap();
    assert!(
        authenticate(&lab, &client, "14.0", bob, "password", " N3w & s3cret")
            .await
            .0
    );
    assert!(!creds
        .reset_hack_count("nobody", CredentialKind::Password)
        .unwrap());
    lab.shutdown().await;
    for (version, body) in answers {
        ucbridge_testkit::validate_axl_bodies(version, &[body])
            .expect("doAuthenticateUserResponse validates");
    }
}

/// "Administrator Must Unlock", "No Limit for Failed Logons", the failure-count reset and
/// credential expiry with its warning.
#[tokio::test]
async fn credential_policy_variants_and_expiry() {
    use ucbridge_lab::{CredentialKind, CredentialPolicy};
    let day = Duration::from_secs(86_400);
    let (lab, client) = start(LabConfig {
        cucm_version: "15.0.1.11900(23)".into(),
        users: 1,
        credential_policy: CredentialPolicy {
            failed_logon_threshold: 2,
            lockout_duration: None,
            reset_failed_logons_after: Duration::from_millis(1500),
            expires_after: Some(day * 90),
            expiry_warning_days: 10,
        },
        ..LabConfig::default()
    })
    .await;
    let user = call(
        &lab,
        &client,
        "listUser",
        "14.0",
        "<searchCriteria><userid>%</userid></searchCriteria><returnedTags><userid/></returnedTags>",
    )
    .await
    .text("userid")
    .expect("a user");
    let creds = lab.credentials();
    let pw = "ucbridge-user";

    // Fresh credential (its clock starts at first use): 90 whole days left, or 89 once a
    // millisecond has passed; no warning.
    let mut answers = Vec::new();
    let (ok, _, a) = authenticate(&lab, &client, "15.0", &user, "password", pw).await;
    assert!(ok);
    answers.push(a.bytes());
    let days = a.text("daysToExpiry").expect("daysToExpiry");
    assert!(days == "90" || days == "89", "{days}");
    assert_eq!(a.text("isWarningNeeded").as_deref(), Some("false"));
    // Changed 85 days ago: warned.
    creds
        .set_changed_ago(&user, CredentialKind::Password, day * 85)
        .unwrap();
    let (ok, _, a) = authenticate(&lab, &client, "15.0", &user, "password", pw).await;
    assert!(ok);
    assert_eq!(a.text("isWarningNeeded").as_deref(), Some("true"));
    answers.push(a.bytes());
    // Changed 91 days ago: expired, refused even with the right password.
    creds
        .set_changed_ago(&user, CredentialKind::Password, day * 91)
        .unwrap();
    let (ok, code, a) = authenticate(&lab, &client, "15.0", &user, "password", pw).await;
    assert!(!ok && code == 4);
    assert_eq!(a.text("daysToExpiry").as_deref(), Some("0"));
    answers.push(a.bytes());
    ucbridge_testkit::validate_axl_bodies("15.0", &answers).expect("15.0 answers validate");
    creds
        .set_changed_ago(&user, CredentialKind::Password, day)
        .unwrap();

    // One failure, a pause longer than the reset interval, one failure: not locked.
    authenticate(&lab, &client, "15.0", &user, "password", "bad").await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    authenticate(&lab, &client, "15.0", &user, "password", "bad").await;
    assert_eq!(
        creds
            .failed_logons(&user, CredentialKind::Password)
            .unwrap(),
        Some(1)
    );
    // A second failure in a row locks; with no duration it stays locked until reset.
    authenticate(&lab, &client, "15.0", &user, "password", "bad").await;
    // Past the count's reset interval: the lock is not the count, it stays.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (ok, code, _) = authenticate(&lab, &client, "15.0", &user, "password", pw).await;
    assert!(!ok && code == 2, "administrator must unlock");
    assert!(creds
        .reset_hack_count(&user, CredentialKind::Password)
        .unwrap());
    assert!(
        authenticate(&lab, &client, "15.0", &user, "password", pw)
            .await
            .0
    );
    lab.shutdown().await;

    // No limit for failed logons.
    let (lab, client) = start(LabConfig {
        users: 1,
        credential_policy: CredentialPolicy {
            failed_logon_threshold: 0,
            ..CredentialPolicy::default()
        },
        ..LabConfig::default()
    })
    .await;
    for _ in 0..5 {
        authenticate(&lab, &client, "14.0", &user, "password", "bad").await;
    }
    assert!(
        authenticate(&lab, &client, "14.0", &user, "password", pw)
            .await
            .0
    );
    lab.shutdown().await;
}
