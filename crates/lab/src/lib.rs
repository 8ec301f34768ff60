//! A faithful, in-process emulator of Cisco Unified CM's AXL SOAP API.
//!
//! [`RunningLab::start`] serves `POST /axl/` over real HTTP(S) on loopback, backed by an
//! in-memory SQLite database that uses CUCM data-dictionary table names, so
//! `executeSQLQuery` behaves like it does on a publisher. The behaviours integrators get hurt
//! by are reproduced: Basic auth and the `JSESSIONIDSSO` session cookie, schema versioning
//! (HTTP 599), Axis2 faults for unknown actions, AXL faults with their axlcodes, write
//! throttling (HTTP 503), the 8 MB response cap ("Query request too large"), the 16 MB
//! concurrent-response budget ("Maximum AXL Memory Allocation Consumed"), the XSD's facets
//! and references on requests, and seed 001's silent drop of `digestUser`.
//!
//! CUCM facts are cited from the project notes `shared/notes/axl.md` ("notes §n").
//!
//! # Emulated AXL operations
//!
//! `getCCMVersion`; `listUser`, `getUser`, `addUser`, `updateUser`, `removeUser`;
//! `listPhone`, `getPhone`, `addPhone`, `updatePhone`, `removePhone`; `addLine`, `getLine`,
//! `listLine`, `removeLine`; `executeSQLQuery`, `executeSQLUpdate`; `listChange`;
//! `doAuthenticateUser` ([`emulated_operations`]). Every other operation of Cisco's WSDL ([`wsdl_operations`]:
//! 1,026 in 11.5, 1,068 in 12.5–15.0) answers HTTP 500 with an AXL fault (`soapenv:Server`,
//! axlcode -1) whose text says it "is not emulated by the lab"; a name that is no operation
//! of the applied schema's WSDL (a misspelling) gets CUCM's Axis2 fault "The endpoint
//! reference (EPR) for the Operation not found is … and the WSA Action = …" (notes §1).
//! Schemas older than 11.5 are judged by the 11.5 WSDL (older WSDLs are not in the fixtures).
//!
//! `executeSQLUpdate` runs one `INSERT`, `UPDATE` or `DELETE` in a transaction and answers
//! `return/rowsUpdated` (XSD `ExecuteSQLUpdateRes`); anything else (a `SELECT`, DDL, several
//! statements, `RETURNING`) is refused with axlcode 5003, as `executeSQLQuery` refuses
//! writes. Constraint failures carry Informix's codes (-239 unique, -691/-692 referential,
//! -391 NULL), since CUCM passes Informix codes through (notes §3). It is a write: throttled
//! like add/update/remove (notes §4) and recorded for listChange.
//!
//! # Sign-in: `doAuthenticateUser` and the credential policy (issue 12 item 2)
//!
//! Request and answer are Cisco's XSD (`DoAuthenticateUserReq`/`Res`, the same in
//! 11.5–15.0): `userid` and a choice of `password` or `pin` (`\d\d\d\d+`, enforced as a
//! facet); `return/{userAuthenticated, code, daysToExpiry?, isWarningNeeded?}`.
//!
//! - Every end user has a password and a PIN: [`LabConfig::user_password`] and
//!   [`LabConfig::user_pin`] ("12345", a lab choice; CUCM's trivial-credential check is
//!   not modelled) until addUser/updateUser `password`/`pin` set the user's own (stored in `credential`).
//!   The same password serves the REST emulators' Basic auth, the IdS password grant and
//!   AXL's 403 for end users; the credential policy applies to doAuthenticateUser only.
//! - Public: failed logons are counted per credential; at the policy's "Failed Logon"
//!   threshold (1–100, **default 3**; 0 = "No Limit for Failed Logons") "the system locks
//!   the account" (Cisco Unified CM Administration Guide, OL-18611-01, "Credential Policy
//!   Configuration Settings"). A locked user is unlocked by the administrator's "Reset
//!   Hack Count" on the Credential Information page, which also clears "Time Locked Due to
//!   Failed Login Attempts"; "Locked by Administrator" is a separate lock (Cisco, System
//!   Error Messages for CUCM 15, the lockout alarm). The other fields — "Reset Failed Logon
//!   Attempts Every" (the count clears that long after a failure), "Lockout Duration"
//!   (0 = "Administrator Must Unlock"), "Credential Expires After", "Expiry Warning Days" —
//!   are named in the same guide; their defaults (**30 min**, **30 min**, 180 days) come
//!   from a third-party model of the CUCM object (VOSS `device/cucm/CredentialPolicy`),
//!   the part of Cisco's table stating them was not in the copy read. [`CredentialPolicy`]
//!   holds all of it with those defaults, except expiry, off by default (lab users never
//!   change their password; whether the Default Credential Policy expires them is not
//!   confirmed).
//! - **Not public, lab choices (stricter where there was a choice):** the values of `code`
//!   ("the IMS result code" in the XSD): 0 authenticated, 1 wrong credential, 2 locked
//!   after failed logons, 3 locked by an administrator, 4 expired, 5 unknown user. Locked,
//!   expired and unknown are `userAuthenticated` false with a result, not a fault (the
//!   XSD's answer has room for it; a client must be ready for either). While locked, even
//!   the right credential is refused and attempts are not counted. An expired credential
//!   is refused (CUCM's UI would ask for a change; AXL cannot), `daysToExpiry` 0. A
//!   password change through updateUser restarts the expiry clock but keeps the count and
//!   a lock. With LDAP authentication on, CUCM checks passwords against the directory
//!   (PINs stay in CUCM); the lab has no directory, every lab user is local.
//! - [`RunningLab::credentials`] does what CUCM's Credential Information page does (lock,
//!   reset the hack count, read the count) and ages a credential for expiry tests.
//!
//! # Requests are checked against the schema (issue 11 items 3, 4)
//!
//! Before an operation runs, its request element is checked against the facets of the
//! applied schema's XSD (`facets`, a table generated from the fixtures' `AXLSoap.xsd`
//! 11.5–15.0 and checked against them by a unit test; schemas older than 11.5 and 12.0
//! are judged by 11.5): `maxLength`/`minLength`, `pattern` (e.g. `axlapi:boolean`),
//! the enumerations (XProduct, XClass, XDeviceProtocol, XPatternUsage, …), required
//! `choice`s (`name|uuid` of get/update/remove) and the `searchCriteria` whose annotation
//! says "At least one element under searchCriteria has to be mentioned". Choices:
//!
//! - A violation is HTTP 500, `soapenv:Client`, axlcode 5003 (CUCM's invalid-value code,
//!   notes §3) with a text naming the element and facet (value cut to 40 characters).
//!   CUCM's texts for schema violations are not public: stricter option (refuse) chosen.
//! - Cisco's enumerations are unions of the listed values and any string; the lab enforces
//!   the listed values (CUCM resolves them in its type tables; stricter).
//! - `XUUID`'s braces pattern is not enforced (the guide documents uuids with or without
//!   braces, notes §1); `minOccurs` is not enforced beyond each operation's own checks
//!   (zeep's and the seed's requests leave out schema-required elements CUCM defaults).
//! - Text without a `maxLength` (`xsd:string`, e.g. XUser.department) in add*/update* is
//!   refused above 255 characters: the database widths behind them are not public, the
//!   widest AXL string type is `String255` (stricter than storing 12 MB).
//! - Every `XFkType` reference of an add*/update* (calling search spaces of every kind,
//!   partitions, device pool, location, common phone config, security/SIP profile, phone
//!   and softkey templates, presence group, media resource list, owner, …) must name an
//!   existing object, else 5007 "Item not valid: The specified <kind> '<name>' was not
//!   found" (`ops::references`). CUCM's 5007 wording is "The specified <Type> was not
//!   found" (notes §3); naming the value is the lab's addition. Kinds without a lab table
//!   hold CUCM's default-install names (`db::NAMED_OBJECTS`); any other name is unknown.
//!
//! # Throttles, versions, endpoint (issue 11 items 5, 7)
//!
//! - All responses in flight count against 16 MB ([`LabConfig::max_concurrent_response_bytes`],
//!   G "Data Change Notification" and "Data Throttling" Scenario 2, notes §4); the answer
//!   that would exceed it becomes `soapenv:Server`, axlcode -1, "Maximum AXL Memory
//!   Allocation Consumed. Please retry once requests in progress have completed" (sample
//!   `fault.max-axl-memory.cisco-devguide.xml`). A lone answer always fits.
//!   [`FaultSwitches::hold_responses`] keeps answers (and their share) in flight.
//! - Schemas per release: the guide's table (notes §1), checked against its policy (own
//!   schema, N-2 majors, 13 skipped, none per maintenance release). The table has no 10.5
//!   although the policy would keep it: the explicit table wins, 10.5 gets HTTP 599
//!   everywhere (stricter).
//! - `/axl` without the slash the guide requires (notes §1): HTTP 302 to `/axl/`, as
//!   Tomcat redirects a context root without its slash; CUCM's exact answer is not public
//!   (stricter than serving it).
//! - An end user (right password, [`LabConfig::user_password`]) is authenticated but has
//!   no AXL role: HTTP 403 (notes §2, uncertain 10: client docs, not Cisco's); anything
//!   else wrong is 401.
//! - Texts where CUCM names its own `https://host:8443` (the Axis2 fault) carry the lab's
//!   real scheme, host and port.
//! - listChange: an update lists the tags it changed with their new values in
//!   `changedTags/changedTag[@name]` and `doGet` false, as in the guide's example; a change
//!   the lab cannot name as a tag (a reference or an association) keeps `doGet` true.
//!
//! # Product catalogue (issue 11 item 6)
//!
//! `db::MODELS`: 7821/7841/7861, 8811/8841/8845/8851/8861/8865, 8875, Webex Desk (Desk,
//! Pro, LE, Mini), Jabber CSF/BOT/TCT/TAB, third-party SIP basic/advanced, named as in
//! XProduct. A release refuses what its schema's XProduct does not list (8875 needs 15.0;
//! "Cisco 9861"/"Cisco 9871" are in no fixture schema, i.e. need a device pack newer
//! than the fixtures) with the enumeration fault above; CUCM's own text is not public.
//!
//! # Seed 001's trap: SOAPAction without a CUCM version
//!
//! What is public: SOAP::Lite's default `SOAPAction: "http://www.cisco.com/AXL/API/8.5#addPhone"`
//! was served by CUCM 8.6, and `addPhone` quietly ignored `digestUser` (no fault, digest user
//! "None"); `"CUCM:DB ver=7.1 addPhone"` kept it and `"CUCM:DB ver=8.5 …"` failed (seed 001,
//! notes §5). Without a SOAPAction and with namespace 1.0 "CUCM will attempt to apply the
//! lowest version supported" (AXL Developer Guide, notes §1). CUCM runs Axis2, whose
//! dispatch phase falls back from the SOAPAction to the body element
//! (`SOAPActionBasedDispatcher`, then `SOAPMessageBodyBasedDispatcher`, Axis2's default
//! `axis2.xml`) — which is how a URL-form action can be served at all.
//!
//! The lab's rule (the mechanism inside CUCM is not public; this is the smallest rule that
//! agrees with every observation):
//!
//! - A SOAPAction that is not `CUCM:DB ver=X.Y [op]` (URL form, anything else) is served by
//!   the body element, under the **lowest schema the release accepts** (11.0 on CUCM 14,
//!   12.0 on 15): the response namespace says so. The body namespace must still be a schema
//!   the release serves, or 1.0 (stricter choice); otherwise HTTP 599.
//! - On that path the elements in `version::UNAPPLIED_ON_FALLBACK` are **ignored without a
//!   fault**: `digestUser` of `addPhone` (`phone` or AXL 7's `newPhone`) and of
//!   `updatePhone`. This is a hand table, not derived from the XSD: `digestUser` is in XPhone
//!   of every fixture schema (11.5–15.0) and was documented for 8.5, so the drop is not
//!   explained by the schema lacking it, and the schemas the fallback applies are not among
//!   the fixtures. Only what a source shows dropped is listed.
//! - `CUCM:DB ver=X.Y` with a schema the release does not serve, or differing from the body
//!   namespace, is HTTP 599 (unchanged). A correct `CUCM:DB ver=14.0 addPhone` keeps
//!   `digestUser`. No SOAPAction at all keeps the documented behaviour: namespace 1.0 → the
//!   lowest schema, any other namespace decides (the guide says nothing more; no drop).
//! - [`FaultSwitches::force_silent_drops`] applies the same drops to every request, so a
//!   client that sends correct requests can prove its read-back catches the drop.

