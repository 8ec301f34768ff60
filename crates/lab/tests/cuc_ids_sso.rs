//! The lab's Unity Connection, IdS and SSO Status emulators at the HTTP level: CORS, the
//! SSO Status API's shapes against seed 003, the IdS token endpoint, CUC's JSON quirks.

mod common;

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
