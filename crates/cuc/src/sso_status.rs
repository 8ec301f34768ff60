//! Reader for the UCCE/PCCE Single Sign-On Status API (`/unifiedconfig/config/sso/status`,
//! seed 003): which components are registered with the Cisco IdS and in which SSO mode.
//! Values are kept as the strings Cisco defines (`SUCCEEDED`, `STATE_IN_SERVICE`, ...), so
//! a new value from a newer release is shown rather than rejected.

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::Url;
use serde::Serialize;
use ucbridge_auth::Credentials;

use std::time::Duration;

use crate::limits::{self, read_body, BodyKind, SizeLimits};
use crate::node::{self, Node};
use crate::CucError;

/// `<ssoComponentStatus>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SsoComponentStatus {
    pub registration_state: String,
    pub mode_state: String,
    /// `/unifiedconfig/config/machineinventory/<machine_id>`.
    pub ref_url: String,
    pub name: String,
}

impl SsoComponentStatus {
    /// The machine_id at the end of `refURL`.
    pub fn machine_id(&self) -> Option<&str> {
        self.ref_url.rsplit('/').next().filter(|s| !s.is_empty())
    }

    fn read(n: &Node) -> Result<Self, CucError> {
        if n.name != "ssoComponentStatus" {
            return Err(CucError::Protocol(format!(
                "expected <ssoComponentStatus>, got <{}>",
                n.name
            )));
        }
        let field = |name: &str| n.text_of(name).unwrap_or_default().to_owned();
        Ok(SsoComponentStatus {
            registration_state: field("registrationState"),
            mode_state: field("modeState"),
            ref_url: field("refURL"),
            name: field("name"),
        })
    }
}

/// `<ssoStatus>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SsoStatus {
    pub global_sso_state: String,
    pub registration_state: String,
    pub mode_state: String,
    pub ids_configuration_state: String,
    pub has_ids_credentials: bool,
    pub ids_base_url: Option<String>,
    pub components: Vec<SsoComponentStatus>,
}