mod cuc;
mod db;
mod facets;
mod ids;
mod ops;
mod rest;
mod server;
pub mod services;
mod tls;
mod version;
mod wsdl;
mod xmlin;
mod xmlout;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use cuc::{
    Cuc, CucFolder, CucLabConfig, LabMessage, LabSubscription, NewVoicemail, UnknownUser,
    VoiceFormat,
};
pub use ids::sso::{
    GlobalSsoState, IdsConfigurationState, Sso, SsoComponent, SsoLabConfig, StepState,
};
pub use ids::{Ids, IdsLabConfig, TokenPair, TokenProblem};
pub use version::CucmRelease;
pub use wsdl::{wsdl_operations, WsdlOperation};

/// The AXL operations the lab emulates (the crate docs list them with their rules).
pub fn emulated_operations() -> Vec<&'static str> {
    ops::emulated_names()
}

/// Configuration of one lab instance.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Listen address; default `127.0.0.1:0` (ephemeral port).
    pub bind: SocketAddr,
    /// Serve HTTPS with a CA generated at start (default true, as CUCM is HTTPS-only).
    pub tls: bool,
    /// Release string reported by getCCMVersion; decides the accepted schemas (notes §1).
    pub cucm_version: String,
    pub username: String,
    pub password: String,
    /// End users (with phones and lines) generated at start, deterministically from `seed`.
    pub users: usize,
    pub seed: u64,
    /// Cap on list*/executeSQLQuery responses; CUCM's is 8 MB (notes §4).
    pub max_response_bytes: usize,
    /// Cap on the bytes of all responses in flight at once; CUCM's is 16 MB (notes §4).
    /// A response that would go over it is replaced by the memory-throttle fault.
    pub max_concurrent_response_bytes: usize,
    /// In-flight POSTs above this get HTTP 503; `None` = unlimited.
    pub max_concurrent_requests: Option<usize>,
    /// add*/update*/remove* above this rate get HTTP 503; `None` = unlimited.
    pub writes_per_minute: Option<u32>,
    /// JSESSIONIDSSO idle timeout; CUCM's is 30 minutes (notes §2).
    pub session_idle_timeout: Duration,
    /// Changes per listChange answer. CUCM pages the queue but does not document the size
    /// (notes §6); small values let clients test their paging.
    pub list_change_page_size: usize,
    /// Password of every end user (CUC Basic auth, the IdS password grant,
    /// doAuthenticateUser) until addUser/updateUser sets the user's own.
    pub user_password: String,
    /// PIN of every end user for doAuthenticateUser until addUser/updateUser sets one.
    pub user_pin: String,
    /// CUCM's credential policy as doAuthenticateUser applies it (crate docs, "Sign-in").
    pub credential_policy: CredentialPolicy,
    /// Whether AXL accepts `Authorization: Bearer` tokens issued by the lab IdS to the
    /// administrator (off by default: AXL application users keep passwords, notes §5.1).
    pub axl_accepts_bearer: bool,
    /// Unity Connection emulator (`/vmrest`).
    pub cuc: CucLabConfig,
    /// Identity service emulator (`/ids/v1/oauth`).
    pub ids: IdsLabConfig,
    /// SSO Status API (`/unifiedconfig/config/sso`).
    pub sso: SsoLabConfig,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tls: true,
            cucm_version: "14.0.1.14900(11)".to_owned(),
            username: "administrator".to_owned(),
            password: "ucbridge-lab".to_owned(),
            users: 0,
            seed: 0,
            max_response_bytes: 8 * 1024 * 1024,
            max_concurrent_response_bytes: 16 * 1024 * 1024,
            max_concurrent_requests: None,
            writes_per_minute: None,
            session_idle_timeout: Duration::from_secs(30 * 60),
            list_change_page_size: 2000,
            user_password: "ucbridge-user".to_owned(),
            user_pin: "12345".to_owned(),
            credential_policy: CredentialPolicy::default(),
            axl_accepts_bearer: false,
            cuc: CucLabConfig::default(),
            ids: IdsLabConfig::default(),
            sso: SsoLabConfig::default(),
        }
    }
}

