//! Unity Connection emulator: CUMI (`/vmrest/mailbox`, `/vmrest/messages`) and CUPI
//! (`/vmrest/users`), on the lab's listener, with Basic or lab-IdS Bearer auth and a CORS
//! allow-list.
//!
//! Facts are from the project notes `shared/notes/unity-connection.md` ("notes §n"); where
//! CUC's behaviour is not documented the choice is marked "lab choice" and, when a client
//! could reasonably depend on it, made configurable in [`CucLabConfig`].
//!
//! # Emulated operations
//!
//! - CUMI: `GET /vmrest/version`, `/vmrest/mailbox`, `/vmrest/mailbox/folders[/<f>]`,
//!   `/vmrest/mailbox/folders/<f>/messages` (paging, `read`/`priority`/`type` filters, the
//!   three sort orders), `GET|PUT|DELETE /vmrest/messages/<id>`,
//!   `GET /vmrest/messages/<id>/attachments/0`.
//! - CUPI: `GET /vmrest/users` (query, sort, paging) and `GET /vmrest/users/<ObjectId>`.
//! - CUNI (`/messageeventservice/services/MessageEventService`): `subscribe`, `renew`,
//!   `unsubscribe`, `getSubscriptionStatus`, `getSubscribedResourceIdList`,
//!   `addResourceIdToSubscription`, `addResourceListToSubscription`,
//!   `removeResourceIdFromSubscription`, `removeResourceListFromSubscription`, `getVersion`;
//!   `subscribeForAllResources` answers "not supported" as CUC does (CUNI FAQ, notes §3).
//!
//! # Choices, with their sources
//!
//! - **CUPI user record** (`users::user_obj`): every element of the ordinary user in
//!   Cisco's list example (fixture `cupi-users-list.xml`, CUPI guide) plus `PhoneNumber`
//!   from the captured JSON (`cupi-users-query-single.json`), one shape for XML and JSON:
//!   `CosObjectId`/`CosURI`, `LocationObjectId`/`LocationURI`,
//!   `MediaSwitchObjectId`/`PhoneSystemURI`, `CallHandlerObjectId`/`CallhandlerURI` (sic),
//!   `PartitionObjectId`/`PartitionURI`, `TimeZone`, `CreationTime`, `Language`,
//!   `MailboxStoreName` and the per-user `…URI` links. Lab choices: one class of service,
//!   location, phone system and partition per seed (a fresh CUC's defaults) and one call
//!   handler per user, all derived ids; the links' targets are not served (404).
//!   `TimeZone` is `0` (the sample's system mailbox; CUC's code table is not public),
//!   `Language` 1033 (both samples). `TenantObjectId` is omitted: only tenant-partitioned
//!   systems set it (notes §1.3) and the lab has none. `SmtpAddress` is on the full object
//!   only (notes §2).
//! - **CUNI `expiration`** is an `xsd:dateTime` (WSDL); the zone is optional in that type.
//!   What CUC does without one is not documented; the lab reads it in the server's zone
//!   ([`CucLabConfig::cuni_server_utc_offset`], default UTC), as the Java SOAP stack the
//!   WSDL comes from does with the JVM's zone (inferred). Stricter than the XSD: four-digit
//!   years only. The answer always carries the understood instant in UTC (`…Z`).
//! - **CUNI `getSubscriptionStatus`** answers `out` typed `SubscriptionInfo`
//!   (`expiration`, `subscriptionId`) as the WSDL declares, not the richer
//!   `SubscriptionStatusResponse` the WSDL also defines but no operation uses.
//!   `getSubscribedResourceIdList` answers an `ArrayOfString` of the aliases as
//!   subscribed. `removeResourceIdFromSubscription` takes its one id in an element named
//!   `resourceIdList` (typed `xsd:string` in the WSDL).
//! - **CUNI faults, not public — stricter option**: an expired subscription is gone for
//!   every operation (`SUBSCRIPTION_NOT_FOUND`, and dropped); adding an unknown alias,
//!   removing one the subscription does not hold, or an empty id list is an
//!   `INVALID_PARAMETER` fault and changes nothing; adding a held alias is a no-op. Fault
//!   `errorCode` values are lab names (CUC's are not public); the shape is the WSDL's
//!   `FaultDetail`.
//! - **CUMI message PUT** (`update.rs`): the `Message` schema names `Subject` and `Read`
//!   as the fields a client may change (fixture `cumi-schema-fragments.xsd.txt`, notes
//!   §0.4); `Read` only in the inbox (notes §1.1). Any other `Message` field (including a
//!   GET-modify-PUT of the whole record: `URI`, `MsgId`, ...) is refused, not ignored — not
//!   public, stricter option — with 403, the status CUC gives a forbidden PUT (capture
//!   `cupi-http-capture-configurationvalues.txt`, notes §1.4), an `ErrorDetails` body
//!   (code `FORBIDDEN`: a lab name, CUC's code is not public) and no change at all.
//!   Names outside the schema and bad values are 400 `DATA_EXCEPTION`.

