//! The lab's Unity Connection, IdS and SSO Status emulators at the HTTP level: CORS, the
//! SSO Status API's shapes against seed 003, the IdS token endpoint, CUC's JSON quirks.

use crate::common;

use quick_xml::events::Event;
use quick_xml::Reader;
use ucbridge_lab::{CucFolder, LabConfig, RunningLab, SsoComponent, StepState};

const ALLOWED: &str = "https://app.example.com:8443";

async fn lab(users: usize) -> (RunningLab, reqwest::Client) {
    let mut config = LabConfig {
        users,
        ..LabConfig::default()
    };
    config.cuc.cors_allowed_origins = vec![ALLOWED.to_owned()];
    common::start(config).await
}

fn admin(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    rb.basic_auth(common::USER, Some(common::PASSWORD))
}

/// Element paths (`a/b/c`) in document order, attributes and text ignored.
fn shape(xml: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => {
                stack.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                out.push(stack.join("/"));
            }
            Event::Empty(e) => {
                out.push(
                    format!(
                        "{}/{}",
                        stack.join("/"),
                        String::from_utf8_lossy(e.local_name().as_ref())
                    )
                    .trim_start_matches('/')
                    .to_owned(),
                );
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => return out,
            _ => {}
        }
    }
}

#[tokio::test]
async fn cors_answers_only_listed_origins() {
    let (lab, http) = lab(2).await;
    let url = format!("{}/vmrest/mailbox/folders/inbox/messages", lab.cuc_url());
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, &url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization,accept")
            .send()
    };
    // Allowed: 204, origin echoed (never `*`), the Bearer header allowed; no auth needed.
    let ok = preflight(ALLOWED).await.unwrap();
    assert_eq!(ok.status(), 204);
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], ALLOWED);
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Authorization"));
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("PUT"));
    assert!(!h.contains_key("access-control-allow-credentials"));
    // Same host, other port / scheme / host: no CORS headers at all.
    for other in [
        "https://app.example.com",
        "http://app.example.com:8443",
        "https://evil.example.com:8443",
        "null",
    ] {
        let r = preflight(other).await.unwrap();
        assert_eq!(r.status(), 403, "{other}");
        assert!(
            !r.headers().contains_key("access-control-allow-origin"),
            "{other}"
        );
    }
    // Actual requests: allowed origin gets ACAO, others are answered without it.
    let user = lab_user(&lab, &http).await;
    let token = lab.ids().issue_tokens(&user).access_token;
    for (origin, expect) in [(ALLOWED, true), ("https://evil.example.com", false)] {
        let r = http
            .get(&url)
            .header("Origin", origin)
            .header("Authorization", format!("Bearer {token}"))
            .header("Accept", "application/xml")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers().contains_key("access-control-allow-origin"),
            expect,
            "{origin}"
        );
        assert!(r.headers()["vary"].to_str().unwrap().contains("Origin"));
    }
    // CORS covers /vmrest only; AXL does not answer preflights with CORS headers.
    let r = http
        .request(reqwest::Method::OPTIONS, lab.axl_url())
        .header("Origin", ALLOWED)
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn no_cors_by_default_and_bad_origins_refuse_to_start() {
    let (lab, http) = common::start(LabConfig::default()).await;
    let r = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/vmrest/version", lab.cuc_url()),
        )
        .header("Origin", ALLOWED)
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let mut bad = LabConfig::default();
    bad.cuc.cors_allowed_origins = vec!["*".into()];
    assert!(RunningLab::start(bad).await.is_err());
}

async fn lab_user(lab: &RunningLab, http: &reqwest::Client) -> String {
    let body = admin(http.get(format!("{}/vmrest/users?rowsPerPage=1", lab.cuc_url())))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    common::texts(&body, "Alias")
        .into_iter()
        .next()
        .expect("a user")
}