/// CUCM's credential policy ("User Management > User Settings > Credential Policy"),
/// applied per credential to doAuthenticateUser. Defaults and their sources: crate docs,
/// "Sign-in".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialPolicy {
    /// "Failed Logon": failures that lock the credential; 0 = "No Limit for Failed Logons".
    pub failed_logon_threshold: u32,
    /// "Reset Failed Logon Attempts Every": the count clears this long after a failure.
    pub reset_failed_logons_after: Duration,
    /// "Lockout Duration"; `None` = "Administrator Must Unlock".
    pub lockout_duration: Option<Duration>,
    /// "Credential Expires After"; `None` = "Never Expires" (the lab default).
    pub expires_after: Option<Duration>,
    /// "Expiry Warning Days": `isWarningNeeded` when fewer days are left.
    pub expiry_warning_days: u32,
}

impl Default for CredentialPolicy {
    fn default() -> Self {
        CredentialPolicy {
            failed_logon_threshold: 3,
            reset_failed_logons_after: Duration::from_secs(30 * 60),
            lockout_duration: Some(Duration::from_secs(30 * 60)),
            expires_after: None,
            expiry_warning_days: 0,
        }
    }
}

/// Which credential of an end user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Password,
    Pin,
}

/// An administrator's controls over end users' credentials (see [`RunningLab::credentials`]).
/// Each returns `false` when the user does not exist.
pub struct Credentials<'a> {
    shared: &'a server::Shared,
}