// Helpers return a finished HTTP answer as their error: it is the rare path, goes straight
// back to axum, and boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod cors;
mod cuni;
pub(crate) mod render;
mod store;
mod update;
mod users;
mod wav;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::rest::{Identity, RestAuth};
pub use cuni::LabSubscription;
use render::{error_details, render, Format, Obj};
use store::{Folder, Msg, Store};
pub use store::{Folder as CucFolder, NewVoicemail};
use users::{CuUser, IdMask};
pub use wav::VoiceFormat;

/// Unity Connection emulator settings.
#[derive(Debug, Clone)]
pub struct CucLabConfig {
    /// Seeded inbox messages per user (plus one sent and one deleted when > 0).
    pub messages_per_user: usize,
    /// Largest `rowsPerPage` accepted; above it the lab answers 400 `DATA_EXCEPTION`. CUC's
    /// limit for CUMI is not documented (notes §1.5); CUPI's default page is 2001 rows for
    /// some resources and LDAP imports fail above 2000 (notes §1.5), hence 2000.
    pub max_rows_per_page: u64,
    /// Origins (`scheme://host[:port]`) allowed to call `/vmrest` from a browser; empty =
    /// no CORS headers at all (CUC's default, notes §4).
    pub cors_allowed_origins: Vec<String>,
    /// Whether the administrator holds "Mailbox Access Delegate Account"; without it CUC
    /// returns empty message lists, not an error (notes §1.3).
    pub admin_is_mailbox_delegate: bool,
    /// Whether fetching the audio marks a message read (undocumented, notes §1.5).
    pub attachment_marks_read: bool,
    /// Whether DELETE without `harddelete` removes inbox/sent messages for good instead of
    /// moving them to `deleted` (a COS setting on a real system, notes §0.5).
    pub hard_delete: bool,
    /// Domain of users' SMTP addresses (`alias@domain`, notes §2).
    pub smtp_domain: String,
    /// What `GET /vmrest/version` reports.
    pub version: String,
    /// How often the CUNI Notifier sends KEEP_ALIVE to a subscription that asked for it
    /// (`keepAliveInterval` > 0). CUC's period is not documented (notes §3).
    pub cuni_keep_alive_every: std::time::Duration,
    /// The CUC server's time zone, in which CUNI reads an `expiration` `xsd:dateTime` given
    /// without one (CUNI module docs). Default UTC.
    pub cuni_server_utc_offset: chrono::FixedOffset,
}

impl Default for CucLabConfig {
    fn default() -> Self {
        CucLabConfig {
            messages_per_user: 3,
            max_rows_per_page: 2000,
            cors_allowed_origins: Vec::new(),
            admin_is_mailbox_delegate: true,
            attachment_marks_read: false,
            hard_delete: false,
            smtp_domain: "cuc.ucbridge.lab".into(),
            version: "14.0.1.14900-117".into(),
            cuni_keep_alive_every: std::time::Duration::from_secs(60),
            cuni_server_utc_offset: chrono::Offset::fix(&chrono::Utc),
        }
    }
}

pub(crate) struct CucState {
    auth: Arc<RestAuth>,
    config: CucLabConfig,
    mask: IdMask,
    store: Mutex<Store>,
    html_next: AtomicU32,
    notifier: cuni::Notifier,
    /// Tests switch CUC "down": every `/vmrest` and CUNI request gets HTTP 503.
    unavailable: AtomicBool,
    /// Added before every `/vmrest` answer ([`Cuc::set_latency`]).
    latency_ms: AtomicU64,
    /// Message listings asked for ([`Cuc::listing_requests`]).
    listings: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CucState {
    pub(crate) fn new(auth: Arc<RestAuth>, config: CucLabConfig, seed: u64) -> CucState {
        CucState {
            store: Mutex::new(Store::new(
                seed,
                config.messages_per_user,
                config.smtp_domain.clone(),
            )),
            mask: IdMask::new(seed),
            auth,
            config,
            html_next: AtomicU32::new(0),
            notifier: cuni::Notifier::default(),
            unavailable: AtomicBool::new(false),
            latency_ms: AtomicU64::new(0),
            listings: AtomicU64::new(0),
        }
    }

    fn user_by_alias(&self, alias: &str) -> Option<CuUser> {
        let conn = self.auth.shared.lock_db();
        users::by_alias(&conn, self.mask, alias).ok().flatten()
    }

    fn user_by_pkid(&self, pkid: &str) -> Option<CuUser> {
        let conn = self.auth.shared.lock_db();
        users::by_pkid(&conn, self.mask, pkid).ok().flatten()
    }

    fn user_by_object_id(&self, id: &str) -> Option<CuUser> {
        let conn = self.auth.shared.lock_db();
        users::by_object_id(&conn, self.mask, id).ok().flatten()
    }
}

/// A lab user was named that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("no lab user with alias {0:?}")]
pub struct UnknownUser(pub String);

/// A message as the lab holds it (for assertions in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabMessage {
    pub id: String,
    pub folder: CucFolder,
    pub subject: String,
    pub read: bool,
}

