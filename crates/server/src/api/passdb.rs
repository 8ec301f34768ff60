//! `POST /api/v1/passdb`: the mail server asks whether a user's CUCM password is right.
//!
//! Called by `ucbridge auth checkpassword` (Dovecot's checkpassword passdb, see
//! `contrib/dovecot/`) or any other passdb that can make an HTTP request. Authenticated by
//! a bearer token only the mail server holds (`[signin] passdb_token_file` or
//! `UCBRIDGE_PASSDB_TOKEN`; compared as SHA-256 digests in constant time); without a
//! configured token the route answers 404 as if it did not exist.
//!
//! Body (at most 4 KiB): `{"user": "...", "password": "...", "remote_ip": "203.0.113.7",
//! "service": "imap"}`. Answers: 200 `{"user": "<ucbridge username>"}`; 403 for every
//! refusal (wrong, locked, expired, unknown, disabled: one body); 429 with `Retry-After`
//! when throttled (CUCM was not asked); 503 when CUCM cannot be reached and no cached
//! password may stand in; 400 for an empty, oversized or binary name or password. The
//! password is never echoed, logged or stored.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use ucbridge_auth::SecretBox;
use ucbridge_signin::{Authenticator, SignInAttempt, SignInError};
use ucbridge_store::Store;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{ServerConfig, ServerError};

/// Name, password and two short fields fit easily.
const PASSDB_BODY_LIMIT: usize = 4 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/passdb",
        post(passdb).layer(DefaultBodyLimit::max(PASSDB_BODY_LIMIT)),
    )
}

/// Build the sign-in service and read the passdb token, at server start.
pub(crate) fn sign_in_service(
    store: &Store,
    secrets: &SecretBox,
    config: &ServerConfig,
) -> Result<(Authenticator, Option<[u8; 32]>), ServerError> {
    let settings = config
        .signin
        .to_config()
        .map_err(|e| ServerError::Config(e.to_string()))?;
    let cucm = crate::signin_cucm::StoredCucm::new(store.clone(), secrets.clone(), &config.sources);
    let authenticator = Authenticator::new(settings, cucm, store.clone());
    let token = match std::env::var("UCBRIDGE_PASSDB_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        _ => match &config.signin.passdb_token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        },
    };
    Ok((authenticator, token.map(|t| digest(t.as_bytes()))))
}

fn read_token(path: &std::path::Path) -> Result<String, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ServerError::Config(format!(
            "[signin] passdb_token_file {}: {e}",
            path.display()
        ))
    })?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    if token.len() < 16 {
        return Err(ServerError::Config(format!(
            "[signin] passdb_token_file {}: the token is shorter than 16 characters",
            path.display()
        )));
    }
    Ok(token)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A mail server's question: is this the user's password?
#[derive(Deserialize, utoipa::ToSchema)]
pub struct PassdbRequest {
    /// The login name as the user typed it (userid, mail address, extension, ...).
    user: String,
    password: String,
    /// The mail client's address, for throttling per address.
    #[serde(default)]
    remote_ip: Option<String>,
    /// Dovecot's `%{service}`: `imap`, `pop3`, `submission`, ...
    #[serde(default)]
    service: Option<String>,
}

/// An accepted sign-in: the ucbridge username, which is the mailbox to open.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PassdbAccepted {
    user: String,
}

/// The mail server's password check (see the module doc).
#[utoipa::path(post, path = "/api/v1/passdb", request_body = PassdbRequest,
    responses((status = 200, body = PassdbAccepted), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, description = "refused (one answer for every reason)", body = crate::error::ErrorBody),
        (status = 404, description = "no passdb token configured"), (status = 429, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("passdb_token" = [])))]
pub(super) async fn passdb(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(expected) = state.passdb_token else {
        return ApiError::not_found("no such route").into_response();
    };
    if !bearer_matches(&headers, &expected) {
        let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "bad passdb token")
            .into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let Ok(request) = serde_json::from_slice::<PassdbRequest>(&body) else {
        return ApiError::bad_request("expected {\"user\", \"password\", \"remote_ip\"?}")
            .into_response();
    };
    let attempt = SignInAttempt {
        login: &request.user,
        password: &request.password,
        client: request
            .remote_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok()),
        via: via(request.service.as_deref()),
    };
    match state.signin.authenticate(attempt).await {
        Ok(who) => Json(PassdbAccepted { user: who.username }).into_response(),
        Err(e) => refusal(&e),
    }
}

fn bearer_matches(headers: &HeaderMap, expected: &[u8; 32]) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
    else {
        return false;
    };
    bool::from(digest(given.trim().as_bytes()).ct_eq(expected))
}

/// The mail protocols Dovecot names in `%{service}`; anything else is "mail".
fn via(service: Option<&str>) -> &'static str {
    match service {
        Some("imap") => "imap",
        Some("pop3") => "pop3",
        Some("smtp") | Some("submission") => "smtp",
        Some("sieve") | Some("managesieve") => "sieve",
        _ => "mail",
    }
}

fn refusal(e: &SignInError) -> Response {
    match e {
        SignInError::Rejected { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "refused", "invalid credentials").into_response()
        }
        SignInError::Throttled { retry_after } => {
            let secs = retry_after.as_secs().max(1);
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "too many sign-in attempts",
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        SignInError::Unavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "sign-in is unavailable",
        )
        .into_response(),
        SignInError::Invalid(why) => ApiError::bad_request(*why).into_response(),
        SignInError::Internal(cause) => {
            tracing::warn!(%cause, "passdb: sign-in failed inside ucbridge");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "sign-in failed inside ucbridge",
            )
            .into_response()
        }
    }
}
