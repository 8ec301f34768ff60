//! API tokens: list, create, delete.

use super::*;

#[derive(Deserialize, ToSchema)]
pub struct NewToken {
    pub name: String,
    /// `admin` or `read_only`.
    #[schema(value_type = String, example = "read_only")]
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct TokenCreated {
    pub name: String,
    #[schema(value_type = String)]
    pub role: Role,
    /// Shown once; only its hash is kept.
    pub token: String,
}

/// API tokens (names and roles; the tokens themselves are not kept).
#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200)))]
pub(super) async fn list_tokens(
    State(state): State<AppState>,
    Admin(_caller): Admin,
) -> ApiResult<Vec<ucbridge_store::ApiToken>> {
    Ok(Json(state.store.api_tokens().await?))
}

/// Create an API token; the answer is the only time it is shown.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = NewToken, responses((status = 201, body = TokenCreated), (status = 409, body = ErrorBody)))]
pub(super) async fn create_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<Response, ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::bad_request("a token name is 1 to 64 characters"));
    }
    let token = auth::new_api_token();
    state
        .store
        .create_api_token(name, &auth::token_hash(&token), req.role)
        .await?;
    tracing::info!(token = %shown(name), role = req.role.as_str(), by = %shown(&caller.name), "API token created");
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            name: name.to_owned(),
            role: req.role,
            token,
        }),
    )
        .into_response())
}

/// Revoke an API token.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", params(("name" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete_api_token(&name).await? {
        return Err(ApiError::not_found(format!("no API token {name:?}")));
    }
    tracing::info!(token = %shown(&name), by = %shown(&caller.name), "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}