/// Control of the running lab's Unity Connection, from [`crate::RunningLab::cuc`].
pub struct Cuc<'a> {
    pub(crate) state: &'a CucState,
}

impl Cuc<'_> {
    /// Put a new, unread voice message into `alias`'s inbox; returns its CUMI id (`0:…`).
    pub fn deliver_voicemail(&self, alias: &str, vm: NewVoicemail) -> Result<String, UnknownUser> {
        let user = self
            .state
            .user_by_alias(alias)
            .ok_or_else(|| UnknownUser(alias.to_owned()))?;
        let mut store = lock(&self.state.store);
        let id = store.deliver(&user.owner(), vm);
        let mailbox = store.mailbox(&user.owner());
        if let Some(m) = mailbox.find(&id) {
            self.state.notifier.emit(
                cuni::EventKind::New,
                &mailbox.owner.alias,
                &mailbox.owner.display,
                mailbox.usn,
                m,
            );
        }
        Ok(id)
    }

    /// Make the whole Unity Connection unavailable (`true`: every `/vmrest` and CUNI
    /// request is answered 503, as while Tomcat restarts) or available again.
    pub fn set_unavailable(&self, down: bool) {
        self.state.unavailable.store(down, Ordering::SeqCst);
    }

    /// Delay every `/vmrest` answer by `latency` (zero: none), as a CUC across a slow WAN
    /// link or under load answers. Tests use it to catch a sync part-way through.
    pub fn set_latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.state.latency_ms.store(ms, Ordering::SeqCst);
    }

    /// How many `/vmrest/mailbox/folders/<f>/messages` requests (pages) arrived so far,
    /// so tests can tell a listing from a cheaper request.
    pub fn listing_requests(&self) -> u64 {
        self.state.listings.load(Ordering::SeqCst)
    }

    /// Drop every CUNI subscription silently, as a CUC restart or refresh upgrade does
    /// (no SUB_END is sent; notes §3): events stop until the subscriber notices.
    pub fn drop_subscriptions(&self) {
        self.state.notifier.forget_all();
    }

    /// Live CUNI subscriptions.
    pub fn subscriptions(&self) -> Vec<LabSubscription> {
        self.state.notifier.subscriptions()
    }

    /// Callback POSTs answered 2xx, and those that failed, since start.
    pub fn notifications(&self) -> (u64, u64) {
        (
            self.state.notifier.sent.load(Ordering::Relaxed),
            self.state.notifier.failed.load(Ordering::Relaxed),
        )
    }

    /// The CUC ObjectId of a user.
    pub fn object_id(&self, alias: &str) -> Option<String> {
        self.state.user_by_alias(alias).map(|u| u.object_id)
    }

    /// Messages of one folder, as stored (no auth, no paging).
    pub fn messages(&self, alias: &str, folder: CucFolder) -> Result<Vec<LabMessage>, UnknownUser> {
        let user = self
            .state
            .user_by_alias(alias)
            .ok_or_else(|| UnknownUser(alias.to_owned()))?;
        let mut store = lock(&self.state.store);
        let mailbox = store.mailbox(&user.owner());
        Ok(mailbox
            .messages
            .iter()
            .filter(|m| m.folder == folder)
            .map(|m| LabMessage {
                id: m.id.clone(),
                folder: m.folder,
                subject: m.subject.clone(),
                read: m.read,
            })
            .collect())
    }

    /// Answer the next `n` `/vmrest` requests with an HTML page (HTTP 200), as a CUC behind
    /// an SSO login redirect or a misrouted proxy does.
    pub fn answer_html_next(&self, n: u32) {
        self.state.html_next.store(n, Ordering::SeqCst);
    }
}

pub(crate) fn router(state: Arc<CucState>) -> Result<Router, String> {
    let cors = Arc::new(cors::Cors::new(&state.config.cors_allowed_origins)?);
    Ok(Router::new()
        .route("/vmrest/version", get(version))
        .route("/vmrest/mailbox", get(mailbox))
        .route("/vmrest/mailbox/folders", get(folders))
        .route("/vmrest/mailbox/folders/{folder}", get(folder))
        .route(
            "/vmrest/mailbox/folders/{folder}/messages",
            get(list_messages),
        )
        .route(
            "/vmrest/messages/{id}",
            get(get_message).put(put_message).delete(delete_message),
        )
        .route("/vmrest/messages/{id}/attachments/{index}", get(attachment))
        .route("/vmrest/users", get(list_users))
        .route("/vmrest/users/{id}", get(get_user))
        .route(CUNI_PATH, post(cuni::service))
        .route(
            LAB_DELIVER_PATH,
            // A delivery request is a few hundred bytes.
            post(lab_deliver).layer(axum::extract::DefaultBodyLimit::max(16 * 1024)),
        )
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(cors, cors::layer)))
}

/// The CUNI SOAP service path (notes §3).
const CUNI_PATH: &str = "/messageeventservice/services/MessageEventService";