impl Credentials<'_> {
    fn adjust(
        &self,
        userid: &str,
        kind: CredentialKind,
        change: impl FnOnce(&mut ops::auth::StateView<'_>),
    ) -> Result<bool, LabError> {
        let mut conn = self.shared.lock_db();
        Ok(ops::auth::adjust(&mut conn, userid, kind, change)?)
    }

    /// "Locked By Administrator" on or off.
    pub fn set_locked_by_administrator(
        &self,
        userid: &str,
        kind: CredentialKind,
        locked: bool,
    ) -> Result<bool, LabError> {
        self.adjust(userid, kind, |s| s.set_admin_locked(locked))
    }

    /// "Reset Hack Count": clears failed logons and a failed-logon lockout.
    pub fn reset_hack_count(&self, userid: &str, kind: CredentialKind) -> Result<bool, LabError> {
        self.adjust(userid, kind, |s| s.reset_hack_count())
    }

    /// Make the credential look last changed `ago` before now (expiry tests).
    pub fn set_changed_ago(
        &self,
        userid: &str,
        kind: CredentialKind,
        ago: Duration,
    ) -> Result<bool, LabError> {
        self.adjust(userid, kind, |s| s.set_changed_ago(ago))
    }

    /// Failed logons counted now ("Failed Logon Attempts"); `None` for an unknown user.
    pub fn failed_logons(
        &self,
        userid: &str,
        kind: CredentialKind,
    ) -> Result<Option<u32>, LabError> {
        let conn = self.shared.lock_db();
        Ok(ops::auth::failed_logons(&conn, userid, kind)?)
    }
}

