//! The authenticator against the lab's doAuthenticateUser and a real SQLite store filled by
//! directory sync: ID sources, the cache (counted in CUCM requests), refusals and their
//! audit entries, throttling before CUCM, bad input, CUCM down with and without grace, and
//! a user of a cluster the CUCM source has no client for: never tried on the default one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use ucbridge_axl::{AxlClient, AxlConfig, Secret};
use ucbridge_lab::{CredentialKind, LabConfig, RunningLab};
use ucbridge_signin::{
    Authenticator, CucmSource, CucmUnavailable, RefusalReason, SignInAttempt, SignInConfig,
    SignInError,
};
use ucbridge_store::{LocalUser, Store};

const PASSWORD: &str = "ucbridge-user";

struct Setup {
    lab: RunningLab,
    store: Store,
    client: AxlClient,
    users: Vec<LocalUser>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let lab = RunningLab::start(LabConfig {
        users: USERS,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let mut config = AxlConfig::new(lab.axl_url(), "administrator", Secret::new("ucbridge-lab"));
    config.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    let client = AxlClient::connect(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/db.sqlite", dir.path().display()))
        .await
        .unwrap();
    let keeper = ucbridge_sync::SnapshotKeeper::new(
        client.clone(),
        store.clone(),
        ucbridge_sync::SnapshotOptions::default(),
    );
    keeper.full_refresh(|_| {}).await.unwrap();
    let rules = ucbridge_sync::rules::SyncRules::default()
        .compile()
        .unwrap();
    ucbridge_sync::run_user_sync(&store, &rules, Default::default(), |_, _| {})
        .await
        .unwrap();
    let users = store.local_users().await.unwrap();
    assert_eq!(users.len(), USERS, "every end user synced");
    Setup {
        lab,
        store,
        client,
        users,
        _dir: dir,
    }
}

const USERS: usize = 12;

fn fast() -> SignInConfig {
    SignInConfig {
        refusal_delay: Duration::from_millis(20),
        attempts_per_minute_per_user: 0,
        attempts_per_minute_per_address: 0,
        ..SignInConfig::default()
    }
}

fn auth_requests(lab: &RunningLab) -> u64 {
    lab.stats()
        .by_operation
        .get("doAuthenticateUser")
        .copied()
        .unwrap_or(0)
}

fn attempt<'a>(login: &'a str, password: &'a str) -> SignInAttempt<'a> {
    SignInAttempt {
        login,
        password,
        client: Some("192.0.2.10".parse().unwrap()),
        via: "imap",
    }
}

/// A CUCM whose client can be swapped for one that points at a closed port.
struct Switchable(Mutex<AxlClient>);

impl CucmSource for Switchable {
    fn client(&self) -> BoxFuture<'_, Result<AxlClient, CucmUnavailable>> {
        let c = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(c) })
    }
}

async fn closed_port_client() -> AxlClient {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = AxlConfig::new(
        format!("https://127.0.0.1:{port}/axl/"),
        "administrator",
        Secret::new("x"),
    );
    config.version = Some("14.0".parse().unwrap());
    AxlClient::connect(config).await.unwrap()
}

#[tokio::test]
async fn each_id_source_signs_in_and_the_cache_spares_cucm() {
    let s = setup().await;
    let auth = Authenticator::new(fast(), Arc::new(s.client.clone()), s.store.clone());
    let user = s
        .users
        .iter()
        .find(|u| u.record.extension.is_some() && u.record.email.is_some())
        .expect("a user with extension and mail");
    let userid = user.record.username.clone();
    let before = auth_requests(&s.lab);
    let first = auth.authenticate(attempt(&userid, PASSWORD)).await.unwrap();
    assert_eq!(first.cucm_userid, userid);
    assert_eq!(first.cluster, ucbridge_store::SOURCE_CUCM);
    assert!(!first.from_cache);
    assert_eq!(auth_requests(&s.lab), before + 1);
    // The same user by other names, and in another case: from the cache.
    let upper = userid.to_uppercase();
    let email = user.record.email.clone().unwrap();
    let extension = user.record.extension.clone().unwrap();
    for login in [
        userid.as_str(),
        upper.as_str(),
        email.as_str(),
        extension.as_str(),
    ] {
        let again = auth.authenticate(attempt(login, PASSWORD)).await.unwrap();
        assert!(again.from_cache, "{login}");
        assert_eq!(again.username, user.record.username);
    }
    assert_eq!(
        auth_requests(&s.lab),
        before + 1,
        "one CUCM request per user per TTL"
    );
    // Five connections of one mail client at once, for another user: still one request.
    let other = s
        .users
        .iter()
        .find(|u| u.record.username != userid)
        .unwrap();
    let name = other.record.username.clone();
    let all =
        futures::future::join_all((0..5).map(|_| auth.authenticate(attempt(&name, PASSWORD))))
            .await;
    assert!(all.iter().all(|r| r.is_ok()), "{all:?}");
    assert_eq!(auth_requests(&s.lab), before + 2);
    assert_eq!(auth.cached_users(), 2);
}