/// The lab's own control route (no CUC API): deliver a voicemail from outside.
const LAB_DELIVER_PATH: &str = "/lab/cuc/voicemail";

/// Longest recording the delivery route synthesises (10 minutes of 16 kHz PCM is 19 MB).
const LAB_MAX_SECONDS: f64 = 600.0;

/// `POST /lab/cuc/voicemail` (lab administrator, Basic or lab-IdS Bearer) with JSON
/// `{"to": alias, "from": caller number, "caller": caller name, "subject", "seconds",
/// "format": "mulaw"|"alaw"|"pcm8k"|"pcm16k"|"gsm", "urgent"}` (all but `to` optional):
/// what [`Cuc::deliver_voicemail`] does for tests — a new unread message in the inbox and a
/// CUNI `NEW_MESSAGE` to the subscribers. Answers 201 `{"id": "0:…", …}`. It works while
/// CUC is switched off ([`Cuc::set_unavailable`]), like mail arriving during an outage.
async fn lab_deliver(State(st): State<Arc<CucState>>, headers: HeaderMap, body: Bytes) -> Response {
    let lab_error = |status: StatusCode, message: &str| {
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    };
    match st.auth.authenticate(&headers) {
        Ok(Identity::Admin) => {}
        Ok(Identity::User { .. }) => {
            return lab_error(
                StatusCode::FORBIDDEN,
                "only the lab administrator may deliver voicemail",
            )
        }
        Err(reject) => return reject.into_response(),
    }
    let (alias, vm) = match delivery_request(&body) {
        Ok(r) => r,
        Err(message) => return lab_error(StatusCode::BAD_REQUEST, &message),
    };
    let format = vm.format;
    let duration_ms = vm.duration_ms;
    match (Cuc { state: &st }).deliver_voicemail(&alias, vm) {
        Ok(id) => (
            StatusCode::CREATED,
            axum::Json(serde_json::json!({
                "id": id,
                "to": alias,
                "format": format.name(),
                "duration_ms": duration_ms,
            })),
        )
            .into_response(),
        Err(e) => lab_error(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

/// The alias and the voicemail a delivery request asks for, or why it is refused.
fn delivery_request(body: &[u8]) -> Result<(String, NewVoicemail), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let text = |name: &str| -> Result<Option<String>, String> {
        match v.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.len() <= 256 => Ok(Some(s.clone())),
            Some(_) => Err(format!("{name:?} must be a string of at most 256 bytes")),
        }
    };
    let to = text("to")?
        .filter(|t| !t.trim().is_empty())
        .ok_or("\"to\" (the recipient's alias) is required")?;
    let number = text("from")?.unwrap_or_else(|| "+14085550100".into());
    let name = text("caller")?.unwrap_or_else(|| number.clone());
    let seconds = match v.get("seconds") {
        None | Some(serde_json::Value::Null) => 5.0,
        Some(s) => s
            .as_f64()
            .filter(|s| *s > 0.0 && *s <= LAB_MAX_SECONDS)
            .ok_or(format!(
                "\"seconds\" must be a number above 0, at most {LAB_MAX_SECONDS}"
            ))?,
    };
    let format = match text("format")? {
        None => VoiceFormat::default(),
        Some(f) => VoiceFormat::parse(&f).ok_or(format!(
            "unknown format {f:?}: mulaw, alaw, pcm8k, pcm16k or gsm"
        ))?,
    };
    let urgent = match v.get("urgent") {
        None | Some(serde_json::Value::Null) => false,
        Some(u) => u.as_bool().ok_or("\"urgent\" must be true or false")?,
    };
    Ok((
        to.trim().to_owned(),
        NewVoicemail {
            caller_number: number,
            caller_name: name,
            subject: text("subject")?,
            duration_ms: (seconds * 1000.0).round() as u64,
            urgent,
            audio: None,
            format,
        },
    ))
}

/// 503 while the lab's CUC is switched off ([`Cuc::set_unavailable`]).
fn unavailable_answer(st: &CucState) -> Option<Response> {
    st.unavailable.load(Ordering::SeqCst).then(|| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html;charset=UTF-8")],
            "<html><head><title>503 Service Unavailable</title></head><body>Service Unavailable</body></html>",
        )
            .into_response()
    })
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// What every handler needs: who calls, in which format, with which parameters.
struct Call {
    identity: Identity,
    format: Format,
    /// Query parameters by lower-case name: CUMI spells `pagenumber`, CUPI `pageNumber`
    /// (notes §1.1, treated as case-insensitive).
    params: HashMap<String, String>,
}

