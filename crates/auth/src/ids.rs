//! The OAuth token endpoint of an identity service (Cisco IdS, or the lab's).
//!
//! Cisco does not print the token endpoint's path or parameters for the code grant (notes
//! §5.2/§5.3, uncertain); what is implemented is plain RFC 6749: a form POST with
//! `grant_type=password|refresh_token`, client id/secret as form fields when configured,
//! and a JSON answer `{access_token, token_type, expires_in, refresh_token}` or an error
//! `{error, error_description}`.

use std::time::Duration;

use serde::Deserialize;

use crate::{net, AuthError, Secret};

/// Tokens as an identity service hands them out.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Access token lifetime from the moment it was received.
    pub expires_in: Option<Duration>,
    /// `Bearer` for every Cisco service.
    pub token_type: String,
}

#[derive(Deserialize)]
struct TokenJson {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Longest a token request may take, sending and reading included. A token endpoint
/// answers from memory; 30 s is generous and keeps a stalled IdS from holding a caller
/// (and every request waiting for the token lock) indefinitely.
pub const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token-endpoint answer read. An OAuth token response or error is a few hundred
/// bytes (RFC 6749 §5.1/§5.2; Cisco's tokens are ~50 characters), so 64 KiB is ample.
pub const DEFAULT_TOKEN_MAX_BODY: u64 = 64 << 10;

/// Where to obtain and renew tokens.
#[derive(Clone)]
pub struct TokenEndpoint {
    url: String,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    http: reqwest::Client,
    timeout: Duration,
    max_body: u64,
}

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenEndpoint {
    /// `url` is the token endpoint itself, e.g. `https://ids:8553/ids/v1/oauth/token`.
    pub fn new(url: impl Into<String>, http: reqwest::Client) -> Self {
        TokenEndpoint {
            url: url.into(),
            client_id: None,
            client_secret: None,
            http,
            timeout: DEFAULT_TOKEN_TIMEOUT,
            max_body: DEFAULT_TOKEN_MAX_BODY,
        }
    }

    /// Deadline of one token request, from sending to the last byte of the answer
    /// (default [`DEFAULT_TOKEN_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest answer read (default [`DEFAULT_TOKEN_MAX_BODY`]); more is an error.
    pub fn with_max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    pub fn with_client(mut self, id: impl Into<String>, secret: Option<Secret>) -> Self {
        self.client_id = Some(id.into());
        self.client_secret = secret;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Resource-owner password grant: a direct login, for service accounts and labs.
    pub async fn password_grant(
        &self,
        username: &str,
        password: &Secret,
    ) -> Result<TokenSet, AuthError> {
        self.grant(
            "password",
            vec![
                ("grant_type", "password"),
                ("username", username),
                ("password", password.expose()),
            ],
        )
        .await
    }

    /// Renew the access token with a refresh token.
    pub async fn refresh_grant(&self, refresh_token: &Secret) -> Result<TokenSet, AuthError> {
        self.grant(
            "refresh_token",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose()),
            ],
        )
        .await
    }

    async fn grant(
        &self,
        grant: &'static str,
        mut form: Vec<(&str, &str)>,
    ) -> Result<TokenSet, AuthError> {
        if let Some(id) = &self.client_id {
            form.push(("client_id", id));
        }
        if let Some(secret) = &self.client_secret {
            form.push(("client_secret", secret.expose()));
        }
        let (status, body) = tokio::time::timeout(self.timeout, self.exchange(&form))
            .await
            .map_err(|_| AuthError::IdsTimeout {
                url: self.url.clone(),
                limit: self.timeout,
            })??;
        if status == 200 {
            return parse_token_response(&body).map_err(|detail| AuthError::IdsProtocol {
                url: self.url.clone(),
                detail,
            });
        }
        match parse_oauth_error(&body) {
            Some((error, description)) => Err(AuthError::IdsRefused {
                grant,
                status,
                error,
                description,
            }),
            None => Err(AuthError::IdsProtocol {
                url: self.url.clone(),
                detail: format!("HTTP {status}: {}", snippet(&body)),
            }),
        }
    }

