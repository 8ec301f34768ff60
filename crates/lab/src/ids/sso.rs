//! The UCCE/PCCE Single Sign-On Status API (seed 003; notes §6), driven by the lab's
//! component registrations.
//!
//! - `GET /unifiedconfig/config/sso/status` → `<ssoStatus>` and
//!   `GET /unifiedconfig/config/sso/status/<id>` → `<ssoComponentStatus>`, with exactly the
//!   seed's element names and enum values.
//! - `PUT /unifiedconfig/config/sso/register` registers every component with the IdS
//!   (notes §6): reachable components end `SUCCEEDED`, the others `FAILED`.
//! - `GET|PUT /unifiedconfig/config/sso/globalstate` → `<ssoState>` (fixture
//!   `ucce-sso-globalstate.xml`); a PUT sets the global state and drives each component's
//!   `modeState` (`SUCCEEDED` when registered, else `FAILED`).
//!
//! Overall states are derived from the components: any `FAILED` → `FAILED`; all
//! `SUCCEEDED` → `SUCCEEDED`; all `NOT_STARTED` (or none) → `NOT_STARTED`; otherwise
//! `PROCESSING` — consistent with the seed's example (component FAILED/NOT_STARTED, overall
//! FAILED/NOT_STARTED). Registration is synchronous in the lab, so `PROCESSING` only shows
//! when set through [`Sso::set_component`]. Errors use the config API's `apiErrors` shape
//! (fixture `ucce-apierrors-example.xml`); the `errorType` values are lab choices.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;

use crate::cuc::render::{render, Format, Obj};
use crate::rest::{Identity, RestAuth};

/// `globalSsoState` values (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalSsoState {
    NonSso,
    Sso,
    Hybrid,
}

impl GlobalSsoState {
    pub fn as_str(self) -> &'static str {
        match self {
            GlobalSsoState::NonSso => "NON_SSO",
            GlobalSsoState::Sso => "SSO",
            GlobalSsoState::Hybrid => "HYBRID",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "NON_SSO" => GlobalSsoState::NonSso,
            "SSO" => GlobalSsoState::Sso,
            "HYBRID" => GlobalSsoState::Hybrid,
            _ => return None,
        })
    }
}

/// `registrationState` / `modeState` values (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Succeeded,
    Failed,
    Processing,
    NotStarted,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Succeeded => "SUCCEEDED",
            StepState::Failed => "FAILED",
            StepState::Processing => "PROCESSING",
            StepState::NotStarted => "NOT_STARTED",
        }
    }

    /// The overall state of several components (see the module docs).
    pub fn overall(states: impl IntoIterator<Item = StepState>) -> StepState {
        let states: Vec<StepState> = states.into_iter().collect();
        if states.iter().all(|s| *s == StepState::NotStarted) {
            StepState::NotStarted
        } else if states.contains(&StepState::Failed) {
            StepState::Failed
        } else if states.iter().all(|s| *s == StepState::Succeeded) {
            StepState::Succeeded
        } else {
            StepState::Processing
        }
    }
}

/// `idSConfigurationState` values (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdsConfigurationState {
    NotConfigured,
    InService,
    OutOfService,
    PartialService,
    Unreachable,
}

impl IdsConfigurationState {
    pub fn as_str(self) -> &'static str {
        match self {
            IdsConfigurationState::NotConfigured => "STATE_NOT_CONFIGURED",
            IdsConfigurationState::InService => "STATE_IN_SERVICE",
            IdsConfigurationState::OutOfService => "STATE_OUT_OF_SERVICE",
            IdsConfigurationState::PartialService => "STATE_PARTIAL_SERVICE",
            IdsConfigurationState::Unreachable => "STATE_UNREACHABLE",
        }
    }
}

/// An SSO-capable machine of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoComponent {
    /// The machine_id: `<id>` in `/sso/status/<id>` and in
    /// `refURL` `/unifiedconfig/config/machineinventory/<id>` (seed 003).
    pub machine_id: u32,
    pub name: String,
    /// Whether registering it with the IdS succeeds.
    pub reachable: bool,
    pub registration: StepState,
    pub mode: StepState,
}

impl SsoComponent {
    pub fn new(machine_id: u32, name: impl Into<String>) -> SsoComponent {
        SsoComponent {
            machine_id,
            name: name.into(),
            reachable: true,
            registration: StepState::NotStarted,
            mode: StepState::NotStarted,
        }
    }
}

/// SSO Status API settings.
#[derive(Debug, Clone)]
pub struct SsoLabConfig {
    pub global_state: GlobalSsoState,
    pub ids_state: IdsConfigurationState,
    /// `hasIdsCredentials` (seed 003: "The default is false"; the lab has them).
    pub has_ids_credentials: bool,
    pub components: Vec<SsoComponent>,
}