impl Call {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        error(self.format, status, code, message)
    }

    fn ok(&self, obj: &Obj) -> Response {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, self.format.content_type())],
            render(obj, self.format),
        )
            .into_response()
    }

    fn bool_param(&self, name: &str) -> Result<Option<bool>, Response> {
        match self.param(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(self.error(
                StatusCode::BAD_REQUEST,
                "DATA_EXCEPTION",
                &format!("Invalid value {other:?} for {name}"),
            )),
        }
    }

    /// `(offset, rows)` from `pageNumber`/`rowsPerPage`. Page numbers start at 1 (notes
    /// §1.1); `0` for either returns only the count (CUPI, notes §2).
    fn paging(&self, max: u64) -> Result<(u64, u64), Response> {
        let number = |name: &str| -> Result<Option<u64>, Response> {
            match self.param(name) {
                None => Ok(None),
                Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
                    self.error(
                        StatusCode::BAD_REQUEST,
                        "DATA_EXCEPTION",
                        &format!("Invalid value {v:?} for {name}"),
                    )
                }),
            }
        };
        let rows = number("rowsperpage")?;
        let page = number("pagenumber")?.unwrap_or(1);
        if let Some(r) = rows.filter(|r| *r > max) {
            // Lab choice (notes §1.5): an explicit error rather than a silent cap.
            return Err(self.error(
                StatusCode::BAD_REQUEST,
                "DATA_EXCEPTION",
                &format!("rowsPerPage {r} exceeds the maximum of {max}"),
            ));
        }
        // Lab choice: without rowsPerPage, one page of the maximum size.
        let rows = rows.unwrap_or(max);
        if page == 0 || rows == 0 {
            return Ok((0, 0));
        }
        Ok(((page - 1).saturating_mul(rows), rows))
    }
}

fn error(format: Format, status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        render(&error_details(code, message), format),
    )
        .into_response()
}

/// The page a browser gets when CUC hands it to SSO login instead of answering.
const HTML_LOGIN_PAGE: &str = "<!DOCTYPE html><html><head><title>Cisco Unity Connection - Single Sign-On</title></head>\
<body><h1>Cisco Unity Connection</h1><p>Redirecting to your identity provider to sign in...</p></body></html>";

/// Every `/vmrest` handler starts from a `Call`: the optional HTML-answer fault, then
/// authentication, then the query string, each answered as CUC would when it fails.
impl FromRequestParts<Arc<CucState>> for Call {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<CucState>,
    ) -> Result<Self, Self::Rejection> {
        let latency = st.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let params: Params = Query::from_request_parts(parts, st).await;
        begin(st, &parts.headers, params)
    }
}

fn begin(st: &CucState, headers: &HeaderMap, params: Params) -> Result<Call, Response> {
    if let Some(r) = unavailable_answer(st) {
        return Err(r);
    }
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let take_html = st
        .html_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if take_html {
        return Err((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html;charset=UTF-8")],
            HTML_LOGIN_PAGE,
        )
            .into_response());
    }
    let identity = st
        .auth
        .authenticate(headers)
        .map_err(IntoResponse::into_response)?;
    let Ok(Query(pairs)) = params else {
        return Err(error(
            format,
            StatusCode::BAD_REQUEST,
            "DATA_EXCEPTION",
            "Malformed query string",
        ));
    };
    let params = pairs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    Ok(Call {
        identity,
        format,
        params,
    })
}

/// Whose mailbox a CUMI call works on.
enum Target {
    Mailbox(Box<CuUser>),
    /// An administrator without the delegate role: CUC shows nothing (notes §1.3).
    Hidden,
}

/// "using the userobjectid parameter will allow administrators to do the same operations
/// on the users mailbox" (CUMI guide, notes §1.3).
fn target(st: &CucState, call: &Call) -> Result<Target, Response> {
    let requested = match call.param("userobjectid") {
        Some(id) => Some(st.user_by_object_id(id).ok_or_else(|| {
            call.error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("user - ObjectId={id}"),
            )
        })?),
        None => None,
    };
    match (&call.identity, requested) {
        (Identity::Admin, Some(user)) if st.config.admin_is_mailbox_delegate => {
            Ok(Target::Mailbox(Box::new(user)))
        }
        (Identity::Admin, Some(_)) => Ok(Target::Hidden),
        // Lab choice: the administrator account has no mailbox of its own.
        (Identity::Admin, None) => Err(call.error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The administrator has no mailbox; pass userobjectid to act on a user's mailbox",
        )),
        (Identity::User { pkid, .. }, requested) => {
            let me = st
                .user_by_pkid(pkid)
                .ok_or_else(|| call.error(StatusCode::NOT_FOUND, "NOT_FOUND", "user not found"))?;
            match requested {
                Some(other) if other.pkid != me.pkid => Err(call.error(
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    "Only administrators with the Mailbox Access Delegate Account role may open other users' mailboxes",
                )),
                _ => Ok(Target::Mailbox(Box::new(me))),
            }
        }
    }
}

fn folder_of(call: &Call, name: &str) -> Result<Folder, Response> {
    Folder::parse(name).ok_or_else(|| {
        call.error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("folder - {name}"),
        )
    })
}

async fn version(State(st): State<Arc<CucState>>, call: Call) -> Response {
    // Shape from `vmrest-version.xml` (CUC "API List Examples").
    call.ok(&Obj::new("VersionInformation")
        .text("name", "vmrest")
        .text("version", &st.config.version))
}

