//! The AXL client with SSO Bearer credentials from `ucbridge-auth`, against the lab.
//! (Here rather than in the AXL crate's tests because it needs the lab IdS and the auth
//! crate together; the AXL crate itself only gained the credential plumbing.)

use std::time::Duration;

use ucbridge_auth::{AuthError, Credentials, Secret, TlsOptions, TokenEndpoint, TokenSource};
use ucbridge_axl::{AxlClient, AxlConfig, AxlError, SchemaVersion};
use ucbridge_lab::{LabConfig, RunningLab};

async fn lab(accepts_bearer: bool) -> RunningLab {
    RunningLab::start(LabConfig {
        users: 3,
        axl_accepts_bearer: accepts_bearer,
        ..LabConfig::default()
    })
    .await
    .expect("lab starts")
}

async fn admin_token(lab: &RunningLab) -> TokenSource {
    let tls = TlsOptions {
        ca_pem: lab.ca_certificate_pem().map(str::to_owned),
        ..TlsOptions::default()
    };
    let http =
        ucbridge_auth::http_client(&tls, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
    TokenSource::with_password(
        TokenEndpoint::new(lab.ids_token_url(), http),
        "administrator",
        &Secret::new("ucbridge-lab"),
    )
    .await
    .expect("token")
}

fn config(lab: &RunningLab, credentials: Credentials, version: Option<SchemaVersion>) -> AxlConfig {
    let mut c = AxlConfig::with_credentials(lab.axl_url(), credentials);
    c.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    c.version = version;
    c
}

#[tokio::test]
async fn axl_with_a_bearer_token_refreshes_once_after_401() {
    let lab = lab(true).await;
    let source = admin_token(&lab).await;
    // Discovery (getCCMVersion, no session yet) with the token.
    let client = AxlClient::connect(config(&lab, Credentials::bearer(source.clone()), None))
        .await
        .expect("connect with Bearer");
    assert!(!client.get_ccm_version().await.unwrap().is_empty());
    // Expired at the IdS: a new client (no session cookie) gets 401, refreshes, succeeds.
    lab.ids().expire_access_tokens();
    let fresh = AxlClient::connect(config(
        &lab,
        Credentials::bearer(source.clone()),
        Some(SchemaVersion::V14_0),
    ))
    .await
    .unwrap();
    fresh.get_ccm_version().await.expect("after refresh");
    assert_eq!(source.refreshes(), 1);
    // Discovery path refreshes too.
    lab.ids().expire_access_tokens();
    AxlClient::connect(config(&lab, Credentials::bearer(source.clone()), None))
        .await
        .expect("discovery after refresh");
    assert_eq!(source.refreshes(), 2);
}

#[tokio::test]
async fn refused_bearer_tokens_are_typed() {
    let lab = lab(true).await;
    let forged = Credentials::bearer(TokenSource::fixed(
        "MjpkMTI2NDgyOS1mMDg1LTRhY2UtOGM3Yy1hMmY0ZjQ0ODUxNGQ",
    ));
    let client = AxlClient::connect(config(&lab, forged, Some(SchemaVersion::V14_0)))
        .await
        .unwrap();
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(
        matches!(err, AxlError::Auth(AuthError::TokenRefused { .. })),
        "{err}"
    );
    // An end user's token is valid but has no AXL role: 403.
    let alias = "no-such-user";
    let pair = lab.ids().issue_tokens(alias);
    let client = AxlClient::connect(config(
        &lab,
        Credentials::bearer(TokenSource::fixed(pair.access_token)),
        Some(SchemaVersion::V14_0),
    ))
    .await
    .unwrap();
    assert!(matches!(
        client.get_ccm_version().await.unwrap_err(),
        AxlError::Forbidden { .. }
    ));
    // Basic still works through the same path, and a bad password stays Unauthorized.
    let basic = AxlClient::connect(config(
        &lab,
        Credentials::basic("administrator", "nope"),
        Some(SchemaVersion::V14_0),
    ))
    .await
    .unwrap();
    assert!(matches!(
        basic.get_ccm_version().await.unwrap_err(),
        AxlError::Unauthorized { .. }
    ));
}

#[tokio::test]
async fn a_lab_without_axl_sso_refuses_bearer() {
    let lab = lab(false).await;
    let source = admin_token(&lab).await;
    let client = AxlClient::connect(config(
        &lab,
        Credentials::bearer(source),
        Some(SchemaVersion::V14_0),
    ))
    .await
    .unwrap();
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(
        matches!(err, AxlError::Auth(AuthError::TokenRefused { .. })),
        "{err}"
    );
}
