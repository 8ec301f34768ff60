//! Identity service emulator: an OAuth token endpoint for lab accounts, token validation
//! for the AXL, CUC and unifiedconfig emulators, and (in [`sso`]) the UCCE SSO Status API.
//!
//! Cisco publishes neither the IdS token endpoint's path nor its parameters (notes §5.2,
//! §5.3: uncertain). The lab serves plain RFC 6749 at `/ids/v1/oauth/token` (the prefix of
//! the IdS authorize URL `/ids/v1/oauth/authorize`, notes §5.3) with the `password` and
//! `refresh_token` grants, RFC 6749 error bodies, and RFC 7662 introspection at
//! `/ids/v1/oauth/introspect` (administrator Basic auth).
//!
//! Token shapes: access tokens are unpadded base64 of `2:<uuid>`, the shape of the tokens
//! in Cisco's CUMI SSO examples (notes §0.8, decoded there); refresh tokens use `R:<uuid>`
//! (a lab choice: CUCM's refresh tokens are JWS, which the lab does not imitate). Default
//! lifetimes are CUCM's: 60 minutes access, 60 days refresh (notes §5.2).

pub(crate) mod sso;
pub(crate) mod state;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use crate::rest::{Identity, RestAuth};
pub(crate) use state::IdsState;
pub use state::{Ids, IdsLabConfig, TokenPair, TokenProblem};

pub(crate) const TOKEN_PATH: &str = "/ids/v1/oauth/token";
pub(crate) const INTROSPECT_PATH: &str = "/ids/v1/oauth/introspect";

pub(crate) fn router(auth: Arc<RestAuth>) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .route(INTROSPECT_PATH, post(introspect))
        .with_state(auth)
}

/// RFC 6749 §5.2 error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({ "error": error, "error_description": description });
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json;charset=UTF-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn token(
    State(auth): State<Arc<RestAuth>>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be application/x-www-form-urlencoded",
        );
    };
    let ids = &auth.ids;
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let (user, access, refresh) = match field("grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (field("username"), field("password")) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "username and password are required",
                );
            };
            if auth.check_password(user, password).is_none() {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Bad user credentials",
                );
            }
            let pair = ids.issue(user);
            (user.to_owned(), pair.access_token, Some(pair.refresh_token))
        }
        Some("refresh_token") => {
            let Some(refresh_token) = field("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                );
            };
            match ids.refresh(refresh_token) {
                Ok((user, access)) => (user, access, None),
                Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why),
            }
        }
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Supported grants: password, refresh_token",
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            )
        }
    };
    tracing::debug!(%user, "lab IdS issued an access token");
    let mut body = serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ids.config.access_token_lifetime.as_secs(),
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = serde_json::Value::String(refresh);
        body["refresh_token_expires_in"] = ids.config.refresh_token_lifetime.as_secs().into();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json;charset=UTF-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// RFC 7662: `{"active": true, "username": ...}` for a valid access token, else
/// `{"active": false}`. Only the administrator may ask.
async fn introspect(
    State(auth): State<Arc<RestAuth>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    match auth.authenticate(&headers) {
        Ok(Identity::Admin) => {}
        Ok(Identity::User { .. }) => {
            return oauth_error(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "introspection needs the administrator",
            )
        }
        Err(reject) => return reject.into_response(),
    }
    let Some(token) = form.ok().and_then(|Form(f)| f.get("token").cloned()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    let body = match auth.ids.validate(&token) {
        Ok(user) => serde_json::json!({ "active": true, "username": user, "token_type": "Bearer" }),
        Err(_) => serde_json::json!({ "active": false }),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}