impl Default for SsoLabConfig {
    fn default() -> Self {
        SsoLabConfig {
            global_state: GlobalSsoState::NonSso,
            ids_state: IdsConfigurationState::InService,
            has_ids_credentials: true,
            components: vec![
                SsoComponent::new(5000, "cucm-pub.ucbridge.lab"),
                SsoComponent::new(5001, "cuc-pub.ucbridge.lab"),
                SsoComponent::new(5002, "finesse-a.ucbridge.lab"),
            ],
        }
    }
}

#[derive(Debug)]
struct SsoData {
    config: SsoLabConfig,
    change_stamp: u64,
}

pub(crate) struct SsoState {
    data: Mutex<SsoData>,
    auth: Arc<RestAuth>,
    ids_base_url: String,
}

impl SsoState {
    pub(crate) fn new(auth: Arc<RestAuth>, config: SsoLabConfig, ids_base_url: String) -> Self {
        SsoState {
            data: Mutex::new(SsoData {
                config,
                change_stamp: 1,
            }),
            auth,
            ids_base_url,
        }
    }

    fn data(&self) -> MutexGuard<'_, SsoData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn register_all(data: &mut SsoData) {
    for c in &mut data.config.components {
        c.registration = if c.reachable {
            StepState::Succeeded
        } else {
            StepState::Failed
        };
    }
}

fn set_global(data: &mut SsoData, state: GlobalSsoState) {
    data.config.global_state = state;
    data.change_stamp += 1;
    for c in &mut data.config.components {
        c.mode = if c.registration == StepState::Succeeded {
            StepState::Succeeded
        } else {
            StepState::Failed
        };
    }
}

/// Control of the lab's SSO components, from [`crate::RunningLab::sso`].
pub struct Sso<'a> {
    pub(crate) state: &'a SsoState,
}

impl Sso<'_> {
    /// Add (or replace) a component.
    pub fn add_component(&self, component: SsoComponent) {
        let mut d = self.state.data();
        d.config
            .components
            .retain(|c| c.machine_id != component.machine_id);
        d.config.components.push(component);
    }

    pub fn remove_component(&self, machine_id: u32) -> bool {
        let mut d = self.state.data();
        let before = d.config.components.len();
        d.config.components.retain(|c| c.machine_id != machine_id);
        before != d.config.components.len()
    }

    /// Set one component's states; false when there is no such component.
    pub fn set_component(&self, machine_id: u32, registration: StepState, mode: StepState) -> bool {
        let mut d = self.state.data();
        match d
            .config
            .components
            .iter_mut()
            .find(|c| c.machine_id == machine_id)
        {
            Some(c) => {
                c.registration = registration;
                c.mode = mode;
                true
            }
            None => false,
        }
    }

    /// What `PUT /sso/register` does.
    pub fn register_all(&self) {
        register_all(&mut self.state.data());
    }

    /// What `PUT /sso/globalstate` does.
    pub fn set_global_state(&self, state: GlobalSsoState) {
        set_global(&mut self.state.data(), state);
    }

    pub fn set_ids_state(&self, state: IdsConfigurationState) {
        self.state.data().config.ids_state = state;
    }

    pub fn set_has_ids_credentials(&self, has: bool) {
        self.state.data().config.has_ids_credentials = has;
    }
}

const BASE: &str = "/unifiedconfig/config/sso";

pub(crate) fn router(state: Arc<SsoState>) -> Router {
    Router::new()
        .route(&format!("{BASE}/status"), get(status))
        .route(&format!("{BASE}/status/{{id}}"), get(component))
        .route(&format!("{BASE}/register"), put(register))
        .route(&format!("{BASE}/globalstate"), get(global).put(put_global))
        .with_state(state)
}

fn xml(status: StatusCode, obj: &Obj) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/xml")],
        render(obj, Format::Xml),
    )
        .into_response()
}

fn api_error(status: StatusCode, data: &str, message: &str, kind: &str) -> Response {
    xml(
        status,
        &Obj::new("apiErrors").child(
            Obj::new("apiError")
                .text("errorData", data)
                .text("errorMessage", message)
                .text("errorType", kind),
        ),
    )
}