async fn mailbox(State(st): State<Arc<CucState>>, call: Call) -> Response {
    let user = match target(&st, &call) {
        Ok(Target::Mailbox(u)) => u,
        Ok(Target::Hidden) => {
            return call.error(StatusCode::NOT_FOUND, "NOT_FOUND", "mailbox not found")
        }
        Err(r) => return r,
    };
    let mut store = lock(&st.store);
    let mb = store.mailbox(&user.owner());
    let size: usize = mb.messages.iter().map(Msg::size).sum();
    // Element names from the Mailbox schema (fixture `cumi-schema-fragments.xsd.txt`).
    let quota: u64 = 50 * 1024 * 1024;
    call.ok(&Obj::new("Mailbox")
        .text("DisplayName", &mb.owner.display)
        .text("CurrentSizeInBytes", size)
        .text("IsPrimary", true)
        .text("IsStoreMounted", true)
        .text("IsStoreOverFlowed", false)
        .text("IsMailboxMounted", true)
        .text("IsWarningQuotaExceeded", false)
        .text("IsReceiveQuotaExceeded", false)
        .text("IsSendQuotaExceeded", false)
        .text("WarningQuota", quota * 8 / 10)
        .text("ReceiveQuota", quota)
        .text("SendQuota", quota * 9 / 10)
        .text("IsDeletedFolderEnabled", true)
        .text("FoldersURI", "/vmrest/mailbox/folders"))
}

fn folder_obj(st: &CucState, user: Option<&CuUser>, folder: Folder) -> Obj {
    let (count, usn, uidv) = match user {
        Some(u) => {
            let mut store = lock(&st.store);
            let mb = store.mailbox(&u.owner());
            (mb.count(folder), mb.usn, mb.uid_validity)
        }
        None => (0, 0, 0),
    };
    // Fields of `cumi-folder.xml`; USN/UIDValidity exist from 11.5 (notes §1.1).
    Obj::new("Folder")
        .text("DisplayName", folder.as_str())
        .text("MessageCount", count)
        .text("USN", usn)
        .text("UIDValidity", uidv)
}

async fn folders(State(st): State<Arc<CucState>>, call: Call) -> Response {
    let user = match target(&st, &call) {
        Ok(Target::Mailbox(u)) => Some(u),
        Ok(Target::Hidden) => None,
        Err(r) => return r,
    };
    // Lab choice: the list wrapper is not documented; `Folders` with a total like the
    // other CUC lists.
    let mut list = Obj::new("Folders").attr("total", Folder::ALL.len());
    for f in Folder::ALL {
        list.push(folder_obj(&st, user.as_deref(), f));
    }
    call.ok(&list)
}

async fn folder(State(st): State<Arc<CucState>>, Path(name): Path<String>, call: Call) -> Response {
    let f = match folder_of(&call, &name) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match target(&st, &call) {
        Ok(Target::Mailbox(u)) => call.ok(&folder_obj(&st, Some(&u), f)),
        Ok(Target::Hidden) => call.ok(&folder_obj(&st, None, f)),
        Err(r) => r,
    }
}

/// A message as CUMI shows it; `detail` adds Attachments and Recipients (fixtures
/// `cumi-inbox-messages.xml` and `cumi-message-detail.xml`, element order kept).
fn message_obj(m: &Msg, detail: bool) -> Obj {
    let mut o = Obj::new("Message")
        .text("Subject", &m.subject)
        .text("Read", m.read)
        .text("Dispatch", false)
        .text("Secure", false)
        .text("Priority", m.priority)
        .text("Sensitivity", "Normal");
    if detail {
        o = o.child(
            Obj::new("Attachments").child(
                Obj::new("Attachment")
                    .text("URI", format!("/vmrest/messages/{}/attachments/0", m.id))
                    .text("contentType", "audio/wav; name=voicemessage.wav")
                    .text("contentTransferEncoding", "")
                    .text(
                        "contentDisposition",
                        "inline; filename=VoiceMessage.wav; voice=Voice-Message",
                    ),
            ),
        );
        o = o.child(
            Obj::new("Recipients").child(
                Obj::new("Recipient").text("Type", "TO").child(
                    Obj::new("Address")
                        .text("DisplayName", "")
                        .text("SmtpAddress", "connectionserver")
                        .opt("DtmfAccessId", m.to_dtmf.as_deref()),
                ),
            ),
        );
    }
    o.text("URI", format!("/vmrest/messages/{}", m.id))
        .text("MsgId", &m.id)
        .child(
            Obj::new("From")
                .text("DisplayName", &m.from_display)
                .text("SmtpAddress", &m.from_smtp)
                .opt("DtmfAccessId", m.from_dtmf.as_deref()),
        )
        .child(
            Obj::new("CallerId")
                .text("CallerNumber", &m.caller_number)
                .text("CallerName", &m.caller_name),
        )
        .text("ArrivalTime", m.arrival_ms)
        .text("Size", m.size())
        .text("Duration", m.duration_ms)
        .text("IMAPUid", m.imap_uid)
        .text("FromSub", m.from_sub)
        .text("MsgType", "Voice")
        .text("ModificationTime", m.modification_ms)
}

