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

/// An API token as listed: its name and role, never the token.
#[derive(Serialize, ToSchema)]
pub struct ApiTokenView {
    pub id: i64,
    pub name: String,
    #[schema(value_type = String, example = "read_only")]
    pub role: Role,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl From<ucbridge_store::ApiToken> for ApiTokenView {
    fn from(t: ucbridge_store::ApiToken) -> Self {
        ApiTokenView {
            id: t.id,
            name: t.name,
            role: t.role,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// API tokens (names and roles; the tokens themselves are not kept).
#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = [ApiTokenView])))]
pub(super) async fn list_tokens(
    State(state): State<AppState>,
    Admin(_caller): Admin,
) -> ApiResult<Vec<ApiTokenView>> {
    let tokens = state.store.api_tokens().await?;
    Ok(Json(tokens.into_iter().map(ApiTokenView::from).collect()))
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
