//! CORS for `/vmrest`: CUC keeps a per-origin allow-list (scheme + host + port, notes §4).
//! Preflight and actual requests get `Access-Control-Allow-Origin` only for listed
//! origins, echoed exactly (never `*`). What CUC writes in its preflight answer is not
//! public (notes §4, uncertain); the lab follows the Fetch standard with the methods and
//! headers the notes list.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// `scheme://host[:port]` normalised: lower case, default port dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin(String);

impl Origin {
    pub(crate) fn parse(text: &str) -> Option<Origin> {
        let text = text.trim();
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        // An origin has no path, query or user info; a lone trailing slash is tolerated in
        // configuration.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (inside, after) = bracketed.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
            };
            (format!("[{inside}]"), port)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p.parse::<u16>().ok()?)),
                None => (rest.to_owned(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return None;
        }
        let default = if scheme == "https" { 443 } else { 80 };
        let host = host.to_ascii_lowercase();
        Some(Origin(match port {
            Some(p) if p != default => format!("{scheme}://{host}:{p}"),
            _ => format!("{scheme}://{host}"),
        }))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Cors {
    allowed: Vec<Origin>,
}

impl Cors {
    pub(crate) fn new(origins: &[String]) -> Result<Cors, String> {
        let allowed = origins
            .iter()
            .map(|o| {
                Origin::parse(o)
                    .ok_or_else(|| format!("bad CORS origin {o:?} (want scheme://host[:port])"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Cors { allowed })
    }

    fn allows(&self, origin: &str) -> bool {
        Origin::parse(origin).is_some_and(|o| self.allowed.contains(&o))
    }
}

const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Accept";

pub(crate) async fn layer(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let allowed = origin
        .as_deref()
        .filter(|o| cors.allows(o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        // Answered here, before authentication: browsers never send credentials on a
        // preflight. A non-listed origin gets no CORS headers, so the browser stops.
        let mut response = match &allowed {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => (StatusCode::FORBIDDEN, Body::from("CORS origin not allowed")).into_response(),
        };
        let h = response.headers_mut();
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = allowed {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        return response;
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Content-Type, Content-Length, Content-Disposition"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_scheme_host_and_port_exactly() {
        let cors = Cors::new(&[
            "https://App.example.com".into(),
            "http://127.0.0.1:8080/".into(),
        ])
        .unwrap();
        assert!(cors.allows("https://app.example.com"));
        assert!(cors.allows("https://app.example.com:443"));
        assert!(cors.allows("http://127.0.0.1:8080"));
        assert!(!cors.allows("http://app.example.com"));
        assert!(!cors.allows("https://app.example.com:8443"));
        assert!(!cors.allows("http://127.0.0.1:8081"));
        assert!(!cors.allows("https://evil.example.com"));
        assert!(!cors.allows("null"));
        assert!(!cors.allows("https://app.example.com.evil.net"));
        assert!(Cors::new(&["app.example.com".into()]).is_err());
        assert!(Cors::new(&["https://a/path".into()]).is_err());
        assert!(Cors::new(&["*".into()]).is_err());
        assert!(Cors::default().allowed.is_empty());
    }
}
