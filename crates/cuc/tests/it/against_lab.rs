//! The CUMI/CUPI client against the lab's Unity Connection and IdS, over real HTTPS.

use std::time::Duration;

use ucbridge_auth::{AuthError, Credentials, Secret, TlsOptions, TokenEndpoint, TokenSource};
use ucbridge_cuc::{
    CucClient, CucConfig, CucError, Folder, Format, MailboxRef, MessageQuery, UserField,
    UserFilter, UserQuery,
};
use ucbridge_lab::{CucFolder, LabConfig, NewVoicemail, RunningLab};

const ADMIN: &str = "administrator";
const ADMIN_PW: &str = "ucbridge-lab";
const USER_PW: &str = "ucbridge-user";

async fn lab_with(users: usize, tweak: impl FnOnce(&mut LabConfig)) -> RunningLab {
    let mut config = LabConfig {
        users,
        seed: 5,
        ..LabConfig::default()
    };
    tweak(&mut config);
    RunningLab::start(config).await.expect("lab starts")
}

fn tls(lab: &RunningLab) -> TlsOptions {
    TlsOptions {
        ca_pem: lab.ca_certificate_pem().map(str::to_owned),
        ..TlsOptions::default()
    }
}

fn client(lab: &RunningLab, credentials: Credentials, format: Format) -> CucClient {
    let mut config = CucConfig::new(lab.cuc_url(), credentials);
    config.tls = tls(lab);
    config.format = format;
    CucClient::new(config).expect("client builds")
}

fn admin(lab: &RunningLab) -> CucClient {
    client(lab, Credentials::basic(ADMIN, ADMIN_PW), Format::Xml)
}

fn endpoint(lab: &RunningLab) -> TokenEndpoint {
    let http =
        ucbridge_auth::http_client(&tls(lab), Duration::from_secs(5), Duration::from_secs(5))
            .expect("http client");
    TokenEndpoint::new(lab.ids_token_url(), http)
}

async fn first_alias(cuc: &CucClient) -> String {
    let page = cuc
        .users(&UserQuery {
            rows_per_page: 1,
            ..UserQuery::default()
        })
        .await
        .expect("users list");
    page.users[0].alias.clone()
}