impl SsoStatus {
    pub(crate) fn read(n: &Node) -> Result<Self, CucError> {
        if n.name != "ssoStatus" {
            return Err(CucError::Protocol(format!(
                "expected <ssoStatus>, got <{}>",
                n.name
            )));
        }
        let field = |name: &str| n.text_of(name).unwrap_or_default().to_owned();
        Ok(SsoStatus {
            global_sso_state: field("globalSsoState"),
            registration_state: field("registrationState"),
            mode_state: field("modeState"),
            ids_configuration_state: field("idSConfigurationState"),
            // "The default is false" (seed 003).
            has_ids_credentials: n.text_of("hasIdsCredentials") == Some("true"),
            ids_base_url: n.text_of("idsBaseUrl").map(str::to_owned),
            components: n
                .child("ssoComponentStatuses")
                .map(|c| {
                    c.children_named("ssoComponentStatus")
                        .map(SsoComponentStatus::read)
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// Reads the SSO Status API of one UCCE/PCCE AW (or the lab).
#[derive(Debug, Clone)]
pub struct SsoStatusClient {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    timeout: Duration,
    sizes: SizeLimits,
}

impl SsoStatusClient {
    /// `base_url` is the server, e.g. `https://aw.example.com`.
    pub fn new(
        base_url: &str,
        credentials: Credentials,
        http: reqwest::Client,
    ) -> Result<Self, CucError> {
        let base = Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| CucError::Config(format!("bad URL {base_url:?}: {e}")))?;
        Ok(SsoStatusClient {
            http,
            base,
            credentials,
            timeout: limits::DEFAULT_TIMEOUT,
            sizes: SizeLimits {
                document: limits::DEFAULT_MAX_DOCUMENT_BYTES,
                audio: 0,
                error: limits::DEFAULT_MAX_ERROR_BYTES,
            },
        })
    }

    /// Total deadline of each call, body included (default 60 s; shorter for a quick
    /// "Test connection").
    pub fn with_timeout(mut self, deadline: Duration) -> Self {
        self.timeout = deadline;
        self
    }

    /// Largest answer read (default 16 MiB for documents, 1 MiB for error bodies).
    pub fn with_max_body_bytes(mut self, document: u64, error: u64) -> Self {
        self.sizes.document = document;
        self.sizes.error = error;
        self
    }

    /// GET and read one document, within the deadline.
    async fn get(&self, path: &str) -> Result<Node, CucError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| CucError::Config(format!("bad path {path}: {e}")))?;
        limits::within(
            self.timeout,
            "timeout",
            || format!("GET {path}"),
            self.fetch(url),
        )
        .await
    }

    async fn fetch(&self, url: Url) -> Result<Node, CucError> {
        let auth = self.credentials.authorization().await?;
        let send = |value: &str| {
            self.http
                .get(url.clone())
                .header(AUTHORIZATION, value.to_owned())
                .header(ACCEPT, "application/xml")
                .send()
        };
        let mut response = send(auth.header_value()).await?;
        if response.status() == 401 {
            if let Some(fresh) = self.credentials.retry_after_unauthorized(&auth).await? {
                response = send(fresh.header_value()).await?;
            }
        }
        let status = response.status().as_u16();
        if status == 401 {
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok());
            return Err(self.credentials.rejection(challenge).into());
        }
        let html = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/html"));
        if html {
            return Err(CucError::HtmlAnswer {
                status,
                title: None,
            });
        }
        let (kind, limit) = if status == 200 {
            (BodyKind::Document, self.sizes.document)
        } else {
            (BodyKind::ErrorBody, self.sizes.error)
        };
        let bytes = read_body(response, kind, limit).await?;
        let node = node::from_xml(&bytes)?;
        if status != 200 {
            // The config API's `apiErrors` (fixture `ucce-apierrors-example.xml`).
            let error = node.child("apiError");
            return Err(CucError::Api {
                status,
                code: error
                    .and_then(|e| e.text_of("errorType"))
                    .unwrap_or("unknown")
                    .to_owned(),
                message: error
                    .and_then(|e| e.text_of("errorMessage"))
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        Ok(node)
    }

    /// `GET /unifiedconfig/config/sso/status`.
    pub async fn status(&self) -> Result<SsoStatus, CucError> {
        SsoStatus::read(&self.get("/unifiedconfig/config/sso/status").await?)
    }

    /// `GET /unifiedconfig/config/sso/status/<machine_id>`.
    pub async fn component(&self, machine_id: &str) -> Result<SsoComponentStatus, CucError> {
        if machine_id.is_empty() || !machine_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CucError::InvalidInput(format!(
                "component id {machine_id:?} is not a machine_id (a number)"
            )));
        }
        SsoComponentStatus::read(
            &self
                .get(&format!("/unifiedconfig/config/sso/status/{machine_id}"))
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_003_examples_parse() {
        let Some(list) = ucbridge_testkit::fixture_bytes("cuc-samples/ucce-sso-status-list.xml")
        else {
            return;
        };
        // Cisco's example holds a placeholder that is not XML (see the fixtures README).
        let list = String::from_utf8(list).unwrap().replace(
            "https://<server>:<serverport>",
            "https://aw.example.com:8553",
        );
        let s = SsoStatus::read(&node::from_xml(list.as_bytes()).unwrap()).unwrap();
        assert_eq!(s.global_sso_state, "HYBRID");
        assert_eq!(s.registration_state, "FAILED");
        assert_eq!(s.mode_state, "NOT_STARTED");
        assert_eq!(s.ids_configuration_state, "STATE_IN_SERVICE");
        assert!(s.has_ids_credentials);
        assert_eq!(s.components.len(), 3);
        assert_eq!(s.components[2].name, "CUIC-A.boston.com");
        assert_eq!(s.components[0].machine_id(), Some("21"));
        let Some(one) =
            ucbridge_testkit::fixture_bytes("cuc-samples/ucce-sso-status-component.xml")
        else {
            return;
        };
        let c = SsoComponentStatus::read(&node::from_xml(&one).unwrap()).unwrap();
        assert_eq!(c.name, "FINESSE-A.boston.com");
        assert_eq!(c.registration_state, "FAILED");
    }
}