    /// POST the form and read the answer, at most `max_body` bytes of it.
    async fn exchange(&self, form: &[(&str, &str)]) -> Result<(u16, String), AuthError> {
        let transport = |source: reqwest::Error| AuthError::IdsTransport {
            url: self.url.clone(),
            failure: net::classify(&source),
            source,
        };
        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = net::read_capped(response, self.max_body)
            .await
            .map_err(|e| match e {
                net::BodyError::TooLarge { limit } => AuthError::IdsTooLarge {
                    url: self.url.clone(),
                    status,
                    limit,
                },
                net::BodyError::Transport(source) => transport(source),
            })?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

pub(crate) fn parse_token_response(body: &str) -> Result<TokenSet, String> {
    let json: TokenJson = serde_json::from_str(body)
        .map_err(|e| format!("not an OAuth token response ({e}): {}", snippet(body)))?;
    if json.access_token.is_empty() {
        return Err("the token response has an empty access_token".into());
    }
    let token_type = json.token_type.unwrap_or_else(|| "Bearer".into());
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(format!("token_type {token_type:?} is not Bearer"));
    }
    // Some servers send numbers as strings (as CUC does in JSON everywhere).
    let expires_in = match json.expires_in {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    }
    .map(Duration::from_secs);
    Ok(TokenSet {
        access_token: Secret::new(json.access_token),
        refresh_token: json
            .refresh_token
            .filter(|r| !r.is_empty())
            .map(Secret::new),
        expires_in,
        token_type,
    })
}

/// `{error, error_description}`. Cisco's SSO service has been seen answering
/// `{"error":INVALID_REQUEST,...}` with the value unquoted (DevNet support 115011082767,
/// fixture `sso-authorize-implicit.txt`), which is not JSON: that form is read too.
pub(crate) fn parse_oauth_error(body: &str) -> Option<(String, Option<String>)> {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body) {
        let error = map.get("error")?.as_str()?.to_owned();
        let description = map
            .get("error_description")
            .and_then(|d| d.as_str())
            .map(str::to_owned);
        return Some((error, description));
    }
    let trimmed = body.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    let after = trimmed.split_once("\"error\"")?.1.trim_start();
    let value = after.strip_prefix(':')?.trim_start();
    let error: String = value
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if error.is_empty() {
        return None;
    }
    let description = trimmed
        .split_once("\"error_description\"")
        .and_then(|(_, rest)| rest.trim_start().strip_prefix(':'))
        .and_then(|rest| rest.trim_start().strip_prefix('"'))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned);
    Some((error, description))
}

fn snippet(text: &str) -> String {
    let compact: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    compact.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses_parse() {
        let t = parse_token_response(
            r#"{"access_token":"abc","token_type":"bearer","expires_in":"3600","refresh_token":"r"}"#,
        )
        .unwrap();
        assert_eq!(t.access_token.expose(), "abc");
        assert_eq!(t.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(t.refresh_token.as_ref().map(Secret::expose), Some("r"));
        assert!(parse_token_response(r#"{"access_token":"abc","token_type":"mac"}"#).is_err());
        assert!(parse_token_response("<html>login</html>").is_err());
    }

    /// serde_json stops at 128 levels (its default recursion limit; the workspace does
    /// not enable `unbounded_depth`), so a deep answer is an error, not a stack overflow.
    #[test]
    fn deeply_nested_json_is_refused_not_recursed_into() {
        let depth = 100_000;
        // Under an unknown key, which serde skips by walking it (IgnoredAny).
        let mut deep = "{\"x\":".repeat(depth);
        deep.push('1');
        deep.push_str(&"}".repeat(depth));
        // Typed parsing skips unknown values without recursing...
        assert!(parse_token_response(&deep).is_err());
        // ...and a Value (as parse_oauth_error builds) stops at the limit.
        let err = serde_json::from_str::<serde_json::Value>(&deep).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
        assert_eq!(parse_oauth_error(&deep), None);
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse_token_response(&arrays).is_err());
    }

    #[test]
    fn oauth_errors_parse_even_when_cisco_forgets_the_quotes() {
        assert_eq!(
            parse_oauth_error(r#"{"error":"invalid_grant","error_description":"expired"}"#),
            Some(("invalid_grant".into(), Some("expired".into())))
        );
        // Verbatim from DevNet support 115011082767.
        let cisco = r#"{"error":INVALID_REQUEST,"error_description":"The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed."}"#;
        let (error, description) = parse_oauth_error(cisco).unwrap();
        assert_eq!(error, "INVALID_REQUEST");
        assert!(description.unwrap().starts_with("The request is missing"));
        assert_eq!(parse_oauth_error("<html/>"), None);
    }
}