async fn list_messages(
    State(st): State<Arc<CucState>>,
    Path(name): Path<String>,
    call: Call,
) -> Response {
    st.listings.fetch_add(1, Ordering::SeqCst);
    let folder = match folder_of(&call, &name) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (offset, rows) = match call.paging(st.config.max_rows_per_page) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let read = match call.bool_param("read") {
        Ok(r) => r,
        Err(r) => return r,
    };
    let priority = call.param("priority").map(str::to_ascii_lowercase);
    let kind = call.param("type").map(str::to_ascii_lowercase);
    // Sort orders CUMI offers (notes §1.1): default unread first, then read, each newest
    // first; or arrival time ascending/descending.
    let sort = match (
        call.param("sortkey")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        call.param("sortorder")
            .map(str::to_ascii_lowercase)
            .as_deref(),
    ) {
        (None, _) => None,
        (Some("arrivaltime"), None | Some("descending")) => Some(false),
        (Some("arrivaltime"), Some("ascending")) => Some(true),
        (Some("priority"), _) => None,
        (Some(k), o) => {
            return call.error(
                StatusCode::BAD_REQUEST,
                "DATA_EXCEPTION",
                &format!("Invalid sort {k:?} {o:?}"),
            )
        }
    };
    let user = match target(&st, &call) {
        Ok(Target::Mailbox(u)) => Some(u),
        Ok(Target::Hidden) => None,
        Err(r) => return r,
    };
    let mut store = lock(&st.store);
    let mut selected: Vec<&Msg> = match &user {
        Some(u) => store
            .mailbox(&u.owner())
            .messages
            .iter()
            .filter(|m| m.folder == folder)
            .filter(|m| read.is_none_or(|r| m.read == r))
            .filter(|m| {
                priority
                    .as_deref()
                    .is_none_or(|p| m.priority.eq_ignore_ascii_case(p))
            })
            .filter(|_| kind.as_deref().is_none_or(|k| k == "voice"))
            .collect(),
        None => Vec::new(),
    };
    match sort {
        Some(true) => selected.sort_by_key(|m| m.arrival_ms),
        Some(false) => selected.sort_by_key(|m| std::cmp::Reverse(m.arrival_ms)),
        None => selected.sort_by_key(|m| (m.read, std::cmp::Reverse(m.arrival_ms))),
    }
    let mut list = Obj::new("Messages").attr("total", selected.len());
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(rows).unwrap_or(usize::MAX);
    for m in selected.iter().skip(start).take(take) {
        list.push(message_obj(m, false));
    }
    call.ok(&list)
}

/// The mailbox holding message `id`, after auth; 404 for ids not in it.
fn with_message<T>(
    st: &CucState,
    call: &Call,
    id: &str,
    f: impl FnOnce(&mut store::Mailbox, &str) -> Result<T, Response>,
) -> Result<T, Response> {
    let not_found = || {
        call.error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("message - MsgId={id}"),
        )
    };
    let user = match target(st, call)? {
        Target::Mailbox(u) => u,
        Target::Hidden => return Err(not_found()),
    };
    let mut store = lock(&st.store);
    let mailbox = store.mailbox(&user.owner());
    if mailbox.find(id).is_none() {
        return Err(not_found());
    }
    f(mailbox, id)
}

async fn get_message(
    State(st): State<Arc<CucState>>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    let result = with_message(&st, &call, &id, |mb, id| {
        Ok(mb.find(id).map(|m| message_obj(m, true)))
    });
    match result {
        Ok(Some(obj)) => call.ok(&obj),
        Ok(None) => call.error(StatusCode::NOT_FOUND, "NOT_FOUND", "message"),
        Err(r) => r,
    }
}

