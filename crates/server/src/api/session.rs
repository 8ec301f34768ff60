//! Admin sign-in: the session cookie, whoami, sign-out and password change.

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
    let cookie = format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        auth::SESSION_COOKIE,
        ttl.as_secs(),
        if state.config.secure_cookies || state.config.tls.is_some() {
            "; Secure"
        } else {
            ""
        }
    );
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
    parts: axum::http::request::Parts,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    // Any role may change its own password: authenticate (with the CSRF check) only.
    let caller = auth::authenticate(&parts, &state).await?;
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

/// Who is calling (and the session's CSRF token, for a reloaded page).
#[utoipa::path(get, path = "/api/v1/session", responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)))]
pub(super) async fn whoami(caller: Caller) -> ApiResult<SessionView> {
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
    // A read-only account may log out too: authenticate (with the CSRF check) only.
    auth::authenticate(&parts, &state).await?;
    if let Some(c) = parts
        .headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(';')
                .filter_map(|c| c.trim().split_once('='))
                .find(|(k, _)| *k == auth::SESSION_COOKIE)
        })
    {
        state.store.delete_session(&auth::token_hash(c.1)).await?;
    }
    let clear = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        auth::SESSION_COOKIE
    );
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}