#[tokio::test]
async fn users_page_and_filter_in_xml_and_json() {
    let lab = lab_with(20, |_| {}).await;
    for format in [Format::Xml, Format::Json] {
        let cuc = client(&lab, Credentials::basic(ADMIN, ADMIN_PW), format);
        let all = cuc
            .all_users(&UserQuery {
                rows_per_page: 7,
                ..UserQuery::default()
            })
            .await
            .expect("all users");
        assert_eq!(all.len(), 20, "{format:?}");
        let mut aliases: Vec<_> = all.iter().map(|u| u.alias.clone()).collect();
        aliases.dedup();
        assert_eq!(aliases.len(), 20, "pages do not overlap");
        let page3 = cuc
            .users(&UserQuery {
                rows_per_page: 7,
                page_number: 3,
                ..UserQuery::default()
            })
            .await
            .unwrap();
        assert_eq!((page3.total, page3.users.len()), (20, 6));

        let target = all
            .iter()
            .find(|u| u.extension.is_some() && u.email_address.is_some())
            .expect("a user with extension and mail")
            .clone();
        let by = |f: UserFilter| {
            let cuc = cuc.clone();
            async move {
                cuc.all_users(&UserQuery {
                    filter: Some(f),
                    ..UserQuery::default()
                })
                .await
                .expect("filtered list")
            }
        };
        let one = |users: Vec<ucbridge_cuc::User>| {
            assert!(
                users.iter().any(|u| u.object_id == target.object_id),
                "{users:?}"
            );
            users
        };
        assert_eq!(
            one(by(UserFilter::is(UserField::Alias, &target.alias)).await).len(),
            1
        );
        assert_eq!(
            one(by(UserFilter::is(UserField::ObjectId, &target.object_id)).await).len(),
            1
        );
        let ext = target.extension.clone().unwrap();
        assert_eq!(
            one(by(UserFilter::is(UserField::Extension, &ext)).await).len(),
            1
        );
        one(by(UserFilter::is(
            UserField::EmailAddress,
            target.email_address.clone().unwrap(),
        ))
        .await);
        one(by(UserFilter::is(
            UserField::LastName,
            target.last_name.clone().unwrap(),
        ))
        .await);
        one(by(UserFilter::is(
            UserField::FirstName,
            target.first_name.clone().unwrap(),
        ))
        .await);
        one(by(UserFilter::starts_with(
            UserField::DisplayName,
            &target.display_name.clone().unwrap()[..3],
        ))
        .await);
        let prefix = &target.alias[..2];
        let starts = by(UserFilter::starts_with(UserField::Alias, prefix)).await;
        assert!(starts.iter().all(|u| u.alias.starts_with(prefix)));
        // The full object carries the SMTP address, and it filters back to the user.
        let full = cuc.user(&target.object_id).await.expect("full user");
        let smtp = full
            .smtp_address
            .clone()
            .expect("SmtpAddress on the full object");
        assert_eq!(smtp, format!("{}@cuc.ucbridge.lab", target.alias));
        assert_eq!(
            one(by(UserFilter::is(UserField::SmtpAddress, &smtp)).await).len(),
            1
        );
        assert!(by(UserFilter::is(UserField::Alias, "nobody-here"))
            .await
            .is_empty());
        // Unknown ObjectId: CUPI's 404 NOT_FOUND, typed.
        let err = cuc
            .user("00000000-0000-4000-8000-000000000000")
            .await
            .unwrap_err();
        assert!(
            err.is_not_found() && err.code() == Some("NOT_FOUND"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn admin_works_on_a_users_mailbox_as_delegate() {
    let lab = lab_with(6, |_| {}).await;
    let cuc = admin(&lab);
    let alias = first_alias(&cuc).await;
    let user = cuc
        .user_by_alias(&alias)
        .await
        .unwrap()
        .expect("user exists");
    let mb = MailboxRef::User(user.object_id.clone());

    let info = cuc.mailbox(&mb).await.expect("mailbox");
    assert!(info.is_primary);
    let inbox = cuc.folder(&mb, Folder::Inbox).await.unwrap();
    assert_eq!(inbox.message_count, 3);
    let usn_before = inbox.usn.expect("USN");

    // Paging: 3 inbox messages, 2 per page.
    let p1 = cuc
        .messages(
            &mb,
            Folder::Inbox,
            &MessageQuery {
                rows_per_page: 2,
                ..MessageQuery::default()
            },
        )
        .await
        .unwrap();
    let p2 = cuc
        .messages(
            &mb,
            Folder::Inbox,
            &MessageQuery {
                rows_per_page: 2,
                page_number: 2,
                ..MessageQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((p1.total, p1.messages.len(), p2.messages.len()), (3, 2, 1));
    // CUC's default order puts unread first.
    let reads: Vec<bool> = p1
        .messages
        .iter()
        .chain(&p2.messages)
        .map(|m| m.read)
        .collect();
    let mut sorted = reads.clone();
    sorted.sort();
    assert_eq!(reads, sorted, "unread first");

    let id = p1.messages[0].id.clone();
    let detail = cuc.message(&mb, &id).await.expect("message detail");
    assert_eq!(detail.attachments.len(), 1);
    assert_eq!(detail.msg_type.as_deref(), Some("Voice"));

    // Audio: a WAV of exactly the advertised size.
    let mut wav = Vec::new();
    let audio = cuc.download_audio(&mb, &id, &mut wav).await.expect("audio");
    assert_eq!(audio.content_type.as_deref(), Some("audio/wav"));
    assert_eq!(Some(audio.bytes), detail.size_bytes);
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");

    // Mark read / unread, checked on the lab side.
    let lab_read = |id: &str| {
        lab.cuc()
            .messages(&alias, CucFolder::Inbox)
            .unwrap()
            .into_iter()
            .find(|m| m.id == id)
            .map(|m| m.read)
    };
    cuc.set_read(&mb, &id, true).await.expect("mark read");
    assert_eq!(lab_read(&id), Some(true));
    cuc.set_read(&mb, &id, false).await.expect("mark unread");
    assert_eq!(lab_read(&id), Some(false));
    let unread = cuc
        .messages(
            &mb,
            Folder::Inbox,
            &MessageQuery {
                read: Some(false),
                ..MessageQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(unread.messages.iter().all(|m| !m.read) && unread.messages.iter().any(|m| m.id == id));

    // Delete: soft into `deleted`, then hard from there.
    cuc.delete_message(&mb, &id, None)
        .await
        .expect("soft delete");
    let deleted = cuc.all_messages(&mb, Folder::Deleted, 10).await.unwrap();
    assert!(deleted.iter().any(|m| m.id == id));
    assert_eq!(
        cuc.folder(&mb, Folder::Inbox).await.unwrap().message_count,
        2
    );
    assert!(cuc.folder(&mb, Folder::Inbox).await.unwrap().usn.unwrap() > usn_before);
    // "Read" may only change in the inbox: 403.
    let err = cuc.set_read(&mb, &id, true).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    cuc.delete_message(&mb, &id, None)
        .await
        .expect("hard delete from deleted");
    assert!(lab
        .cuc()
        .messages(&alias, CucFolder::Deleted)
        .unwrap()
        .iter()
        .all(|m| m.id != id));

    // Unknown ids: 404 NOT_FOUND for get, update, delete and audio.
    let ghost = "0:00000000-0000-4000-8000-000000000000";
    for err in [
        cuc.message(&mb, ghost).await.unwrap_err(),
        cuc.set_read(&mb, ghost, true).await.unwrap_err(),
        cuc.delete_message(&mb, ghost, None).await.unwrap_err(),
        cuc.download_audio(&mb, ghost, &mut Vec::new())
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, CucError::Api { status: 404, ref code, .. } if code == "NOT_FOUND"),
            "{err}"
        );
    }
    // Unknown user ObjectId.
    let nobody = MailboxRef::User("00000000-0000-4000-8000-000000000000".into());
    assert!(cuc
        .folder(&nobody, Folder::Inbox)
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn voicemail_delivered_through_the_lab_api_shows_up_with_its_audio() {
    let lab = lab_with(3, |c| c.cuc.messages_per_user = 0).await;
    let cuc = client(&lab, Credentials::basic(ADMIN, ADMIN_PW), Format::Json);
    let alias = first_alias(&cuc).await;
    let mb = MailboxRef::User(lab.cuc().object_id(&alias).expect("object id"));
    assert_eq!(
        cuc.messages(&mb, Folder::Inbox, &MessageQuery::default())
            .await
            .unwrap()
            .total,
        0
    );
    let audio = b"RIFF\x24\0\0\0WAVEfake-audio-for-test".to_vec();
    let id = lab
        .cuc()
        .deliver_voicemail(
            &alias,
            NewVoicemail {
                caller_number: "+14085550100".into(),
                caller_name: "Ann Caller".into(),
                urgent: true,
                audio: Some(audio.clone()),
                ..NewVoicemail::default()
            },
        )
        .unwrap();
    // JSON with one message: CUC sends an object, not an array.
    let page = cuc
        .messages(&mb, Folder::Inbox, &MessageQuery::default())
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    let m = &page.messages[0];
    assert_eq!(m.id, id);
    assert_eq!(
        m.subject.as_deref(),
        Some("Message from Ann Caller (+14085550100)")
    );
    assert_eq!(m.priority.as_deref(), Some("Urgent"));
    assert!(!m.read);
    let mut got = Vec::new();
    cuc.download_audio(&mb, &id, &mut got).await.unwrap();
    assert_eq!(got, audio);
    assert!(lab
        .cuc()
        .deliver_voicemail("no-such-user", NewVoicemail::default())
        .is_err());
}

#[tokio::test]
async fn bearer_tokens_refresh_after_401_and_before_expiry() {
    let lab = lab_with(4, |_| {}).await;
    let alias = first_alias(&admin(&lab)).await;
    let source = TokenSource::with_password(endpoint(&lab), &alias, &Secret::new(USER_PW))
        .await
        .expect("password grant");
    let cuc = client(&lab, Credentials::bearer(source.clone()), Format::Xml);
    let own = cuc
        .messages(&MailboxRef::Own, Folder::Inbox, &MessageQuery::default())
        .await
        .unwrap();
    assert_eq!(own.total, 3);
    assert_eq!(source.refreshes(), 0);
    // The IdS expires the access token: 401, one refresh, the call succeeds.
    lab.ids().expire_access_tokens();
    let again = cuc
        .messages(&MailboxRef::Own, Folder::Inbox, &MessageQuery::default())
        .await
        .unwrap();
    assert_eq!(again.total, 3);
    assert_eq!(source.refreshes(), 1);
    assert_eq!(lab.ids().counts().1, 1);
    // A user's token cannot reach another user's mailbox, nor CUPI.
    let other = admin(&lab)
        .users(&UserQuery {
            rows_per_page: 2,
            ..UserQuery::default()
        })
        .await
        .unwrap()
        .users
        .into_iter()
        .find(|u| u.alias != alias)
        .unwrap();
    let err = cuc
        .messages(
            &MailboxRef::User(other.object_id),
            Folder::Inbox,
            &MessageQuery::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert_eq!(
        cuc.users(&UserQuery::default()).await.unwrap_err().status(),
        Some(403)
    );
    // Revoked at the IdS: the next expiry cannot be refreshed.
    lab.ids().revoke_user(&alias);
    let err = cuc
        .folder(&MailboxRef::Own, Folder::Inbox)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CucError::Auth(AuthError::IdsRefused { ref error, .. }) if error == "invalid_grant"),
        "{err}"
    );
}

#[tokio::test]
async fn tokens_are_renewed_at_three_quarters_of_their_life() {
    let lab = lab_with(2, |c| c.ids.access_token_lifetime = Duration::from_secs(1)).await;
    let source = TokenSource::with_password(endpoint(&lab), ADMIN, &Secret::new(ADMIN_PW))
        .await
        .unwrap();
    let first = source.access_token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let second = source.access_token().await.unwrap();
    assert_ne!(first, second, "renewed without waiting for a 401");
    assert_eq!(source.refreshes(), 1);
    // The admin token works for CUPI.
    let cuc = client(&lab, Credentials::bearer(source), Format::Xml);
    assert_eq!(cuc.users(&UserQuery::default()).await.unwrap().total, 2);
}

#[tokio::test]
async fn bad_credentials_give_specific_errors() {
    let lab = lab_with(2, |_| {}).await;
    let call = |creds: Credentials| {
        let cuc = client(&lab, creds, Format::Xml);
        async move { cuc.version().await.unwrap_err() }
    };
    // Cisco's published sample token: well-formed, never issued here.
    let err = call(Credentials::bearer(TokenSource::fixed(
        "MjpkMTI2NDgyOS1mMDg1LTRhY2UtOGM3Yy1hMmY0ZjQ0ODUxNGQ",
    )))
    .await;
    assert!(
        matches!(err, CucError::Auth(AuthError::TokenRefused { ref detail }) if detail.contains("not recognised")),
        "{err}"
    );
    let err = call(Credentials::bearer(TokenSource::fixed("%%% not a token"))).await;
    assert!(
        matches!(err, CucError::Auth(AuthError::TokenRefused { ref detail }) if detail.contains("malformed")),
        "{err}"
    );
    // Expired and not refreshable.
    let pair = lab.ids().issue_tokens(ADMIN);
    lab.ids().expire_access_tokens();
    let err = call(Credentials::bearer(TokenSource::fixed(pair.access_token))).await;
    assert!(
        matches!(err, CucError::Auth(AuthError::TokenExpired { .. })),
        "{err}"
    );
    let err = call(Credentials::basic(ADMIN, "wrong")).await;
    assert!(
        matches!(err, CucError::Auth(AuthError::BasicRefused { .. })),
        "{err}"
    );
    // The password grant with a wrong password is refused by the IdS.
    let err = TokenSource::with_password(endpoint(&lab), ADMIN, &Secret::new("wrong"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::IdsRefused { ref error, .. } if error == "invalid_grant"),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_auth_scheme_is_refused() {
    let lab = lab_with(1, |_| {}).await;
    let http =
        ucbridge_auth::http_client(&tls(&lab), Duration::from_secs(5), Duration::from_secs(5))
            .unwrap();
    for header in [
        "Digest username=\"administrator\"",
        "Token abc",
        "Bearer",
        "Basic !!!",
    ] {
        let resp = http
            .get(format!("{}/vmrest/version", lab.cuc_url()))
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{header}");
        assert!(resp.headers().contains_key("www-authenticate"), "{header}");
    }
}

#[tokio::test]
async fn html_answers_and_page_limits_are_typed() {
    let lab = lab_with(3, |_| {}).await;
    let cuc = admin(&lab);
    lab.cuc().answer_html_next(1);
    let err = cuc.version().await.unwrap_err();
    assert!(
        matches!(err, CucError::HtmlAnswer { status: 200, title: Some(ref t) } if t.contains("Single Sign-On")),
        "{err}"
    );
    assert_eq!(cuc.version().await.unwrap().version, "14.0.1.14900-117");

    // Above the client's maximum: refused before sending.
    let big = UserQuery {
        rows_per_page: 5000,
        ..UserQuery::default()
    };
    assert!(matches!(
        cuc.users(&big).await.unwrap_err(),
        CucError::PageTooLarge {
            requested: 5000,
            max: 2000
        }
    ));
    // With the client's limit raised, the lab's own limit answers 400 DATA_EXCEPTION.
    let mut config = CucConfig::new(lab.cuc_url(), Credentials::basic(ADMIN, ADMIN_PW));
    config.tls = tls(&lab);
    config.max_rows_per_page = 10_000;
    let loose = CucClient::new(config).unwrap();
    let err = loose.users(&big).await.unwrap_err();
    assert!(
        matches!(err, CucError::Api { status: 400, ref code, ref message } if code == "DATA_EXCEPTION" && message.contains("5000")),
        "{err}"
    );
    let alias = first_alias(&cuc).await;
    let mb = MailboxRef::User(lab.cuc().object_id(&alias).unwrap());
    let err = loose
        .messages(
            &mb,
            Folder::Inbox,
            &MessageQuery {
                rows_per_page: 5000,
                ..MessageQuery::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("DATA_EXCEPTION"), "{err}");
    // A filter CUPI cannot express never leaves the client.
    let bad = UserQuery {
        filter: Some(UserFilter::is(UserField::Alias, "x) or (alias startswith ")),
        ..UserQuery::default()
    };
    assert!(matches!(
        cuc.users(&bad).await.unwrap_err(),
        CucError::InvalidInput(_)
    ));
}

#[tokio::test]
async fn without_the_delegate_role_lists_are_empty() {
    let lab = lab_with(2, |c| c.cuc.admin_is_mailbox_delegate = false).await;
    let cuc = admin(&lab);
    let alias = first_alias(&cuc).await;
    let mb = MailboxRef::User(lab.cuc().object_id(&alias).unwrap());
    // notes §1.3: not an error, just nothing.
    let page = cuc
        .messages(&mb, Folder::Inbox, &MessageQuery::default())
        .await
        .unwrap();
    assert_eq!((page.total, page.messages.len()), (0, 0));
    assert_eq!(
        lab.cuc().messages(&alias, CucFolder::Inbox).unwrap().len(),
        3
    );
    // The administrator has no mailbox of its own.
    assert!(cuc
        .folder(&MailboxRef::Own, Folder::Inbox)
        .await
        .unwrap_err()
        .is_not_found());
}
