//! Admin sign-in: the session cookie, whoami, sign-out and password change. Whoami and
//! sign-out serve end-user sessions too (the user page's sign-in is `POST
//! /api/v1/me/session`, in `me.rs`); the password change is for admin accounts only.

use super::*;

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub username: String,
    #[schema(value_type = String, example = "admin")]
    pub role: Role,
    /// Send back as `X-CSRF-Token` on every POST/PUT/DELETE made with the cookie.
    pub csrf_token: Option<String>,
}

/// Log in: sets the session cookie and returns the CSRF token.
#[utoipa::path(post, path = "/api/v1/session", request_body = LoginRequest,
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody),
        (status = 429, description = "Too many login attempts; see Retry-After", body = ErrorBody)))]
pub(super) async fn login(
    State(state): State<AppState>,
    // Absent when the router is served without connect info (tests calling it directly).
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    // Cut first: the throttle, the lookup and the log never see more than this.
    let too_long = req.username.len() > MAX_USERNAME_BYTES;
    let username = crate::login_limit::truncate(&req.username, MAX_USERNAME_BYTES);
    if let Err(response) = throttle(&state, peer.map(|p| p.0 .0.ip()), username) {
        return Ok(response);
    }
    // No account has such a name (they are at most 64 characters): skip the lookup.
    let account = match too_long {
        true => None,
        false => state.store.admin_account(username).await?,
    };
    let hash = account
        .as_ref()
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| auth::dummy_hash().to_owned());
    let ok = auth::verify(req.password, hash).await;
    let Some(account) = account.filter(|_| ok) else {
        metrics::counter!("ucbridge_logins_total", "outcome" => "refused").increment(1);
        tracing::warn!(username = %shown(username), "login refused");
        return Err(ApiError::unauthorized("wrong username or password"));
    };
    metrics::counter!("ucbridge_logins_total", "outcome" => "ok").increment(1);
    let token = auth::random_token();
    let csrf = auth::random_token();
    let ttl = state.config.session_ttl;
    let expires = ucbridge_store::now_millis() + crate::config::millis(ttl);
    state
        .store
        .create_session(&auth::token_hash(&token), account.id, &csrf, expires)
        .await?;
    let _ = state.store.purge_expired_sessions().await;
    let cookie = session_cookie(&state, &token);
    tracing::info!(username = %shown(&account.username), "logged in");
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(SessionView {
            username: account.username,
            role: account.role,
            csrf_token: Some(csrf),
        }),
    )
        .into_response())
}

/// The `Set-Cookie` value of a new session (admin or end user).
pub(super) fn session_cookie(state: &AppState, token: &str) -> String {
    format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        auth::SESSION_COOKIE,
        state.config.session_ttl.as_secs(),
        if state.config.secure_cookies || state.config.tls.is_some() {
            "; Secure"
        } else {
            ""
        }
    )
}

/// Longest login or password-change body accepted (bytes).
pub(super) const LOGIN_BODY_LIMIT: usize = 16 * 1024;

/// Count a login attempt; `Err(429 response)` when it is over the limit.
#[allow(clippy::result_large_err)] // the Err is the ready answer, used once
pub(super) fn throttle(
    state: &AppState,
    address: Option<std::net::IpAddr>,
    username: &str,
) -> Result<(), Response> {
    let Some(limiter) = &state.login_limiter else {
        return Ok(());
    };
    let Err(wait) = limiter.check(address, username) else {
        return Ok(());
    };
    metrics::counter!("ucbridge_logins_total", "outcome" => "throttled").increment(1);
    tracing::warn!(username = %shown(username), "login throttled");
    let secs = wait.as_secs() + 1;
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many login attempts; try again in {secs} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    Err(response)
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Change the logged-in account's own password. This session stays; every other session
/// of the account ends. Throttled like logins (the current password is checked).
#[utoipa::path(put, path = "/api/v1/session/password", request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub(super) async fn change_password(
    State(state): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    // Any role of an admin account may change its own password (an end user changes
    // theirs in CUCM): authenticated (with the CSRF check) before the body is read.
    auth::Staff(caller): auth::Staff,
    parts: axum::http::request::Parts,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    let (Via::Session { .. }, Some(session)) = (&caller.via, auth::session_token(&parts)) else {
        return Err(ApiError::bad_request(
            "API tokens have no password; log in to change yours",
        ));
    };
    if let Err(response) = throttle(&state, peer.map(|p| p.0 .0.ip()), &caller.name) {
        return Ok(response);
    }
    let Some(account) = state.store.admin_account(&caller.name).await? else {
        return Err(ApiError::unauthorized("the account no longer exists"));
    };
    if !auth::verify(req.current_password, account.password_hash).await {
        tracing::warn!(username = %shown(&caller.name), "password change refused: wrong current password");
        return Err(ApiError::forbidden(
            "wrong_password",
            "the current password is wrong",
        ));
    }
    let keep = auth::token_hash(session);
    auth::set_account_keeping(
        &state.store,
        &account.username,
        &req.new_password,
        account.role,
        Some(&keep),
    )
    .await
    .map_err(|e| match e {
        auth::AccountError::Policy(p) => ApiError::bad_request(p.to_string()),
        other => ApiError::internal(other.to_string()),
    })?;
    tracing::info!(username = %shown(&account.username), "password changed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Who is calling (and the session's CSRF token, for a reloaded page). An end user's role
/// is `user`.
#[utoipa::path(get, path = "/api/v1/session", responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)))]
pub(super) async fn whoami(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
) -> ApiResult<SessionView> {
    let caller = auth::authenticate_any(&parts, &state).await?;
    Ok(Json(SessionView {
        username: caller.name,
        role: caller.role,
        csrf_token: match caller.via {
            Via::Session { csrf_token } => Some(csrf_token),
            Via::Token => None,
        },
    }))
}

/// Log out (ends the session).
#[utoipa::path(delete, path = "/api/v1/session", responses((status = 204)))]
pub(super) async fn logout(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    // Any session may log out (read-only, end user): authenticate (with the CSRF check) only.
    let caller = auth::authenticate_any(&parts, &state).await?;
    if let Some(token) = auth::session_token(&parts) {
        let hash = auth::token_hash(token);
        state.store.delete_session(&hash).await?;
        state.store.delete_end_user_session(&hash).await?;
        if let Some(end_user) = &caller.end_user {
            // The user's XMPP session ends with the last sign-in that gave its password.
            state.chat.signed_out(end_user.user_id, &hash).await;
        }
    }
    if caller.end_user.is_some() {
        crate::end_user::audit(
            &state,
            "end_user_signout",
            &caller.name,
            serde_json::json!({}),
        )
        .await;
        tracing::info!(username = %shown(&caller.name), "end user signed out");
    }
    let clear = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        auth::SESSION_COOKIE
    );
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}
