//! The REST API (`/api/v1/...`), health, metrics and the OpenAPI document.
//!
//! Reads need an admin account's session or an API token; writes need the admin role (and,
//! with a session cookie, the CSRF header). An end user's session (role `user`) is refused
//! everywhere but `/api/v1/me/...` (`me.rs`) and the session routes. Secrets are write-only: the API says whether a password is
//! set, never what it is.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ucbridge_store::{AuditEntry, JobRun, Role, SnapshotState, SyncRun, SOURCE_CUCM};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{self, Admin, Caller, Via};
use crate::connections::{ConnectionError, ConnectionUpdate, ConnectionView, TestReport};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::jobs::{DevicesJobSettings, JobMode, LocalJobState, DEVICES_SETTING, RULES_SETTING};
use crate::log_safe::shown;
use crate::login_limit::MAX_USERNAME_BYTES;
use crate::state::AppState;

mod chat;
mod connections;
mod health;
mod jobs;
mod me;
pub(crate) mod passdb;
mod session;
mod settings;
mod sources;
pub(crate) mod stats;
mod tokens;
mod users;

use self::chat::*;
use self::connections::*;
use self::health::*;
use self::jobs::*;
use self::me::*;
use self::session::*;
use self::settings::*;
use self::sources::*;
use self::stats::*;
use self::tokens::*;
use self::users::*;

#[derive(OpenApi)]
#[openapi(
    info(title = "ucbridge", description = "Integration server for Cisco Unified Communications: directory sync, device provisioning, voicemail sync, LDAP export."),
    paths(
        login, whoami, logout, change_password, status, list_jobs, run_job, update_job, list_job_runs, get_job_run,
        list_sync_runs, get_sync_run, audit_log, get_rules, put_rules, list_users, get_user,
        list_connections, put_connection, delete_connection, test_connection, get_provisioning,
        put_provisioning, sso_status, get_voicemail, put_voicemail, list_tokens, create_token, delete_token, healthz, readyz, prometheus,
        me_login, me_profile, me_voicemail, me_device, me_device_ensure, me_sip_credentials,
        chat_get, chat_presence, chat_add_contact, chat_remove_contact, chat_answer, chat_messages, chat_send, chat_events,
        passdb::passdb, get_stats, list_sources, get_source, refresh_source
    ),
    components(schemas(ErrorBody, ConnectionView, TestReport, StatusView, JobView, LocalJobState, JobMode, LoginRequest, PasswordChange, SessionView, TokenCreated, NewToken, JobUpdate, DevicesJobSettings, EndUserSignIn, MeView, MeVoicemail, MeDevice, SipCredentials,
        crate::chat::ChatView, crate::chat::ChatState, crate::chat::ContactView, crate::chat::PresenceView, crate::chat::MessageView,
        crate::chat::ConversationView, crate::chat::SentView, crate::chat::ChatEvent, PresenceUpdate, ContactAdd, SubscriptionAnswer, MessageSend, StatsView,
        SourceView, SourceProblemView, SourceRefreshRequested)),
    modifiers(&SecurityAddon),
    tags((name = "ucbridge"))
)]
pub struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "passdb_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::SESSION_COOKIE))),
        );
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .merge(passdb::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .route("/openapi.json", get(openapi))
        // Login bodies are small: refuse a multi-megabyte username before parsing it.
        .route(
            "/api/v1/session",
            post(login)
                .get(whoami)
                .delete(logout)
                .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
        )
        .route(
            "/api/v1/session/password",
            put(change_password).layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
        )
        .route("/api/v1/status", get(status))
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{job}", put(update_job))
        .route("/api/v1/jobs/{job}/run", post(run_job))
        .route("/api/v1/job-runs", get(list_job_runs))
        .route("/api/v1/job-runs/{id}", get(get_job_run))
        .route("/api/v1/sync-runs", get(list_sync_runs))
        .route("/api/v1/stats", get(get_stats))
        .route("/api/v1/sync-runs/{id}", get(get_sync_run))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/rules", get(get_rules).put(put_rules))
        .route("/api/v1/users", get(list_users))
        .route("/api/v1/users/{username}", get(get_user))
        .route("/api/v1/connections", get(list_connections))
        .route(
            "/api/v1/connections/{kind}",
            put(put_connection).delete(delete_connection),
        )
        .route("/api/v1/connections/{kind}/test", post(test_connection))
        .route(
            "/api/v1/provisioning",
            get(get_provisioning).put(put_provisioning),
        )
        .route("/api/v1/sso/status", get(sso_status))
        .route("/api/v1/voicemail", get(get_voicemail).put(put_voicemail))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{name}", axum::routing::delete(delete_token))
        .merge(me::routes())
        .merge(chat::routes())
        .merge(sources::routes())
}

type ApiResult<T> = Result<Json<T>, ApiError>;

// --- errors for what no handler takes, and rules for every API answer --------------------

/// Longest request target (path and query) served, in bytes; longer is 414 in the API's
/// error shape. (Beyond 64 KiB hyper itself answers 414, without a body.)
const MAX_URI_BYTES: usize = 8 * 1024;

/// Fallback: 404 in the API's error shape.
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", shown(uri.path())))
}

/// A known path with a method it does not take: 405 in the API's error shape.
pub(crate) async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this endpoint does not take {}", shown(method.as_str())),
    )
}

/// Every answer: 414 for an over-long target; `Cache-Control: no-store` under `/api/`
/// (sessions, CSRF tokens and settings must not sit in a browser or proxy cache).
pub(crate) async fn api_response_rules(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_api = request.uri().path().starts_with("/api/");
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    let mut response = if target > MAX_URI_BYTES {
        ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {target} bytes; at most {MAX_URI_BYTES} are served"),
        )
        .into_response()
    } else {
        next.run(request).await
    };
    if is_api {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::path::Operation;

    use super::*;

    fn operations(doc: &utoipa::openapi::OpenApi) -> Vec<(String, &'static str, &Operation)> {
        let mut all = Vec::new();
        for (path, item) in &doc.paths.paths {
            let methods = [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ];
            for (method, op) in methods {
                if let Some(op) = op {
                    all.push((path.clone(), method, op));
                }
            }
        }
        all
    }

    /// Every success answer with a body documents that body, so a client generated from
    /// the document knows what it gets (a 204 has none).
    #[test]
    fn every_success_answer_documents_its_body() {
        let doc = ApiDoc::openapi();
        let ops = operations(&doc);
        assert!(ops.len() >= 30, "only {} operations documented", ops.len());
        let mut missing = Vec::new();
        for (path, method, op) in ops {
            for (status, response) in &op.responses.responses {
                if !status.starts_with('2') || status == "204" {
                    continue;
                }
                let utoipa::openapi::RefOr::T(response) = response else {
                    continue;
                };
                if response.content.is_empty() {
                    missing.push(format!("{method} {path} {status}"));
                }
            }
        }
        assert!(missing.is_empty(), "no body documented for: {missing:#?}");
    }
}
