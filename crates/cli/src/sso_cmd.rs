//! `ucbridge sso ...`: obtain an SSO token from an identity service, and read the UCCE SSO
//! Status API.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ucbridge_auth::{Secret, TlsOptions, TokenEndpoint};
use ucbridge_cuc::SsoStatusClient;

use crate::config::SsoFileConfig;
use crate::cuc_cmd::{credentials, http};
use crate::output::{self, outln, table};

#[derive(Args, Debug, Clone)]
pub struct SsoConnection {
    #[arg(long, global = true, env = "UCBRIDGE_SSO_USERNAME")]
    username: Option<String>,
    #[arg(
        long,
        global = true,
        env = "UCBRIDGE_SSO_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// Extra CA certificate (PEM) to trust.
    #[arg(long, global = true, env = "UCBRIDGE_SSO_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Do not verify TLS certificates (labs only).
    #[arg(long, global = true)]
    insecure: bool,
}

#[derive(Subcommand)]
pub enum SsoCommand {
    /// Log in at an identity service (OAuth password grant) and print the access token.
    Token {
        /// Token endpoint, e.g. the lab's https://127.0.0.1:8443/ids/v1/oauth/token
        #[arg(long, env = "UCBRIDGE_IDS_TOKEN_URL")]
        ids_url: Option<String>,
        #[arg(long, env = "UCBRIDGE_IDS_CLIENT_ID")]
        client_id: Option<String>,
    },
    /// Show the SSO registration status of components (UCCE SSO Status API).
    Status {
        /// Server, e.g. https://aw.example.com (the lab's base URL works).
        #[arg(long, env = "UCBRIDGE_SSO_URL")]
        url: Option<String>,
        /// One component by machine_id.
        #[arg(long)]
        component: Option<String>,
        /// Authenticate with an SSO token instead of a password.
        #[arg(long, env = "UCBRIDGE_SSO_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

pub async fn run(
    connection: SsoConnection,
    file: Option<&SsoFileConfig>,
    command: SsoCommand,
    json: bool,
) -> Result<()> {
    let empty = SsoFileConfig::default();
    let file = file.unwrap_or(&empty);
    let tls = TlsOptions {
        ca_file: connection.ca_file.or_else(|| file.ca_file.clone()),
        ca_pem: None,
        insecure_skip_tls_verify: connection.insecure || file.insecure_skip_tls_verify,
    };
    let username = connection.username.or_else(|| file.username.clone());
    let password = connection.password.or_else(|| file.password.clone());
    match command {
        SsoCommand::Token { ids_url, client_id } => {
            let Some(url) = ids_url.or_else(|| file.ids_token_url.clone()) else {
                bail!("no IdS token endpoint: pass --ids-url or set UCBRIDGE_IDS_TOKEN_URL");
            };
            let (Some(user), Some(pw)) = (username, password) else {
                bail!("pass --username and set UCBRIDGE_SSO_PASSWORD (or --password)");
            };
            let mut endpoint = TokenEndpoint::new(url, http(&tls)?);
            if let Some(id) = client_id.or_else(|| file.client_id.clone()) {
                endpoint = endpoint.with_client(id, None);
            }
            let tokens = endpoint
                .password_grant(&user, &Secret::new(pw))
                .await
                .context("cannot obtain a token")?;
            if json {
                // Printed on request only: the output is a credential.
                return output::json(&serde_json::json!({
                    "access_token": tokens.access_token.expose(),
                    "refresh_token": tokens.refresh_token.as_ref().map(Secret::expose),
                    "expires_in": tokens.expires_in.map(|d| d.as_secs()),
                    "token_type": tokens.token_type,
                }));
            }
            outln!("{}", tokens.access_token.expose())?;
            if let Some(d) = tokens.expires_in {
                eprintln!("access token for {user}, valid {} s", d.as_secs());
            }
            Ok(())
        }
        SsoCommand::Status {
            url,
            component,
            token,
        } => {
            let Some(url) = url.or_else(|| file.url.clone()) else {
                bail!("no server: pass --url or set UCBRIDGE_SSO_URL");
            };
            let creds = credentials(&tls, token, None, None, username, password)?;
            let client = SsoStatusClient::new(&url, creds, http(&tls)?)?;
            match component {
                Some(id) => {
                    let c = client.component(&id).await.context("SSO Status API")?;
                    if json {
                        return output::json(&c);
                    }
                    let mut t = table(&["id", "name", "registrationState", "modeState"]);
                    t.add_row(vec![
                        c.machine_id().unwrap_or("").to_owned(),
                        c.name.clone(),
                        c.registration_state.clone(),
                        c.mode_state.clone(),
                    ]);
                    output::print_table(&t)?;
                }
                None => {
                    let s = client.status().await.context("SSO Status API")?;
                    if json {
                        return output::json(&s);
                    }
                    outln!("globalSsoState:        {}", s.global_sso_state)?;
                    outln!("registrationState:     {}", s.registration_state)?;
                    outln!("modeState:             {}", s.mode_state)?;
                    outln!("idSConfigurationState: {}", s.ids_configuration_state)?;
                    outln!("hasIdsCredentials:     {}", s.has_ids_credentials)?;
                    outln!(
                        "idsBaseUrl:            {}",
                        s.ids_base_url.as_deref().unwrap_or("")
                    )?;
                    let mut t = table(&["id", "name", "registrationState", "modeState"]);
                    for c in &s.components {
                        t.add_row(vec![
                            c.machine_id().unwrap_or("").to_owned(),
                            c.name.clone(),
                            c.registration_state.clone(),
                            c.mode_state.clone(),
                        ]);
                    }
                    output::print_table(&t)?;
                }
            }
            Ok(())
        }
    }
}
