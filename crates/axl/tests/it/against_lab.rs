//! The AXL client against the lab emulator over real HTTP(S).

use std::collections::HashSet;
use std::time::Duration;

use ucbridge_axl::*;
use ucbridge_lab::{LabConfig, RunningLab};

async fn lab(config: LabConfig) -> RunningLab {
    RunningLab::start(config).await.expect("lab starts")
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 12,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
    }
}

fn config_for(lab: &RunningLab) -> AxlConfig {
    let defaults = LabConfig::default();
    let mut config = AxlConfig::new(lab.axl_url(), defaults.username, defaults.password);
    config.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    config.retry = fast_retries();
    config
}

async fn client_for(lab: &RunningLab) -> AxlClient {
    AxlClient::connect(config_for(lab)).await.expect("connects")
}

#[tokio::test]
async fn discovers_the_schema_over_tls_and_lists_every_user() {
    let lab = lab(LabConfig {
        users: 120,
        ..LabConfig::default()
    })
    .await;
    assert!(lab.axl_url().starts_with("https://127.0.0.1:"));
    let client = client_for(&lab).await;
    assert_eq!(client.schema_version(), SchemaVersion::V14_0);
    assert_eq!(client.get_ccm_version().await.unwrap(), "14.0.1.14900(11)");

    let users = client
        .list_users(&UserSearch::all(), &[UserTag::Userid, UserTag::Mailid])
        .await
        .unwrap();
    assert_eq!(users.len(), 120);
    let ids: HashSet<_> = users.iter().filter_map(|u| u.userid.clone()).collect();
    assert_eq!(ids.len(), 120, "userids are unique and all present");
    assert!(users
        .iter()
        .all(|u| u.uuid.as_deref().is_some_and(|id| id.starts_with('{'))));
    // Only the requested tags come back.
    assert!(users.iter().all(|u| u.last_name.is_none()));

    let count = client
        .execute_sql_query("select count(*) as n from enduser")
        .await
        .unwrap();
    assert_eq!(count[0].get("n"), Some("120"));
    lab.shutdown().await;
}

#[tokio::test]
async fn tls_is_verified_by_default() {
    let lab = lab(LabConfig::default()).await;
    let mut config = config_for(&lab);
    config.ca_pem = None;
    config.version = Some(SchemaVersion::V14_0);
    config.retry.max_attempts = 1;
    let client = AxlClient::connect(config).await.unwrap();
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(matches!(err, AxlError::Transport { .. }), "{err}");

    // With a CA file on disk it works.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("lab-ca.pem");
    std::fs::write(&ca, lab.ca_certificate_pem().unwrap()).unwrap();
    let mut config = config_for(&lab);
    config.ca_pem = None;
    config.ca_file = Some(ca);
    let client = AxlClient::connect(config).await.unwrap();
    client.get_ccm_version().await.unwrap();

    let mut config = config_for(&lab);
    config.ca_file = Some(dir.path().join("missing.pem"));
    let err = AxlClient::connect(config).await.unwrap_err();
    assert!(matches!(err, AxlError::Config(_)), "{err}");
    lab.shutdown().await;
}

/// Issue 18: without the lab's CA the client kept retrying for over 30 s. An untrusted
/// certificate cannot heal: one request, the rustls cause in the message, no retries.
#[tokio::test]
async fn an_untrusted_certificate_fails_at_once_with_the_cause() {
    let lab = lab(LabConfig::default()).await;
    let mut config = config_for(&lab);
    config.ca_pem = None;
    config.retry = RetryPolicy::default();
    let started = std::time::Instant::now();
    let err = AxlClient::connect(config).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retried: {err}"
    );
    assert_eq!(
        err.transport_kind(),
        Some(TransportKind::UntrustedCertificate)
    );
    let text = err.to_string();
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(text.contains("trust the server's CA certificate"), "{text}");
    lab.shutdown().await;
}