/// Administrators only (notes §6: "authenticated HTTPS calls by AD-defined admin users").
#[allow(clippy::result_large_err)] // the error is the finished answer, returned at once
fn admin(st: &SsoState, headers: &HeaderMap) -> Result<(), Response> {
    match st.auth.authenticate(headers) {
        Ok(Identity::Admin) => Ok(()),
        Ok(Identity::User { .. }) => Err(api_error(
            StatusCode::FORBIDDEN,
            "user",
            "The user is not an administrator",
            "authorization.forbidden",
        )),
        Err(reject) => Err(reject.into_response()),
    }
}

fn component_obj(c: &SsoComponent) -> Obj {
    Obj::new("ssoComponentStatus")
        .text("registrationState", c.registration.as_str())
        .text("modeState", c.mode.as_str())
        .text(
            "refURL",
            format!("/unifiedconfig/config/machineinventory/{}", c.machine_id),
        )
        .text("name", &c.name)
}

async fn status(State(st): State<Arc<SsoState>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&st, &headers) {
        return r;
    }
    let d = st.data();
    let comps = &d.config.components;
    let mut list = Obj::new("ssoComponentStatuses");
    for c in comps {
        list.push(component_obj(c));
    }
    xml(
        StatusCode::OK,
        &Obj::new("ssoStatus")
            .text("globalSsoState", d.config.global_state.as_str())
            .text(
                "registrationState",
                StepState::overall(comps.iter().map(|c| c.registration)).as_str(),
            )
            .text(
                "modeState",
                StepState::overall(comps.iter().map(|c| c.mode)).as_str(),
            )
            .text("idSConfigurationState", d.config.ids_state.as_str())
            .text("hasIdsCredentials", d.config.has_ids_credentials)
            .text("idsBaseUrl", &st.ids_base_url)
            .child(list),
    )
}

async fn component(
    State(st): State<Arc<SsoState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin(&st, &headers) {
        return r;
    }
    let Ok(machine_id) = id.parse::<u32>() else {
        return api_error(
            StatusCode::BAD_REQUEST,
            &id,
            "The id must be a machine_id (a number)",
            "invalidInput.invalidValue",
        );
    };
    let d = st.data();
    match d
        .config
        .components
        .iter()
        .find(|c| c.machine_id == machine_id)
    {
        Some(c) => xml(StatusCode::OK, &component_obj(c)),
        None => api_error(
            StatusCode::NOT_FOUND,
            &id,
            "No SSO component with this machine_id",
            "notFound",
        ),
    }
}

async fn register(State(st): State<Arc<SsoState>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&st, &headers) {
        return r;
    }
    register_all(&mut st.data());
    StatusCode::OK.into_response()
}

fn global_obj(d: &SsoData) -> Obj {
    Obj::new("ssoState")
        .text("refURL", "/ssostate")
        .text("changeStamp", d.change_stamp)
        .child(
            Obj::new("permissionInfo")
                .text("canUpdate", true)
                .text("role", "Administrator"),
        )
        .text("state", d.config.global_state.as_str())
}

async fn global(State(st): State<Arc<SsoState>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&st, &headers) {
        return r;
    }
    xml(StatusCode::OK, &global_obj(&st.data()))
}

/// `<ssoState><state>SSO</state><changeStamp>n</changeStamp></ssoState>`: the change stamp
/// must match the current one (config-API rule, notes §6).
async fn put_global(State(st): State<Arc<SsoState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = admin(&st, &headers) {
        return r;
    }
    let text = String::from_utf8_lossy(&body);
    let field = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&close)? + start;
        Some(text[start..end].trim().to_owned())
    };
    let Some(state) = field("state").as_deref().and_then(GlobalSsoState::parse) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "state",
            "state must be NON_SSO, SSO or HYBRID",
            "invalidInput.invalidValue",
        );
    };
    let mut d = st.data();
    let stamp = field("changeStamp").and_then(|s| s.parse::<u64>().ok());
    if stamp != Some(d.change_stamp) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "changeStamp",
            "The changeStamp is missing or stale",
            "invalidInput.staleChangeStamp",
        );
    }
    set_global(&mut d, state);
    xml(StatusCode::OK, &global_obj(&d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepState::*;

    #[test]
    fn overall_state_follows_the_components() {
        assert_eq!(StepState::overall([]), NotStarted);
        assert_eq!(StepState::overall([NotStarted, NotStarted]), NotStarted);
        // Seed 003's example: FAILED components → FAILED overall.
        assert_eq!(StepState::overall([Failed, Failed, Failed]), Failed);
        assert_eq!(StepState::overall([Succeeded, Failed]), Failed);
        assert_eq!(StepState::overall([Succeeded, Succeeded]), Succeeded);
        assert_eq!(StepState::overall([Succeeded, NotStarted]), Processing);
        assert_eq!(StepState::overall([Processing, Succeeded]), Processing);
    }
}