#[tokio::test]
async fn json_keeps_cucs_quirks() {
    let (lab, http) = lab(3).await;
    let get = |path: String| {
        admin(http.get(format!("{}{path}", lab.cuc_url())))
            .header("Accept", "application/json")
            .send()
    };
    let one: serde_json::Value = get("/vmrest/users?rowsPerPage=1".into())
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<serde_json::Value>(&t).expect("JSON body"))
        .unwrap();
    assert_eq!(one["@total"], "3");
    assert!(one["User"].is_object(), "a single user is an object: {one}");
    assert_eq!(
        one["User"]["ListInDirectory"], "true",
        "scalars are strings"
    );
    let two: serde_json::Value = get("/vmrest/users?rowsPerPage=2".into())
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<serde_json::Value>(&t).expect("JSON body"))
        .unwrap();
    assert_eq!(two["User"].as_array().map(Vec::len), Some(2));
    let none: serde_json::Value = get("/vmrest/users?query=(alias%20is%20nobody)".into())
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<serde_json::Value>(&t).expect("JSON body"))
        .unwrap();
    assert_eq!(
        none,
        serde_json::json!({"@total": "0"}),
        "no User key when empty"
    );
    let count: serde_json::Value = get("/vmrest/users?rowsPerPage=0".into())
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<serde_json::Value>(&t).expect("JSON body"))
        .unwrap();
    assert_eq!(
        count,
        serde_json::json!({"@total": "3"}),
        "rowsPerPage=0 counts only"
    );
    let err = get("/vmrest/users/00000000-0000-4000-8000-000000000000".into())
        .await
        .unwrap();
    assert_eq!(err.status(), 404);
    let body: serde_json::Value = err
        .text()
        .await
        .map(|t| serde_json::from_str::<serde_json::Value>(&t).expect("JSON body"))
        .unwrap();
    assert_eq!(body["errors"]["code"], "NOT_FOUND");
    let bad = get("/vmrest/users?query=(password%20is%20x)".into())
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad = get("/vmrest/users?rowsPerPage=abc".into()).await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn sso_status_matches_seed_003() {
    let (lab, http) = lab(0).await;
    let base = format!("{}/unifiedconfig/config/sso", lab.unifiedconfig_url());
    let get = |path: &str| admin(http.get(format!("{base}{path}"))).send();
    lab.sso().remove_component(5002);
    lab.sso().add_component(SsoComponent {
        reachable: false,
        ..SsoComponent::new(21, "FINESSE-A.boston.com")
    });
    let list = get("/status").await.unwrap();
    assert_eq!(list.status(), 200);
    let list = list.text().await.unwrap();
    // Same element structure as Cisco's example (its placeholder URL made parseable).
    let Some(seed) = ucbridge_testkit::fixture_bytes("cuc-samples/ucce-sso-status-list.xml") else {
        return;
    };
    let seed = String::from_utf8(seed).unwrap().replace(
        "https://<server>:<serverport>",
        "https://ids.example.com:8553",
    );
    let dedup = |v: Vec<String>| {
        let mut v = v;
        v.dedup();
        let mut seen = Vec::new();
        v.retain(|p| {
            let new = !seen.contains(p);
            seen.push(p.clone());
            new
        });
        v
    };
    assert_eq!(dedup(shape(&list)), dedup(shape(&seed)));
    assert_eq!(common::texts(&list, "globalSsoState"), ["NON_SSO"]);
    assert_eq!(common::texts(&list, "registrationState")[0], "NOT_STARTED");
    assert_eq!(
        common::texts(&list, "idSConfigurationState"),
        ["STATE_IN_SERVICE"]
    );
    assert_eq!(common::texts(&list, "idsBaseUrl"), [lab.ids_url()]);

    // Register: reachable components succeed, the unreachable one fails → overall FAILED.
    let r = admin(http.put(format!("{base}/register")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list = get("/status").await.unwrap().text().await.unwrap();
    assert_eq!(
        common::texts(&list, "registrationState"),
        ["FAILED", "SUCCEEDED", "SUCCEEDED", "FAILED"]
    );
    let one = get("/status/21").await.unwrap().text().await.unwrap();
    let Some(seed_one) =
        ucbridge_testkit::fixture_bytes("cuc-samples/ucce-sso-status-component.xml")
    else {
        return;
    };
    assert_eq!(shape(&one), shape(&String::from_utf8(seed_one).unwrap()));
    assert_eq!(
        common::texts(&one, "refURL"),
        ["/unifiedconfig/config/machineinventory/21"]
    );
    assert_eq!(common::texts(&one, "registrationState"), ["FAILED"]);
    assert_eq!(common::texts(&one, "modeState"), ["NOT_STARTED"]);

    // Global state: PUT with the current changeStamp sets modes; a stale one is refused.
    let gs = get("/globalstate").await.unwrap().text().await.unwrap();
    let stamp = common::texts(&gs, "changeStamp")[0].clone();
    let put = |body: String| {
        admin(http.put(format!("{base}/globalstate")))
            .header("Content-Type", "application/xml")
            .body(body)
            .send()
    };
    let r = put(format!(
        "<ssoState><changeStamp>{stamp}</changeStamp><state>HYBRID</state></ssoState>"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let stale = put(format!(
        "<ssoState><changeStamp>{stamp}</changeStamp><state>SSO</state></ssoState>"
    ))
    .await
    .unwrap();
    assert_eq!(stale.status(), 400);
    assert!(common::texts(&stale.text().await.unwrap(), "errorType")[0].starts_with("invalidInput"));
    let bad = put("<ssoState><state>MAYBE</state></ssoState>".into())
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let list = get("/status").await.unwrap().text().await.unwrap();
    assert_eq!(common::texts(&list, "globalSsoState"), ["HYBRID"]);
    assert_eq!(
        common::texts(&list, "modeState"),
        ["FAILED", "SUCCEEDED", "SUCCEEDED", "FAILED"]
    );

    // All reachable and registered → SUCCEEDED everywhere.
    lab.sso().remove_component(21);
    lab.sso()
        .set_component(5000, StepState::Processing, StepState::Succeeded);
    let list = get("/status").await.unwrap().text().await.unwrap();
    assert_eq!(common::texts(&list, "registrationState")[0], "PROCESSING");
    lab.sso().register_all();
    let list = get("/status").await.unwrap().text().await.unwrap();
    assert_eq!(common::texts(&list, "registrationState")[0], "SUCCEEDED");
    assert_eq!(common::texts(&list, "modeState")[0], "SUCCEEDED");

    // Unknown and malformed ids, no auth, an end user.
    let r = get("/status/999").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        common::texts(&r.text().await.unwrap(), "errorType"),
        ["notFound"]
    );
    assert_eq!(get("/status/abc").await.unwrap().status(), 400);
    assert_eq!(
        http.get(format!("{base}/status"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn ids_token_endpoint_speaks_oauth() {
    let (lab, http) = lab(2).await;
    let user = lab_user(&lab, &http).await;
    let token = |form: &[(&str, &str)]| http.post(lab.ids_token_url()).form(form).send();
    let r = token(&[
        ("grant_type", "password"),
        ("username", &user),
        ("password", "ucbridge-user"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r
        .text()
        .await
        .map(|t| serde_json::from_str::<serde_json::Value>(&t).expect("JSON body"))
        .unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    // Cisco's shape: unpadded base64 of "2:<uuid>".
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&access)
        .unwrap();
    assert!(String::from_utf8(decoded).unwrap().starts_with("2:"));
    let r = token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (form, error) in [
        (
            vec![
                ("grant_type", "password"),
                ("username", user.as_str()),
                ("password", "bad"),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", access.as_str()),
            ],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "client_credentials")],
            "unsupported_grant_type",
        ),
        (vec![("grant_type", "password")], "invalid_request"),
        (vec![], "invalid_request"),
    ] {
        let r = token(&form).await.unwrap();
        assert_eq!(r.status(), 400, "{form:?}");
        let body: serde_json::Value = r
            .text()
            .await
            .map(|t| serde_json::from_str::<serde_json::Value>(&t).expect("JSON body"))
            .unwrap();
        assert_eq!(body["error"], error, "{form:?}");
    }
    let r = http
        .post(lab.ids_token_url())
        .body("{not a form")
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Introspection, for the administrator only.
    let intro = |t: &str| {
        admin(http.post(lab.ids_introspect_url()))
            .form(&[("token", t)])
            .send()
    };
    let active: serde_json::Value = intro(&access)
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<serde_json::Value>(&t).expect("JSON body"))
        .unwrap();
    assert_eq!(active["active"], true);
    assert_eq!(active["username"], user.as_str());
    let forged: serde_json::Value = intro("MjpkMTI2NDgyOS1mMDg1LTRhY2UtOGM3Yy1hMmY0ZjQ0ODUxNGQ")
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<serde_json::Value>(&t).expect("JSON body"))
        .unwrap();
    assert_eq!(forged["active"], false);
    let r = http
        .post(lab.ids_introspect_url())
        .bearer_auth(&access)
        .form(&[("token", &access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// A CUNI subscription for `alias` whose callbacks land in the returned channel (an HTTP
/// listener on 127.0.0.1).
async fn cuni_listener(
    lab: &RunningLab,
    http: &reqwest::Client,
    alias: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let app = axum::Router::new().route(
        "/cb",
        axum::routing::post(move |body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let expiration = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let soap = format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:even=\"http://unity.cisco.com/messageeventservice/event\"><soapenv:Body>\
         <even:subscribe><even:resourceIdList><even:string>{alias}</even:string></even:resourceIdList>\
         <even:callbackServiceInfo><even:callbackServiceUrl>{url}</even:callbackServiceUrl>\
         </even:callbackServiceInfo><even:expiration>{expiration}</even:expiration>\
         <even:keepAliveInterval>0</even:keepAliveInterval><even:eventTypeList/>\
         </even:subscribe></soapenv:Body></soapenv:Envelope>"
    );
    let answer = admin(http.post(format!(
        "{}/messageeventservice/services/MessageEventService",
        lab.cuc_url()
    )))
    .header("Content-Type", "text/xml; charset=utf-8")
    .body(soap)
    .send()
    .await
    .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    rx
}

#[tokio::test]
async fn voicemail_can_be_delivered_over_http() {
    let (lab, http) = lab(2).await;
    let alias = lab_user(&lab, &http).await;
    let mut events = cuni_listener(&lab, &http, &alias).await;
    let url = format!("{}/lab/cuc/voicemail", lab.cuc_url());
    let request = serde_json::json!({
        "to": alias,
        "from": "+14085550199",
        "caller": "Outside Caller",
        "subject": "Pushed by hand",
        "seconds": 3.5,
        "format": "gsm",
    });
    // Only the lab administrator: no credentials, a wrong password, an end user.
    let anonymous = http
        .post(&url)
        .header("Content-Type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = http
        .post(&url)
        .basic_auth(common::USER, Some("not-the-password"))
        .header("Content-Type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let user = http
        .post(&url)
        .basic_auth(&alias, Some(LabConfig::default().user_password))
        .header("Content-Type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), 403);
    assert_eq!(
        lab.cuc().messages(&alias, CucFolder::Inbox).unwrap().len(),
        3
    );

    let answer = admin(http.post(&url))
        .header("Content-Type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let body: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    let id = body["id"].as_str().expect("the new message id").to_owned();
    assert!(id.starts_with("0:"), "{body}");
    assert_eq!(
        (body["duration_ms"].as_u64(), body["format"].as_str()),
        (Some(3500), Some("gsm"))
    );
    let inbox = lab.cuc().messages(&alias, CucFolder::Inbox).unwrap();
    let delivered = inbox.iter().find(|m| m.id == id).expect("in the inbox");
    assert_eq!(delivered.subject, "Pushed by hand");
    assert!(!delivered.read);
    // Served by CUMI as a GSM 6.10 WAV (format tag 0x31).
    let audio = admin(http.get(format!(
        "{}/vmrest/messages/{id}/attachments/0?userobjectid={}",
        lab.cuc_url(),
        lab.cuc().object_id(&alias).unwrap()
    )))
    .send()
    .await
    .unwrap();
    assert_eq!(audio.status(), 200);
    let wav = audio.bytes().await.unwrap();
    assert_eq!((&wav[..4], wav[20]), (&b"RIFF"[..], 0x31));
    // The CUNI subscriber hears of it, as with deliveries from test code.
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
        .await
        .expect("a CUNI event within 10 s")
        .expect("an event");
    assert!(event.contains("NEW_MESSAGE"), "{event}");
    assert!(event.contains(id.trim_start_matches("0:")), "{event}");

    // Bad requests say what is wrong; nothing is delivered.
    for (bad, says) in [
        (serde_json::json!({"from": "1"}), "to"),
        (
            serde_json::json!({"to": alias, "format": "ogg"}),
            "unknown format",
        ),
        (serde_json::json!({"to": alias, "seconds": 0}), "seconds"),
        (serde_json::json!({"to": alias, "seconds": 1e9}), "seconds"),
        (serde_json::json!({"to": "nobody-here"}), "nobody-here"),
    ] {
        let answer = admin(http.post(&url))
            .header("Content-Type", "application/json")
            .body(bad.to_string())
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert!(status == 400 || status == 404, "{bad}: {status} {text}");
        assert!(text.contains(says), "{bad}: {text}");
    }
    let not_json = admin(http.post(&url)).body("to=x").send().await.unwrap();
    assert_eq!(not_json.status(), 400);
    assert_eq!(
        lab.cuc().messages(&alias, CucFolder::Inbox).unwrap().len(),
        4
    );
}

/// Local names of the children of the first element named `record` that has a child
/// named `having` (the sample's ordinary user, not its system mailbox).
fn child_names(xml: &str, record: &str, having: &str) -> std::collections::BTreeSet<String> {
    let mut reader = Reader::from_str(xml);
    let mut depth_in: Option<usize> = None;
    let mut depth = 0usize;
    let mut names = std::collections::BTreeSet::new();
    loop {
        let (name, empty) = match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => (
                String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                false,
            ),
            Event::Empty(e) => (
                String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                true,
            ),
            Event::End(_) => {
                depth -= 1;
                if depth_in == Some(depth) {
                    if names.contains(having) {
                        return names;
                    }
                    names.clear();
                    depth_in = None;
                }
                continue;
            }
            Event::Eof => return std::collections::BTreeSet::new(),
            _ => continue,
        };
        if depth_in.is_some_and(|d| depth == d + 1) {
            names.insert(name.clone());
        }
        if depth_in.is_none() && name == record && !empty {
            depth_in = Some(depth);
        }
        if !empty {
            depth += 1;
        }
    }
}

/// Issue #11 item 8: a CUPI user carries every field Cisco's samples show for an ordinary
/// user (list XML from the CUPI guide + `PhoneNumber` of the captured JSON), in XML and
/// JSON alike, with ids that agree with their URI links.
#[tokio::test]
async fn cupi_users_carry_the_fields_of_ciscos_samples() {
    let (Some(xml_sample), Some(json_sample)) = (
        ucbridge_testkit::fixture_bytes("cuc-samples/cupi-users-list.xml"),
        ucbridge_testkit::fixture_bytes("cuc-samples/cupi-users-query-single.json"),
    ) else {
        return;
    };
    let mut expected = child_names(&String::from_utf8(xml_sample).unwrap(), "User", "FirstName");
    assert!(expected.contains("CallHandlerObjectId"), "{expected:?}");
    let json_sample: serde_json::Value = serde_json::from_slice(&json_sample).unwrap();
    expected.extend(json_sample["User"].as_object().unwrap().keys().cloned());
    // Only on tenant-partitioned systems (the sample's system mailbox); not emulated.
    assert!(!expected.contains("TenantObjectId"));

    let (lab, http) = lab(8).await;
    let list = |accept: &'static str| {
        admin(http.get(format!("{}/vmrest/users", lab.cuc_url())))
            .header("Accept", accept)
            .send()
    };
    let xml = list("application/xml").await.unwrap().text().await.unwrap();
    assert_eq!(child_names(&xml, "User", "DtmfAccessId"), expected, "{xml}");
    let json: serde_json::Value = serde_json::from_str(
        &list("application/json")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let mut complete = Vec::new();
    for user in json["User"].as_array().expect("users") {
        let keys: std::collections::BTreeSet<String> =
            user.as_object().unwrap().keys().cloned().collect();
        // Lab users without an extension, e-mail or name omit just those (CUCM data).
        let missing: Vec<&String> = expected.difference(&keys).collect();
        assert!(
            missing.iter().all(
                |k| ["DtmfAccessId", "EmailAddress", "FirstName", "LastName"].contains(&k.as_str())
            ),
            "{missing:?} {user}"
        );
        assert!(keys.is_subset(&expected), "{user}");
        if missing.is_empty() {
            complete.push(user.clone());
        }
        for (id, uri) in [
            ("CosObjectId", "CosURI"),
            ("LocationObjectId", "LocationURI"),
            ("MediaSwitchObjectId", "PhoneSystemURI"),
            ("CallHandlerObjectId", "CallhandlerURI"),
            ("PartitionObjectId", "PartitionURI"),
        ] {
            let id = user[id].as_str().unwrap();
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
            assert!(user[uri].as_str().unwrap().ends_with(id), "{user}");
        }
        let me = user["ObjectId"].as_str().unwrap();
        assert!(user["UserRoleURI"].as_str().unwrap().contains(me));
    }
    let users = complete;
    assert!(users.len() >= 2, "two lab users with every field");
    // One class of service and phone system for all; a call handler per user.
    assert_eq!(users[0]["CosObjectId"], users[1]["CosObjectId"]);
    assert_eq!(
        users[0]["MediaSwitchObjectId"],
        users[1]["MediaSwitchObjectId"]
    );
    assert_ne!(
        users[0]["CallHandlerObjectId"],
        users[1]["CallHandlerObjectId"]
    );
    // The full object: the same record plus SmtpAddress (notes §2).
    let one = admin(http.get(format!(
        "{}/vmrest/users/{}",
        lab.cuc_url(),
        users[0]["ObjectId"].as_str().unwrap()
    )))
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let mut full = expected.clone();
    full.insert("SmtpAddress".into());
    assert_eq!(child_names(&one, "User", "ObjectId"), full, "{one}");
}

/// POST one CUNI operation; (status, body).
async fn cuni(lab: &RunningLab, http: &reqwest::Client, op: &str, inner: &str) -> (u16, String) {
    let soap = format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:even=\"http://unity.cisco.com/messageeventservice/event\" \
         xmlns:even1=\"http://event.messageeventservice.unity.cisco.com\"><soapenv:Body>\
         <even:{op}>{inner}</even:{op}></soapenv:Body></soapenv:Envelope>"
    );
    let r = admin(http.post(format!(
        "{}/messageeventservice/services/MessageEventService",
        lab.cuc_url()
    )))
    .header("Content-Type", "text/xml; charset=utf-8")
    .header("SOAPAction", "\"\"")
    .body(soap)
    .send()
    .await
    .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// getSubscribedResourceIdList of subscription `id`.
async fn subscribed(lab: &RunningLab, http: &reqwest::Client, id: &str) -> Vec<String> {
    let (status, body) = cuni(
        lab,
        http,
        "getSubscribedResourceIdList",
        &format!("<even:subscriptionId>{id}</even:subscriptionId>"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("getSubscribedResourceIdListResponse"),
        "{body}"
    );
    common::texts(&body, "string")
}

fn subscribe_body(aliases: &[&str], url: &str, expiration: &str) -> String {
    let ids: String = aliases
        .iter()
        .map(|a| format!("<even:string>{a}</even:string>"))
        .collect();
    format!(
        "<even:resourceType/><even:eventTypeList/><even:resourceIdList>{ids}</even:resourceIdList>\
         <even:callbackServiceInfo><even1:callbackServiceUrl>{url}</even1:callbackServiceUrl>\
         </even:callbackServiceInfo><even:expiration>{expiration}</even:expiration>"
    )
}

/// Aliases of the lab's users, in CUPI's order.
async fn aliases(lab: &RunningLab, http: &reqwest::Client) -> Vec<String> {
    let body = admin(http.get(format!("{}/vmrest/users", lab.cuc_url())))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    common::texts(&body, "Alias")
}

/// Subscribe `alias` with callbacks to an address nobody listens on; the subscription id.
async fn subscribe(lab: &RunningLab, http: &reqwest::Client, alias: &str, exp: &str) -> String {
    let url = format!("http://127.0.0.1:9/{}", uuid::Uuid::new_v4());
    let (status, body) = cuni(lab, http, "subscribe", &subscribe_body(&[alias], &url, exp)).await;
    assert_eq!(status, 200, "{body}");
    common::texts(&body, "subscriptionId").remove(0)
}

/// Issue #11 item 8: `subscribe` takes an xsd:dateTime without a zone (read in the
/// server's zone, here UTC+2); getSubscriptionStatus answers the WSDL's SubscriptionInfo;
/// an expired subscription is gone.
#[tokio::test]
async fn cuni_reads_zoneless_expirations_and_reports_status() {
    let mut config = LabConfig {
        users: 1,
        ..LabConfig::default()
    };
    config.cuc.cuni_server_utc_offset = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
    let (lab, http) = common::start(config).await;
    let alias = aliases(&lab, &http).await.remove(0);
    let year: i32 = chrono::Utc::now().format("%Y").to_string().parse().unwrap();
    let year = year + 1;
    let id = subscribe(&lab, &http, &alias, &format!("{year}-06-01T12:00:00")).await;
    let utc = format!("{year}-06-01T10:00:00.000Z");
    assert_eq!(lab.cuc().subscriptions()[0].id, id);

    let (status, body) = cuni(
        &lab,
        &http,
        "getSubscriptionStatus",
        &format!("<even:subscriptionId>{id}</even:subscriptionId>"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        shape(&body)[2..],
        [
            "Envelope/Body/getSubscriptionStatusResponse",
            "Envelope/Body/getSubscriptionStatusResponse/out",
            "Envelope/Body/getSubscriptionStatusResponse/out/expiration",
            "Envelope/Body/getSubscriptionStatusResponse/out/subscriptionId",
        ]
    );
    assert_eq!(common::texts(&body, "expiration"), [utc]);
    assert_eq!(common::texts(&body, "subscriptionId"), [id.as_str()]);

    // An expired subscription is gone for every operation.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(1))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let short = subscribe(&lab, &http, &alias, &soon).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for op in ["getSubscriptionStatus", "getSubscribedResourceIdList"] {
        let (status, body) = cuni(
            &lab,
            &http,
            op,
            &format!("<even:subscriptionId>{short}</even:subscriptionId>"),
        )
        .await;
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("SUBSCRIPTION_NOT_FOUND"), "{body}");
    }
    // A zone-less value that is not an xsd:dateTime is still refused.
    let bad = subscribe_body(
        &[&alias],
        "http://127.0.0.1:9/cb",
        &format!("{year}-06-01 12:00:00"),
    );
    let (status, body) = cuni(&lab, &http, "subscribe", &bad).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("bad expiration"), "{body}");
}

/// Issue #11 item 8: getSubscribedResourceIdList and the add/remove operations; refused
/// changes change nothing.
#[tokio::test]
async fn cuni_resource_lists_can_be_changed() {
    let (lab, http) = lab(3).await;
    let users = aliases(&lab, &http).await;
    let (a, b, c) = (&users[0], &users[1], &users[2]);
    let exp = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let id = subscribe(&lab, &http, a, &exp).await;
    assert_eq!(subscribed(&lab, &http, &id).await, [a.as_str()]);
    let sid = format!("<even:subscriptionId>{id}</even:subscriptionId>");
    let one = |op: &str, inner: String| (op.to_owned(), inner);
    let list = |ids: &[&String]| {
        let ids: String = ids
            .iter()
            .map(|i| format!("<even:string>{i}</even:string>"))
            .collect();
        format!("{sid}<even:resourceIdList>{ids}</even:resourceIdList>")
    };
    // Adding one already held changes nothing.
    for (op, inner) in [
        one(
            "addResourceIdToSubscription",
            format!("{sid}<even:resourceId>{b}</even:resourceId>"),
        ),
        one(
            "addResourceIdToSubscription",
            format!("{sid}<even:resourceId>{b}</even:resourceId>"),
        ),
    ] {
        let (status, body) = cuni(&lab, &http, &op, &inner).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("addResourceIdToSubscriptionResponse"),
            "{body}"
        );
    }
    assert_eq!(subscribed(&lab, &http, &id).await, [a.clone(), b.clone()]);
    assert_eq!(lab.cuc().subscriptions()[0].aliases, [a.clone(), b.clone()]);
    let nobody = "nobody-here".to_owned();
    for (op, inner, says) in [
        (
            "addResourceIdToSubscription",
            format!("{sid}<even:resourceId>{nobody}</even:resourceId>"),
            nobody.as_str(),
        ),
        (
            "addResourceListToSubscription",
            list(&[c, &nobody]),
            nobody.as_str(),
        ),
        (
            "removeResourceIdFromSubscription",
            format!("{sid}<even:resourceIdList>{c}</even:resourceIdList>"),
            c.as_str(),
        ),
        ("addResourceIdToSubscription", sid.clone(), "no resource id"),
        (
            "getSubscriptionStatus",
            "<even:subscriptionId>not-a-subscription</even:subscriptionId>".into(),
            "SUBSCRIPTION_NOT_FOUND",
        ),
    ] {
        let (status, body) = cuni(&lab, &http, op, &inner).await;
        assert_eq!(status, 500, "{op}: {body}");
        assert!(
            body.contains("FaultDetail") && body.contains(says),
            "{op}: {body}"
        );
    }
    assert_eq!(subscribed(&lab, &http, &id).await, [a.clone(), b.clone()]);
    for (op, inner, left) in [
        (
            "addResourceListToSubscription",
            list(&[c]),
            vec![a.as_str(), b.as_str(), c.as_str()],
        ),
        (
            "removeResourceListFromSubscription",
            list(&[a, c]),
            vec![b.as_str()],
        ),
        (
            "removeResourceIdFromSubscription",
            format!("{sid}<even:resourceIdList>{b}</even:resourceIdList>"),
            vec![],
        ),
    ] {
        let (status, body) = cuni(&lab, &http, op, &inner).await;
        assert_eq!(status, 200, "{op}: {body}");
        assert_eq!(subscribed(&lab, &http, &id).await, left, "{op}");
    }
}

/// A voicemail reaches a resource added after subscribing.
#[tokio::test]
async fn added_resources_receive_events() {
    let (lab, http) = lab(2).await;
    let aliases = aliases(&lab, &http).await;
    let mut events = cuni_listener(&lab, &http, &aliases[0]).await;
    let id = lab.cuc().subscriptions()[0].id.clone();
    let (status, body) = cuni(
        &lab,
        &http,
        "addResourceIdToSubscription",
        &format!(
            "<even:subscriptionId>{id}</even:subscriptionId><even:resourceId>{}</even:resourceId>",
            aliases[1]
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let msg = lab
        .cuc()
        .deliver_voicemail(&aliases[1], ucbridge_lab::NewVoicemail::default())
        .unwrap();
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
        .await
        .expect("a CUNI event within 10 s")
        .expect("an event");
    assert!(event.contains(msg.trim_start_matches("0:")), "{event}");
    assert!(
        event.contains(&format!("mailboxId=\"{}\"", aliases[1])),
        "{event}"
    );
}

/// Issue #11 item 8: a message PUT may change Subject and Read only (CUMI schema); any
/// other Message field is refused with 403 and ErrorDetails, and nothing changes.
#[tokio::test]
async fn message_put_refuses_read_only_fields() {
    let (lab, http) = lab(1).await;
    let alias = lab_user(&lab, &http).await;
    let oid = lab.cuc().object_id(&alias).unwrap();
    let unread = lab
        .cuc()
        .messages(&alias, CucFolder::Inbox)
        .unwrap()
        .into_iter()
        .find(|m| !m.read)
        .expect("an unread inbox message");
    let url = format!(
        "{}/vmrest/messages/{}?userobjectid={oid}",
        lab.cuc_url(),
        unread.id
    );
    let put = |ct: &'static str, body: String| {
        admin(http.put(&url))
            .header("Content-Type", ct)
            .header(
                "Accept",
                if ct.contains("json") {
                    "application/json"
                } else {
                    "application/xml"
                },
            )
            .body(body)
            .send()
    };
    // The whole record as GET returns it, with Read flipped: refused (URI, MsgId, ...).
    let detail = admin(http.get(&url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let round_trip = detail.replace("<Read>false</Read>", "<Read>true</Read>");
    for (ct, body, field) in [
        ("application/xml", round_trip, "Dispatch"),
        (
            "application/xml",
            "<Message><Read>true</Read><Priority>Urgent</Priority></Message>".to_owned(),
            "Priority",
        ),
        (
            "application/json",
            r#"{"Read":"true","ArrivalTime":"1"}"#.to_owned(),
            "ArrivalTime",
        ),
    ] {
        let r = put(ct, body).await.unwrap();
        assert_eq!(r.status(), 403, "{field}");
        let text = r.text().await.unwrap();
        let (code, message) = if ct.contains("json") {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            (
                v["errors"]["code"].as_str().unwrap().to_owned(),
                v["errors"]["message"].as_str().unwrap().to_owned(),
            )
        } else {
            assert_eq!(
                shape(&text),
                [
                    "ErrorDetails",
                    "ErrorDetails/errors",
                    "ErrorDetails/errors/code",
                    "ErrorDetails/errors/message"
                ]
            );
            (
                common::texts(&text, "code").remove(0),
                common::texts(&text, "message").remove(0),
            )
        };
        assert_eq!(code, "FORBIDDEN");
        assert!(
            message.contains(field) && message.contains("read-only"),
            "{message}"
        );
    }
    // Not a Message field at all, or a bad value: 400 DATA_EXCEPTION.
    for body in [
        "<Message><Read>true</Read><Colour>red</Colour></Message>",
        "<Message><Read>maybe</Read></Message>",
    ] {
        let r = put("application/xml", body.to_owned()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(
            common::texts(&r.text().await.unwrap(), "code"),
            ["DATA_EXCEPTION"]
        );
    }
    let now = lab.cuc().messages(&alias, CucFolder::Inbox).unwrap();
    let same = now.iter().find(|m| m.id == unread.id).unwrap();
    assert_eq!(same, &unread, "refused PUTs change nothing");
    // The writable fields still work.
    let r = put(
        "application/xml",
        "<Message><Read>true</Read><Subject>Kept</Subject></Message>".to_owned(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    let now = lab.cuc().messages(&alias, CucFolder::Inbox).unwrap();
    let changed = now.iter().find(|m| m.id == unread.id).unwrap();
    assert!(changed.read && changed.subject == "Kept", "{changed:?}");
}