async fn put_message(
    State(st): State<Arc<CucState>>,
    Path(id): Path<String>,
    call: Call,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
    let (subject, read) = match update::parse(json, &body) {
        Ok(u) => (u.subject, u.read),
        Err(e @ update::UpdateError::ReadOnly(_)) => {
            return call.error(StatusCode::FORBIDDEN, "FORBIDDEN", &e.to_string())
        }
        Err(e @ update::UpdateError::Invalid(_)) => {
            return call.error(StatusCode::BAD_REQUEST, "DATA_EXCEPTION", &e.to_string())
        }
    };
    let result = with_message(&st, &call, &id, |mb, id| {
        let now = mb.touch();
        let Some(m) = mb.find_mut(id) else {
            return Ok(());
        };
        // "Read" only for inbox messages (notes §0.4); 403 as on a forbidden CUPI PUT.
        if read.is_some() && m.folder != Folder::Inbox {
            return Err(call.error(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "Read can only be changed on inbox messages",
            ));
        }
        let read_changed = read.is_some_and(|r| r != m.read);
        if let Some(r) = read {
            m.read = r;
        }
        if let Some(s) = subject {
            m.subject = s;
        }
        m.modification_ms = now;
        if read_changed {
            let kind = if m.read {
                cuni::EventKind::Saved
            } else {
                cuni::EventKind::Unread
            };
            let m = m.clone();
            st.notifier
                .emit(kind, &mb.owner.alias, &mb.owner.display, mb.usn, &m);
        }
        Ok(())
    });
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

async fn delete_message(
    State(st): State<Arc<CucState>>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    let hard = match call.bool_param("harddelete") {
        Ok(h) => h.unwrap_or(st.config.hard_delete),
        Err(r) => return r,
    };
    let result = with_message(&st, &call, &id, |mb, id| {
        let folder = mb.find(id).map(|m| m.folder);
        let before = mb.find(id).cloned();
        // Deleting from `deleted` is always hard; elsewhere soft unless asked (notes §0.5).
        if let Some(m) = &before {
            // Emitted with the USN after the change (touch() below bumps it by one).
            st.notifier.emit(
                cuni::EventKind::Deleted,
                &mb.owner.alias,
                &mb.owner.display,
                mb.usn + 1,
                m,
            );
        }
        if hard || folder == Some(Folder::Deleted) {
            mb.remove(id);
        } else {
            let now = mb.touch();
            if let Some(m) = mb.find_mut(id) {
                m.folder = Folder::Deleted;
                m.modification_ms = now;
            }
        }
        Ok(())
    });
    match result {
        // CUMI's DELETE status is undocumented; 204 as CUPI answers (notes §1.4).
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

async fn attachment(
    State(st): State<Arc<CucState>>,
    Path((id, index)): Path<(String, String)>,
    call: Call,
) -> Response {
    let result = with_message(&st, &call, &id, |mb, id| {
        // Voice messages have one attachment, index 0 (zero-based, notes §1.1).
        if index != "0" {
            return Err(call.error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("attachment - {index}"),
            ));
        }
        let marks_read = st.config.attachment_marks_read;
        let now = if marks_read { Some(mb.touch()) } else { None };
        let Some(m) = mb.find_mut(id) else {
            return Ok(None);
        };
        if let Some(now) = now.filter(|_| m.folder == Folder::Inbox && !m.read) {
            m.read = true;
            m.modification_ms = now;
        }
        Ok(Some(m.clone()))
    });
    match result {
        Ok(Some(m)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "audio/wav"),
                (
                    header::CONTENT_DISPOSITION,
                    "inline; filename=VoiceMessage.wav",
                ),
            ],
            m.wav(),
        )
            .into_response(),
        Ok(None) => call.error(StatusCode::NOT_FOUND, "NOT_FOUND", "message"),
        Err(r) => r,
    }
}

fn require_admin(call: &Call) -> Result<(), Response> {
    match call.identity {
        Identity::Admin => Ok(()),
        // CUPI is the administration API: end users get 403 (lab choice for the body).
        Identity::User { .. } => Err(call.error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "CUPI requires an administrator account",
        )),
    }
}

async fn list_users(State(st): State<Arc<CucState>>, call: Call) -> Response {
    if let Err(r) = require_admin(&call) {
        return r;
    }
    let (offset, rows) = match call.paging(st.config.max_rows_per_page) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let filter = match call.param("query").map(users::parse_query).transpose() {
        Ok(f) => f,
        Err(e) => return call.error(StatusCode::BAD_REQUEST, "DATA_EXCEPTION", &e),
    };
    let sort = match call.param("sort").map(users::parse_sort).transpose() {
        Ok(s) => s,
        Err(e) => return call.error(StatusCode::BAD_REQUEST, "DATA_EXCEPTION", &e),
    };
    let state = Arc::clone(&st);
    let page = tokio::task::spawn_blocking(move || {
        let conn = state.auth.shared.lock_db();
        users::list(
            &conn,
            state.mask,
            &state.config.smtp_domain,
            filter.as_ref(),
            sort,
            offset,
            rows,
        )
    })
    .await;
    let page = match page {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            return call.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "DATA_EXCEPTION",
                &e.to_string(),
            )
        }
        Err(e) => {
            return call.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "DATA_EXCEPTION",
                &e.to_string(),
            )
        }
    };
    let mut list = Obj::new("Users").attr("total", page.total);
    for u in &page.users {
        list.push(users::user_obj(u, st.mask, false, &st.config.smtp_domain));
    }
    call.ok(&list)
}

async fn get_user(State(st): State<Arc<CucState>>, Path(id): Path<String>, call: Call) -> Response {
    if let Err(r) = require_admin(&call) {
        return r;
    }
    match st.user_by_object_id(&id) {
        Some(u) => call.ok(&users::user_obj(&u, st.mask, true, &st.config.smtp_domain)),
        // As CUPI answers a missing object (fixture `cupi-error-details-404.xml`).
        None => call.error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("user - ObjectId={id}"),
        ),
    }
}
