//! Authentication shared by the lab's REST emulators (CUC `/vmrest`, IdS, unifiedconfig):
//! Basic for the administrator and every end user, or a Bearer token from the lab IdS.
//!
//! Accounts: the administrator (`LabConfig::username`/`password`) and every CUCM end user
//! of the lab database with their CUCM password: their own when addUser/updateUser set
//! one, else `LabConfig::user_password` (CUC users imported from CUCM authenticate against
//! CUCM/LDAP in reality). CUCM's credential policy applies to doAuthenticateUser only.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rusqlite::OptionalExtension;

use crate::ids::state::{IdsState, TokenProblem, REALM};
use crate::server::Shared;
use crate::xmlout::html_status_page;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    Admin,
    User { pkid: String, userid: String },
}

pub(crate) struct RestAuth {
    pub(crate) ids: Arc<IdsState>,
    pub(crate) shared: Arc<Shared>,
    admin_user: String,
    admin_password: String,
    user_password: String,
}

/// A refused request: 401 with a challenge (HTML body, as Tomcat-based Cisco servers
/// answer), or 403.
#[derive(Debug)]
pub(crate) struct Reject {
    status: StatusCode,
    challenge: Option<String>,
}

impl Reject {
    pub(crate) fn unauthorized(challenge: String) -> Reject {
        Reject {
            status: StatusCode::UNAUTHORIZED,
            challenge: Some(challenge),
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let reason = if self.status == StatusCode::UNAUTHORIZED {
            "Unauthorized"
        } else {
            "Forbidden"
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
            html_status_page(self.status.as_u16(), reason),
        )
            .into_response();
        if let Some(value) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl RestAuth {
    pub(crate) fn new(shared: Arc<Shared>, ids: Arc<IdsState>) -> RestAuth {
        let config = shared.config.clone();
        RestAuth {
            ids,
            shared,
            admin_user: config.username,
            admin_password: config.password,
            user_password: config.user_password,
        }
    }

    pub(crate) fn is_admin_name(&self, user: &str) -> bool {
        user == self.admin_user
    }

    /// An end user by userid (CUC alias).
    pub(crate) fn lookup_user(&self, userid: &str) -> Option<Identity> {
        let conn = self.shared.lock_db();
        conn.query_row(
            "SELECT pkid, userid FROM enduser WHERE userid = ?1",
            [userid],
            |r| {
                Ok(Identity::User {
                    pkid: r.get(0)?,
                    userid: r.get(1)?,
                })
            },
        )
        .optional()
        .ok()
        .flatten()
    }

    pub(crate) fn check_password(&self, user: &str, password: &str) -> Option<Identity> {
        if user == self.admin_user {
            return (password == self.admin_password).then_some(Identity::Admin);
        }
        let conn = self.shared.lock_db();
        let matches =
            crate::ops::auth::password_matches(&conn, user, password, &self.user_password);
        drop(conn);
        if !matches.unwrap_or(false) {
            return None;
        }
        self.lookup_user(user)
    }

    fn identity_of_token_user(&self, user: &str) -> Option<Identity> {
        if self.is_admin_name(user) {
            Some(Identity::Admin)
        } else {
            self.lookup_user(user)
        }
    }

    pub(crate) fn basic_challenge() -> String {
        format!("Basic realm=\"{REALM}\"")
    }

    /// Basic or Bearer; any other scheme, or none, is 401 with a Basic challenge.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, Reject> {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(Reject::unauthorized(Self::basic_challenge()));
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let identity = decoded.as_deref().and_then(|d| {
                let (user, password) = d.split_once(':')?;
                self.check_password(user, password)
            });
            return identity.ok_or_else(|| Reject::unauthorized(Self::basic_challenge()));
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let user = self
                .ids
                .validate(rest)
                .map_err(|p| Reject::unauthorized(p.bearer_challenge()))?;
            // A token whose account was deleted since it was issued.
            return self
                .identity_of_token_user(&user)
                .ok_or_else(|| Reject::unauthorized(TokenProblem::Unknown.bearer_challenge()));
        }
        Err(Reject::unauthorized(Self::basic_challenge()))
    }
}