#[tokio::test]
async fn pages_through_10000_users_shrinking_pages_to_fit_the_size_cap() {
    let lab = lab(LabConfig {
        users: 10_000,
        // Far below CUCM's 8 MB so that 1,000-row pages do not fit.
        max_response_bytes: 96 * 1024,
        ..LabConfig::default()
    })
    .await;
    let client = client_for(&lab).await;
    let mut seen = HashSet::new();
    let mut largest_page = 0;
    let summary = client
        .for_each_user_page(
            &UserSearch::all(),
            &[
                UserTag::Userid,
                UserTag::FirstName,
                UserTag::LastName,
                UserTag::Mailid,
            ],
            ListOptions::default(),
            async |page| {
                largest_page = largest_page.max(page.len());
                for u in page {
                    assert!(seen.insert(u.userid.expect("userid")), "no user twice");
                }
                Ok::<_, AxlError>(())
            },
        )
        .await
        .unwrap();
    assert_eq!(seen.len(), 10_000);
    assert_eq!(summary.items, 10_000);
    assert!(summary.final_page_size < 1000, "{summary:?}");
    assert!(largest_page < 1000);
    assert!(client.stats().page_shrinks >= 1);

    // One oversized page on its own is a typed fault with CUCM's numbers.
    let err = client
        .list_users_page(&UserSearch::all(), UserTag::ALL, 0, 5000)
        .await
        .unwrap_err();
    let too_large = err.query_too_large().expect("query too large");
    assert_eq!(too_large.total_rows, 5000);
    assert!(too_large.suggested_rows > 0 && too_large.suggested_rows < 5000);
    assert_eq!(err.axlcode(), Some(-1));
    lab.shutdown().await;
}