#[tokio::test]
async fn the_cache_expires_after_its_ttl() {
    let s = setup().await;
    let clock = Arc::new(ucbridge_signin::ManualClock::default());
    let config = SignInConfig {
        cache_ttl: Duration::from_secs(300),
        ..fast()
    };
    let auth = Authenticator::with_clock(
        config,
        Arc::new(s.client.clone()),
        s.store.clone(),
        clock.clone(),
    );
    let name = s.users[0].record.username.clone();
    let before = auth_requests(&s.lab);
    assert!(
        !auth
            .authenticate(attempt(&name, PASSWORD))
            .await
            .unwrap()
            .from_cache
    );
    clock.advance(Duration::from_secs(299));
    assert!(
        auth.authenticate(attempt(&name, PASSWORD))
            .await
            .unwrap()
            .from_cache
    );
    clock.advance(Duration::from_secs(2));
    assert!(
        !auth
            .authenticate(attempt(&name, PASSWORD))
            .await
            .unwrap()
            .from_cache
    );
    assert_eq!(auth_requests(&s.lab), before + 2);
}

#[tokio::test]
async fn refusals_look_alike_and_the_audit_log_says_why() {
    let s = setup().await;
    let auth = Authenticator::new(fast(), Arc::new(s.client.clone()), s.store.clone());
    let wrong_user = s.users[0].record.username.clone();
    let locked_user = s.users[1].record.username.clone();
    // A cached user who then types a wrong password: CUCM is asked, the entry is dropped.
    auth.authenticate(attempt(&wrong_user, PASSWORD))
        .await
        .unwrap();
    let before = auth_requests(&s.lab);
    let wrong = auth
        .authenticate(attempt(&wrong_user, "not-the-password"))
        .await;
    assert!(
        matches!(
            wrong,
            Err(SignInError::Rejected {
                reason: RefusalReason::RefusedByCucm { .. }
            })
        ),
        "{wrong:?}"
    );
    assert_eq!(auth_requests(&s.lab), before + 1);
    let fresh = auth
        .authenticate(attempt(&wrong_user, PASSWORD))
        .await
        .unwrap();
    assert!(!fresh.from_cache, "no entry survives a refusal");
    // Locked by the administrator: the right password is refused.
    assert!(s
        .lab
        .credentials()
        .set_locked_by_administrator(&locked_user, CredentialKind::Password, true)
        .unwrap());
    let locked = auth.authenticate(attempt(&locked_user, PASSWORD)).await;
    // Unknown: CUCM is not asked.
    let asked = auth_requests(&s.lab);
    let unknown = auth.authenticate(attempt("nobody-here", PASSWORD)).await;
    assert_eq!(
        auth_requests(&s.lab),
        asked,
        "unknown users cost CUCM nothing"
    );
    let texts: Vec<String> = [&wrong, &locked, &unknown]
        .iter()
        .map(|r| r.as_ref().unwrap_err().to_string())
        .collect();
    assert!(texts.iter().all(|t| t == &texts[0]), "{texts:?}");
    assert!(matches!(
        unknown,
        Err(SignInError::Rejected {
            reason: RefusalReason::UnknownUser
        })
    ));
    let audit = s.store.audit_log(None, 1000).await.unwrap();
    let refused: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "sign_in_refused")
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused.iter().any(|e| e.username == "nobody-here"
        && e.after.as_deref().unwrap_or("").contains("unknown user")));
    assert!(refused.iter().any(|e| e.username == locked_user
        && e.after.as_deref().unwrap_or("").contains("refused by CUCM")));
    for e in &audit {
        let text = format!("{e:?}");
        assert!(
            !text.contains(PASSWORD) && !text.contains("not-the-password"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn throttled_attempts_never_reach_cucm_and_bad_input_is_refused() {
    let s = setup().await;
    let config = SignInConfig {
        attempts_per_minute_per_user: 2,
        attempts_per_minute_per_address: 100,
        ..fast()
    };
    let auth = Authenticator::new(config, Arc::new(s.client.clone()), s.store.clone());
    let name = s.users[2].record.username.clone();
    let before = auth_requests(&s.lab);
    for _ in 0..2 {
        let _ = auth.authenticate(attempt(&name, "guess")).await;
    }
    let third = auth.authenticate(attempt(&name, PASSWORD)).await;
    match third {
        Err(SignInError::Throttled { retry_after }) => assert!(retry_after > Duration::ZERO),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        auth_requests(&s.lab),
        before + 2,
        "the throttled one was not sent"
    );

    // Bad input (no throttle here, so every attempt reaches the shape checks).
    let auth = Authenticator::new(fast(), Arc::new(s.client.clone()), s.store.clone());
    let other = s.users[3].record.username.clone();
    let long = "x".repeat(auth.config().max_password_bytes + 1);
    let asked = auth_requests(&s.lab);
    for (login, password) in [
        (other.as_str(), long.as_str()),
        (other.as_str(), "bin\u{0}ary"),
        (other.as_str(), ""),
        ("", PASSWORD),
        ("a\u{7}b", PASSWORD),
    ] {
        let r = auth.authenticate(attempt(login, password)).await;
        assert!(matches!(r, Err(SignInError::Invalid(_))), "{r:?}");
    }
    let huge_login = "y".repeat(10_000);
    assert!(matches!(
        auth.authenticate(attempt(&huge_login, PASSWORD)).await,
        Err(SignInError::Invalid(_))
    ));
    assert_eq!(auth_requests(&s.lab), asked);
}

#[tokio::test]
async fn cucm_down_refuses_by_default_and_accepts_a_cached_password_within_grace() {
    let s = setup().await;
    let dead = closed_port_client().await;
    let name = s.users[4].record.username.clone();
    for grace in [Duration::ZERO, Duration::from_secs(3600)] {
        let cucm = Arc::new(Switchable(Mutex::new(s.client.clone())));
        let config = SignInConfig {
            // Every sign-in asks CUCM while it is up; the grace alone decides when it is not.
            cache_ttl: Duration::ZERO,
            unavailable_grace: grace,
            ..fast()
        };
        let auth = Authenticator::new(config, cucm.clone(), s.store.clone());
        assert!(
            !auth
                .authenticate(attempt(&name, PASSWORD))
                .await
                .unwrap()
                .from_cache
        );
        *cucm.0.lock().unwrap() = dead.clone();
        let during = auth.authenticate(attempt(&name, PASSWORD)).await;
        let wrong = auth
            .authenticate(attempt(&name, "wrong-during-outage"))
            .await;
        let unknown = auth.authenticate(attempt("nobody-here", PASSWORD)).await;
        if grace.is_zero() {
            assert!(
                matches!(during, Err(SignInError::Unavailable)),
                "{during:?}"
            );
        } else {
            assert!(during.unwrap().from_cache, "accepted within the grace");
        }
        assert!(matches!(wrong, Err(SignInError::Unavailable)), "{wrong:?}");
        assert!(
            matches!(unknown, Err(SignInError::Unavailable)),
            "{unknown:?}"
        );
        // CUCM back: answers as usual again.
        *cucm.0.lock().unwrap() = s.client.clone();
        assert!(auth.authenticate(attempt(&name, PASSWORD)).await.is_ok());
        assert!(matches!(
            auth.authenticate(attempt("nobody-here", PASSWORD)).await,
            Err(SignInError::Rejected { .. })
        ));
    }
    let audit = s.store.audit_log(None, 1000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "sign_in_unavailable"));
}

#[tokio::test]
async fn a_disabled_user_is_refused_without_asking_cucm() {
    let s = setup().await;
    let auth = Authenticator::new(fast(), Arc::new(s.client.clone()), s.store.clone());
    let victim = s.users[5].clone();
    s.store
        .apply_user_changes(
            None,
            &[ucbridge_store::UserChange::Disable {
                id: victim.id,
                before: victim.record.clone(),
            }],
        )
        .await
        .unwrap();
    let before = auth_requests(&s.lab);
    let r = auth
        .authenticate(attempt(&victim.record.username, PASSWORD))
        .await;
    assert!(
        matches!(
            r,
            Err(SignInError::Rejected {
                reason: RefusalReason::Disabled
            })
        ),
        "{r:?}"
    );
    assert_eq!(auth_requests(&s.lab), before);
}

/// A user synced from the further cluster `east` (a `cucm` source in `source_users`).
async fn east_user(store: &Store, userid: &str) {
    use ucbridge_store::{SourceEntry, SourceKind, SourceRefreshEnd, SourceUser, UserChange};
    store
        .register_source("east", SourceKind::Cucm, Some("east"))
        .await
        .unwrap();
    let user = SourceUser {
        uuid: "{east-0001}".into(),
        userid: userid.into(),
        ..SourceUser::default()
    };
    let entry = SourceEntry {
        user: user.clone(),
        ..SourceEntry::default()
    };
    store.begin_full_refresh("east", "t", 60_000).await.unwrap();
    store
        .stage_source_entries("east", "t", &[entry])
        .await
        .unwrap();
    store
        .finish_source_refresh("east", "t", &SourceRefreshEnd::default())
        .await
        .unwrap();
    let after = ucbridge_store::UserRecord {
        username: format!("east-{userid}"),
        source: "east".into(),
        source_key: Some(user.uuid),
        ..Default::default()
    };
    store
        .apply_user_changes(None, &[UserChange::Create { after }])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_user_of_another_cluster_is_never_tried_on_the_default_one() {
    let s = setup().await;
    east_user(&s.store, "east.person").await;
    // A fixed client knows the default cluster only.
    let auth = Authenticator::new(fast(), Arc::new(s.client.clone()), s.store.clone());
    let before = auth_requests(&s.lab);
    let r = auth.authenticate(attempt("east.person", PASSWORD)).await;
    assert!(matches!(r, Err(SignInError::Unavailable)), "{r:?}");
    assert_eq!(
        auth_requests(&s.lab),
        before,
        "the default cluster was asked"
    );
    let audit = s.store.audit_log(None, 1_000).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "sign_in_unavailable" && e.username == "east-east.person")
        .and_then(|e| e.after.clone())
        .expect("the attempt is audited");
    assert!(entry.contains("\"cluster\":\"east\""), "{entry}");
}