/// Why the lab could not start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("unsupported CUCM version {0:?} (supported: 11.5, 12.0, 12.5, 14.x, 15.x)")]
    UnsupportedCucmVersion(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("lab database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("lab database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("bad lab configuration: {0}")]
    Config(String),
}

/// Counters since start (a snapshot from [`RunningLab::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabStats {
    /// Every POST to the AXL endpoint, whatever its outcome.
    pub requests_total: u64,
    /// POSTs by operation element name (only those that got as far as parsing).
    pub by_operation: BTreeMap<String, u64>,
    /// HTTP 503 answers (concurrency or write rate).
    pub throttled: u64,
    /// HTTP 500 SOAP faults (AXL and Axis2).
    pub faults: u64,
    /// "Maximum AXL Memory Allocation Consumed" faults (16 MB of concurrent responses).
    pub memory_throttled: u64,
    /// Requests whose `Authorization: Basic` header was checked.
    pub basic_auth_checks: u64,
    /// Requests accepted on a JSESSIONIDSSO cookie alone.
    pub cookie_session_hits: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    requests_total: AtomicU64,
    throttled: AtomicU64,
    faults: AtomicU64,
    pub(crate) memory_throttled: AtomicU64,
    basic_auth_checks: AtomicU64,
    cookie_session_hits: AtomicU64,
    by_operation: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl StatCounters {
    fn snapshot(&self) -> LabStats {
        let by_operation = match self.by_operation.lock() {
            Ok(map) => map.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        LabStats {
            requests_total: self.requests_total.load(Ordering::Relaxed),
            by_operation,
            throttled: self.throttled.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
            memory_throttled: self.memory_throttled.load(Ordering::Relaxed),
            basic_auth_checks: self.basic_auth_checks.load(Ordering::Relaxed),
            cookie_session_hits: self.cookie_session_hits.load(Ordering::Relaxed),
        }
    }

    fn count_operation(&self, op: &str) {
        let mut map = match self.by_operation.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        *map.entry(op.to_owned()).or_insert(0) += 1;
    }
}

/// Runtime fault injection, shared with the running server.
#[derive(Debug)]
pub struct FaultSwitches {
    drop_next: AtomicU32,
    delay_ms: AtomicU64,
    fail_next: AtomicU32,
    fail_status: AtomicU16,
    force_drops: AtomicBool,
    hold: tokio::sync::watch::Sender<bool>,
}

impl Default for FaultSwitches {
    fn default() -> Self {
        FaultSwitches {
            drop_next: AtomicU32::new(0),
            delay_ms: AtomicU64::new(0),
            fail_next: AtomicU32::new(0),
            fail_status: AtomicU16::new(0),
            force_drops: AtomicBool::new(false),
            hold: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl FaultSwitches {
    /// While on, successful AXL responses wait before they are sent, keeping their share
    /// of the 16 MB concurrent-response budget: a CUCM busy with large answers, so that a
    /// client's concurrent large requests meet the memory-throttle fault deterministically.
    /// Switching it off releases them.
    pub fn hold_responses(&self, on: bool) {
        self.hold.send_replace(on);
    }

    /// Resolves once responses are not held.
    pub(crate) async fn wait_unheld(&self) {
        let mut rx = self.hold.subscribe();
        // An error means the sender is gone, i.e. the lab is shutting down: stop waiting.
        let _ = rx.wait_for(|held| !*held).await;
    }

    /// For the next `n` POSTs, send part of the real response body, then abort the
    /// connection, so the client sees a broken body rather than a clean short one.
    pub fn drop_next_responses(&self, n: u32) {
        self.drop_next.store(n, Ordering::SeqCst);
    }

    /// Delay every POST response by `d` (`Duration::ZERO` clears it).
    pub fn delay_responses(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Answer the next `n` POSTs with `status` and a short HTML body (a 5xx burst).
    pub fn fail_next_with_status(&self, n: u32, status: u16) {
        self.fail_status.store(status, Ordering::SeqCst);
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Ignore the fallback path's elements (`digestUser` on addPhone/updatePhone, see the
    /// crate docs) on every request, whatever its SOAPAction, until switched off: CUCM
    /// behaving as in seed 001 towards a client that sends correct requests.
    pub fn force_silent_drops(&self, on: bool) {
        self.force_drops.store(on, Ordering::SeqCst);
    }

    pub(crate) fn silent_drops_forced(&self) -> bool {
        self.force_drops.load(Ordering::SeqCst)
    }

    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(crate) fn take_drop(&self) -> bool {
        Self::take(&self.drop_next)
    }

    pub(crate) fn take_fail(&self) -> Option<u16> {
        Self::take(&self.fail_next).then(|| self.fail_status.load(Ordering::SeqCst))
    }

    pub(crate) fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }
}

/// A lab serving AXL until [`RunningLab::shutdown`] (or drop, which stops it abruptly).
pub struct RunningLab {
    local_addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    shared: Arc<server::Shared>,
    ids: Arc<ids::IdsState>,
    cuc: Arc<cuc::CucState>,
    sso: Arc<ids::sso::SsoState>,
    handle: axum_server::Handle,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningLab {
    /// Build the database (seeding `config.users`), bind, and start serving.
    pub async fn start(config: LabConfig) -> Result<RunningLab, LabError> {
        let release = CucmRelease::parse(&config.cucm_version)
            .ok_or_else(|| LabError::UnsupportedCucmVersion(config.cucm_version.clone()))?;
        let (users, seed) = (config.users, config.seed);
        // Seeding 100k users is CPU-bound for a second or two: keep it off the runtime.
        let conn = tokio::task::spawn_blocking(move || db::open(users, seed)).await??;

        let listener =
            std::net::TcpListener::bind(config.bind).map_err(|source| LabError::Bind {
                addr: config.bind,
                source,
            })?;
        let bind_err = |source| LabError::Bind {
            addr: config.bind,
            source,
        };
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;

        let tls_material = if config.tls {
            Some(tls::generate(local_addr.ip())?)
        } else {
            None
        };
        let ca_pem = tls_material.as_ref().map(|m| m.ca_pem.clone());
        let ids_state = Arc::new(ids::IdsState::new(config.ids.clone()));
        let shared = Arc::new(server::Shared::new(
            config.clone(),
            release,
            conn,
            local_addr,
            ids_state.clone(),
        ));
        // One listener serves AXL, CUC, the IdS and unifiedconfig, as paths of one host:
        // simpler for clients and browsers (one CA, one origin to allow).
        let rest_auth = Arc::new(rest::RestAuth::new(shared.clone(), ids_state.clone()));
        let cuc_state = Arc::new(cuc::CucState::new(
            rest_auth.clone(),
            config.cuc.clone(),
            config.seed,
        ));
        let base_url = base_url(config.tls, local_addr);
        let sso_state = Arc::new(ids::sso::SsoState::new(
            rest_auth.clone(),
            config.sso.clone(),
            format!("{base_url}/ids"),
        ));
        let app = server::router(shared.clone())
            .merge(cuc::router(cuc_state.clone()).map_err(LabError::Config)?)
            .merge(ids::router(rest_auth))
            .merge(ids::sso::router(sso_state.clone()));
        let handle = axum_server::Handle::new();

        let task = match tls_material {
            Some(material) => {
                let rustls_config =
                    axum_server::tls_rustls::RustlsConfig::from_config(material.server_config);
                let server =
                    axum_server::from_tcp_rustls(listener, rustls_config).handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app.into_make_service()).await {
                        tracing::error!(error = %e, "AXL lab server stopped");
                    }
                })
            }
            None => {
                let server = axum_server::from_tcp(listener).handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app.into_make_service()).await {
                        tracing::error!(error = %e, "AXL lab server stopped");
                    }
                })
            }
        };
        tracing::info!(%local_addr, tls = config.tls, users, "AXL lab started");
        Ok(RunningLab {
            local_addr,
            tls: config.tls,
            ca_pem,
            shared,
            ids: ids_state,
            cuc: cuc_state,
            sso: sso_state,
            handle,
            task: Some(task),
        })
    }

    /// The AXL endpoint, with the trailing slash CUCM requires (notes §1).
    pub fn axl_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/axl/", self.local_addr)
    }

    /// Base URL of the Unity Connection emulator (`/vmrest/...` below it), e.g.
    /// `https://127.0.0.1:8443`.
    pub fn cuc_url(&self) -> String {
        base_url(self.tls, self.local_addr)
    }

    /// Base URL of the identity service (`/ids/v1/oauth/...` below it).
    pub fn ids_url(&self) -> String {
        format!("{}/ids", base_url(self.tls, self.local_addr))
    }

    /// The IdS OAuth token endpoint.
    pub fn ids_token_url(&self) -> String {
        format!("{}{}", base_url(self.tls, self.local_addr), ids::TOKEN_PATH)
    }

    /// The IdS token introspection endpoint (administrator Basic auth).
    pub fn ids_introspect_url(&self) -> String {
        format!(
            "{}{}",
            base_url(self.tls, self.local_addr),
            ids::INTROSPECT_PATH
        )
    }

    /// Base URL of the unifiedconfig API (`/unifiedconfig/config/sso/status` below it).
    pub fn unifiedconfig_url(&self) -> String {
        base_url(self.tls, self.local_addr)
    }

    /// End users' credentials: lock, reset the hack count, age, read failed logons.
    pub fn credentials(&self) -> Credentials<'_> {
        Credentials {
            shared: &self.shared,
        }
    }

    /// The Unity Connection emulator's controls (deliver voicemail, fault switches).
    pub fn cuc(&self) -> Cuc<'_> {
        Cuc { state: &self.cuc }
    }

    /// The identity service's controls (issue, expire, revoke tokens).
    pub fn ids(&self) -> Ids<'_> {
        Ids { state: &self.ids }
    }

    /// The SSO components behind the SSO Status API.
    pub fn sso(&self) -> Sso<'_> {
        Sso { state: &self.sso }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// PEM of the CA that signed the lab's certificate (trust it in clients), when TLS is on.
    pub fn ca_certificate_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn stats(&self) -> LabStats {
        self.shared.stats.snapshot()
    }

    pub fn faults(&self) -> &FaultSwitches {
        &self.shared.faults
    }

    /// Stop accepting connections and give in-flight requests a moment to finish.
    pub async fn shutdown(mut self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(2)));
        let Some(task) = self.task.take() else {
            return;
        };
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "AXL lab server task ended abnormally");
        }
    }
}

fn base_url(tls: bool, addr: SocketAddr) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        // Without this a dropped lab would keep its port open until the runtime ends.
        self.handle.shutdown();
    }
}