#[tokio::test]
async fn a_throttled_lab_is_retried_until_it_succeeds() {
    let lab = lab(LabConfig {
        users: 20,
        max_concurrent_requests: Some(1),
        ..LabConfig::default()
    })
    .await;
    let client = client_for(&lab).await;
    lab.faults().delay_responses(Duration::from_millis(30));
    let calls = (0..6).map(|_| {
        let c = client.clone();
        async move {
            c.list_users_page(&UserSearch::all(), &[UserTag::Userid], 0, 20)
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    for r in results {
        assert_eq!(r.expect("every call succeeds in the end").len(), 20);
    }
    let stats = client.stats();
    assert!(stats.throttled >= 1, "{stats:?}");
    assert!(stats.retries >= stats.throttled, "{stats:?}");
    assert!(lab.stats().throttled >= 1);

    // A 503 burst longer than the retry budget ends in a typed error.
    lab.faults().delay_responses(Duration::ZERO);
    lab.faults().fail_next_with_status(100, 503);
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(
        matches!(
            err,
            AxlError::Throttled {
                status: 503,
                attempts: 12,
                ..
            }
        ),
        "{err}"
    );
    lab.shutdown().await;
}

#[tokio::test]
async fn broken_responses_are_retried_for_reads_but_not_writes() {
    let lab = lab(LabConfig {
        users: 50,
        ..LabConfig::default()
    })
    .await;
    let client = client_for(&lab).await;
    lab.faults().drop_next_responses(2);
    let users = client
        .list_users(&UserSearch::all(), &[UserTag::Userid])
        .await
        .unwrap();
    assert_eq!(users.len(), 50);
    assert!(client.stats().retries >= 2);

    lab.faults().fail_next_with_status(2, 502);
    client
        .get_ccm_version()
        .await
        .expect("502 burst is retried");

    // A write whose answer broke off may have been applied: surfaced, not repeated.
    lab.faults().drop_next_responses(1);
    let before = client.stats().requests;
    let err = client
        .add_line(&NewLine::device("77001", Some("Internal_PT")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AxlError::Protocol { .. } | AxlError::Transport { .. }),
        "{err}"
    );
    assert_eq!(client.stats().requests, before + 1);
    lab.shutdown().await;
}

#[tokio::test]
async fn faults_keep_their_axlcode_and_message() {
    let lab = lab(LabConfig::default()).await;
    let client = client_for(&lab).await;

    let err = client.get_user(Key::Name("nobody")).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    match &err {
        AxlError::Fault {
            operation,
            axlcode,
            message,
            ..
        } => {
            assert_eq!(operation, "getUser");
            assert_eq!(*axlcode, Some(5007));
            assert!(message.contains("not found"), "{message}");
        }
        other => panic!("expected a fault, got {other}"),
    }

    let user = NewUser {
        userid: "dup".into(),
        last_name: "Dup".into(),
        ..NewUser::default()
    };
    client.add_user(&user).await.unwrap();
    let err = client.add_user(&user).await.unwrap_err();
    assert!(err.is_duplicate(), "{err}");

    client
        .add_line(&NewLine::device("5000", Some("Internal_PT")))
        .await
        .unwrap();
    let err = client
        .add_line(&NewLine::device("5000", Some("Internal_PT")))
        .await
        .unwrap_err();
    assert_eq!(err.axlcode(), Some(4052), "{err}");

    let mut phone = NewPhone::sip(
        "SEPBADPOOL0001",
        "Third-party SIP Device (Advanced)",
        "NoSuchPool",
    );
    phone.security_profile =
        Some("Third-party SIP Device Advanced - Standard SIP Non-Secure Profile".into());
    let err = client.add_phone(&phone).await.unwrap_err();
    assert_eq!(err.axlcode(), Some(5007), "{err}");
    assert!(err.to_string().contains("NoSuchPool"), "{err}");
    lab.shutdown().await;
}

#[tokio::test]
async fn wrong_credentials_and_unsupported_schema_are_named() {
    let lab = lab(LabConfig {
        cucm_version: "15.0.1.11900(23)".into(),
        ..LabConfig::default()
    })
    .await;
    let mut config = config_for(&lab);
    config.password = Secret::new("wrong");
    let err = AxlClient::connect(config).await.unwrap_err();
    assert!(matches!(err, AxlError::Unauthorized { .. }), "{err}");

    // CUCM 15 no longer accepts the 11.5 schema.
    let mut config = config_for(&lab);
    config.version = Some(SchemaVersion::V11_5);
    let client = AxlClient::connect(config).await.unwrap();
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(matches!(err, AxlError::SchemaNotSupported { .. }), "{err}");

    let client = client_for(&lab).await;
    assert_eq!(client.schema_version(), SchemaVersion::V15_0);
    lab.shutdown().await;
}

#[tokio::test]
async fn the_session_cookie_is_reused_instead_of_basic_auth() {
    let lab = lab(LabConfig {
        users: 5,
        ..LabConfig::default()
    })
    .await;
    let mut config = config_for(&lab);
    config.version = Some(SchemaVersion::V14_0);
    let client = AxlClient::connect(config).await.unwrap();
    for _ in 0..5 {
        client.get_ccm_version().await.unwrap();
    }
    let stats = client.stats();
    assert_eq!(stats.requests, 5);
    assert_eq!(stats.session_reuses, 4);
    let lab_stats = lab.stats();
    assert_eq!(lab_stats.basic_auth_checks, 1, "{lab_stats:?}");
    assert_eq!(lab_stats.cookie_session_hits, 4, "{lab_stats:?}");
    lab.shutdown().await;
}

#[tokio::test]
async fn an_expired_session_falls_back_to_basic_auth() {
    let lab = lab(LabConfig {
        session_idle_timeout: Duration::from_millis(50),
        ..LabConfig::default()
    })
    .await;
    let client = client_for(&lab).await;
    client.get_ccm_version().await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    client
        .get_ccm_version()
        .await
        .expect("re-authenticates after the 404");
    lab.shutdown().await;
}

#[tokio::test]
async fn hostile_values_round_trip_escaped() {
    let lab = lab(LabConfig::default()).await;
    let client = client_for(&lab).await;
    let userid = "a<b&\"c'd";
    client
        .add_user(&NewUser {
            userid: userid.into(),
            last_name: "<script>&amp;".into(),
            mailid: Some("x]]>y@example.com".into()),
            ..NewUser::default()
        })
        .await
        .unwrap();
    let user = client.get_user(Key::Name(userid)).await.unwrap();
    assert_eq!(user.userid.as_deref(), Some(userid));
    assert_eq!(user.last_name.as_deref(), Some("<script>&amp;"));
    assert_eq!(user.mailid.as_deref(), Some("x]]>y@example.com"));

    let rows = client
        .execute_sql_query(
            SqlQuery::new("select userid, lastname from enduser where userid = ?").bind(userid),
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("userid"), Some(userid));
    assert_eq!(rows[0].get("lastname"), Some("<script>&amp;"));
    lab.shutdown().await;
}

#[tokio::test]
async fn a_digest_phone_is_stored_as_digest_in_and_read_back() {
    let lab = lab(LabConfig::default()).await;
    let client = client_for(&lab).await;
    client
        .add_line(&NewLine::device("4001", Some("Internal_PT")))
        .await
        .unwrap();
    client
        .add_user(&NewUser {
            userid: "rsrc.sp.000011116666".into(),
            last_name: "DECT handset".into(),
            digest_credentials: Some(Secret::new("s3cret-digest")),
            ..NewUser::default()
        })
        .await
        .unwrap();
    let mut phone = NewPhone::sip(
        "DECT000011116666",
        "Third-party SIP Device (Advanced)",
        "Default",
    );
    phone.security_profile =
        Some("Third-party SIP Device Advanced - Standard SIP Secure Profile".into());
    phone.digest_user = Some("rsrc.sp.000011116666".into());
    phone.lines = vec![PhoneLine {
        index: 1,
        label: None,
        display: None,
        dirn: DirectoryNumber::new("4001", Some("Internal_PT")),
    }];
    let uuid = client.add_phone(&phone).await.unwrap();
    assert!(uuid.starts_with('{'));

    let read = client
        .get_phone(Key::Name("DECT000011116666"))
        .await
        .unwrap();
    assert_eq!(read.digest_user.as_deref(), Some("rsrc.sp.000011116666"));
    assert_eq!(read.lines.len(), 1);
    assert_eq!(read.lines[0].dirn.pattern, "4001");
    assert_eq!(
        read.lines[0].dirn.route_partition.as_deref(),
        Some("Internal_PT")
    );

    let rows = client
        .execute_sql_query(
            "select eu.userid, d.name from enduser eu \
             join enduserdevicemap m on m.fkenduser = eu.pkid \
             join device d on d.pkid = m.fkdevice where m.tkuserassociation = 3",
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("userid"), Some("rsrc.sp.000011116666"));
    assert_eq!(rows[0].get("name"), Some("DECT000011116666"));

    let line = client
        .get_line(LineKey::Pattern {
            pattern: "4001",
            route_partition: Some("Internal_PT"),
        })
        .await
        .unwrap();
    assert_eq!(line.associated_devices, vec!["DECT000011116666".to_owned()]);

    client
        .update_phone(
            Key::Name("DECT000011116666"),
            &PhoneUpdate {
                description: Some("renamed".into()),
                ..PhoneUpdate::default()
            },
        )
        .await
        .unwrap();
    let phones = client
        .list_phones_page(
            &PhoneSearch {
                name: Some("DECT%".into()),
                ..PhoneSearch::default()
            },
            &[PhoneTag::Name, PhoneTag::Description, PhoneTag::DigestUser],
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(phones.len(), 1);
    assert_eq!(phones[0].description.as_deref(), Some("renamed"));

    client
        .remove_phone(Key::Name("DECT000011116666"))
        .await
        .unwrap();
    let err = client
        .get_phone(Key::Name("DECT000011116666"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    lab.shutdown().await;
}

#[tokio::test]
async fn large_sql_results_stream_row_by_row() {
    let lab = lab(LabConfig {
        users: 3000,
        ..LabConfig::default()
    })
    .await;
    let client = client_for(&lab).await;
    let mut n = 0u64;
    let count = client
        .execute_sql_query_each(
            "select userid, firstname, lastname, mailid from enduser",
            |row| {
                assert!(row.get("userid").is_some());
                n += 1;
                Ok(())
            },
        )
        .await
        .unwrap();
    assert_eq!(count, 3000);
    assert_eq!(n, 3000);
    let page = client
        .execute_sql_query("select skip 10 first 5 userid from enduser order by userid")
        .await
        .unwrap();
    assert_eq!(page.len(), 5);
    lab.shutdown().await;
}

#[tokio::test]
async fn list_change_pages_through_the_queue_and_names_a_lost_queue() {
    let lab = lab(LabConfig {
        list_change_page_size: 3,
        ..LabConfig::default()
    })
    .await;
    let client = client_for(&lab).await;
    let start = client.change_queue_end(&["User"]).await.unwrap();
    for i in 0..8 {
        client
            .add_user(&NewUser {
                userid: format!("queued{i}"),
                last_name: "Q".into(),
                ..NewUser::default()
            })
            .await
            .unwrap();
    }
    let page = client.list_change(Some(&start), &["User"]).await.unwrap();
    assert_eq!(page.changes.len(), 3);
    assert!(page.has_more(), "{page:?}");
    let (all, end) = client
        .list_change_all(Some(&start), &["User"])
        .await
        .unwrap();
    assert_eq!(all.len(), 8);
    assert!(all
        .iter()
        .all(|c| c.action == ChangeAction::Added && c.do_get));
    let ids: Vec<i64> = all.iter().map(|c| c.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in queue order: {ids:?}"
    );
    assert_eq!(client.change_queue_end(&["User"]).await.unwrap(), end);
    // Each added user can be fetched by the uuid the change names.
    let user = client.get_user(Key::Uuid(&all[0].uuid)).await.unwrap();
    assert_eq!(user.userid.as_deref(), Some("queued0"));

    let stale = ChangeCursor {
        queue_id: "restarted".into(),
        next_start_change_id: end.next_start_change_id,
    };
    let err = client.list_change(Some(&stale), &[]).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("full sync is needed"), "{err}");
    lab.shutdown().await;
}

/// Issue 11 item 5: CUCM's "Maximum AXL Memory Allocation Consumed" (axlcode -1) when
/// concurrent responses exceed the memory budget is retried until the calls complete.
/// The lab holds its answers (as a CUCM busy sending large responses would) until the
/// throttles have happened, so the test does not depend on timing.
#[tokio::test]
async fn memory_throttle_faults_are_retried_until_concurrent_listings_complete() {
    let lab = lab(LabConfig {
        users: 3000,
        // Each page below is larger than this, so one held answer fills the budget.
        max_concurrent_response_bytes: 64 * 1024,
        ..LabConfig::default()
    })
    .await;
    let client = client_for(&lab).await;
    lab.faults().hold_responses(true);
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                c.list_users_page(
                    &UserSearch::all(),
                    &[UserTag::Userid, UserTag::Mailid],
                    i * 1000,
                    1000,
                )
                .await
            })
        })
        .collect();
    for _ in 0..500 {
        if lab.stats().memory_throttled >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lab.faults().hold_responses(false);
    let mut seen = HashSet::new();
    for call in calls {
        let page = call.await.unwrap().expect("every listing completes");
        assert_eq!(page.len(), 1000);
        seen.extend(page.into_iter().filter_map(|u| u.userid));
    }
    assert_eq!(seen.len(), 3000, "three distinct pages");
    assert!(lab.stats().memory_throttled >= 2, "{:?}", lab.stats());
    let stats = client.stats();
    assert!(stats.throttled >= 2, "{stats:?}");
    assert!(stats.retries >= stats.throttled, "{stats:?}");
    lab.shutdown().await;
}

/// doAuthenticateUser against the lab's CUCM credential policy: right and wrong password,
/// PIN, unknown user, lockout after the threshold and its end, a password changed with
/// updateUser, and no retry once the request may have reached CUCM.
#[tokio::test]
async fn authenticate_user_reports_cucm_credential_policy() {
    let lockout = Duration::from_secs(2);
    let lab = lab(LabConfig {
        users: 2,
        credential_policy: ucbridge_lab::CredentialPolicy {
            failed_logon_threshold: 3,
            lockout_duration: Some(lockout),
            ..ucbridge_lab::CredentialPolicy::default()
        },
        ..LabConfig::default()
    })
    .await;
    let client = client_for(&lab).await;
    let users = client
        .list_users(&UserSearch::all(), &[UserTag::Userid])
        .await
        .unwrap();
    let userid = users[0].userid.clone().expect("userid");
    let defaults = LabConfig::default();
    let password = |p: &str| UserCredential::Password(Secret::new(p));
    let right = password(&defaults.user_password);

    let ok = client.authenticate_user(&userid, &right).await.unwrap();
    assert!(ok.authenticated, "{ok:?}");
    let pin = UserCredential::Pin(Secret::new(defaults.user_pin.clone()));
    assert!(
        client
            .authenticate_user(&userid, &pin)
            .await
            .unwrap()
            .authenticated
    );
    let wrong = client
        .authenticate_user(&userid, &password("not-it"))
        .await
        .unwrap();
    assert!(!wrong.authenticated);
    assert_ne!(wrong.code, ok.code);
    let unknown = client
        .authenticate_user("no.such.user", &right)
        .await
        .unwrap();
    assert!(!unknown.authenticated);
    // A PIN the schema refuses is never sent.
    let before = client.stats().requests;
    let err = client
        .authenticate_user(&userid, &UserCredential::Pin(Secret::new("12")))
        .await
        .unwrap_err();
    assert!(matches!(err, AxlError::InvalidRequest { .. }), "{err}");
    assert_eq!(client.stats().requests, before);

    // Two more failures reach the threshold of 3: locked, even for the right password.
    for _ in 0..2 {
        client
            .authenticate_user(&userid, &password("not-it"))
            .await
            .unwrap();
    }
    let locked = client.authenticate_user(&userid, &right).await.unwrap();
    assert!(!locked.authenticated);
    assert_ne!(locked.code, wrong.code, "locked is told apart from wrong");
    tokio::time::sleep(lockout + Duration::from_millis(200)).await;
    assert!(
        client
            .authenticate_user(&userid, &right)
            .await
            .unwrap()
            .authenticated
    );

    // A password set with updateUser replaces the default.
    client
        .update_user(
            Key::Name(&userid),
            &UserUpdate {
                password: Some(Secret::new("Ch4nged!")),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(
        !client
            .authenticate_user(&userid, &right)
            .await
            .unwrap()
            .authenticated
    );
    assert!(
        client
            .authenticate_user(&userid, &password("Ch4nged!"))
            .await
            .unwrap()
            .authenticated
    );

    // A broken answer is not retried: a second attempt would count as a second failure.
    let other = users[1].userid.clone().expect("userid");
    lab.faults().drop_next_responses(1);
    let before = client.stats().requests;
    let err = client
        .authenticate_user(&other, &password("not-it"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AxlError::Protocol { .. } | AxlError::Transport { .. }),
        "{err}"
    );
    assert_eq!(client.stats().requests, before + 1);
    assert_eq!(
        lab.credentials()
            .failed_logons(&other, ucbridge_lab::CredentialKind::Password)
            .unwrap(),
        Some(1)
    );
    // CUCM's 503 means it did not look at the request: that one is retried.
    lab.faults().fail_next_with_status(1, 503);
    assert!(
        client
            .authenticate_user(&other, &right)
            .await
            .unwrap()
            .authenticated
    );
    lab.shutdown().await;
}
