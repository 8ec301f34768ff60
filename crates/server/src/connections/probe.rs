//! "Test connection": try a connection the way the jobs will use it, one function per
//! kind.

use serde::Serialize;
use ucbridge_auth::SecretBox;
use ucbridge_store::Store;
use utoipa::ToSchema;

use super::{
    axl_client, cuc_client, error_chain, ldap_settings, require, sso_status_client, sso_summary,
    voicemail_engine, ConnectionError, ConnectionKind,
};

/// What "Test connection" found.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestReport {
    pub kind: String,
    pub ok: bool,
    /// One line for the page, e.g. "CUCM 14.0.1, AXL 14.0, 1,000 end users".
    pub summary: String,
    /// Some accounts (the first few), as the seed's test button lists them.
    pub accounts: Vec<String>,
    /// Total accounts, when known.
    pub account_count: Option<u64>,
    /// Messages counted in the listed accounts' mailboxes (CUC, IMAP).
    pub message_count: Option<u64>,
}

const LISTED: usize = 10;

fn remote(what: &str, e: &dyn std::error::Error) -> ConnectionError {
    ConnectionError::Remote(format!("{what}: {}", error_chain(e)))
}

/// Try a connection the way the jobs will use it.
pub async fn test(
    store: &Store,
    secrets: &SecretBox,
    kind: &str,
) -> Result<TestReport, ConnectionError> {
    match kind.parse::<ConnectionKind>()? {
        ConnectionKind::Cucm => test_cucm(store, secrets).await,
        ConnectionKind::Cuc => test_cuc(store, secrets).await,
        ConnectionKind::Ids => test_ids(store, secrets).await,
        ConnectionKind::Ldap => test_ldap(store, secrets).await,
        ConnectionKind::Imap => test_imap(store, secrets).await,
    }
}

/// AXL: count the end users with SQL, list the first page of userids.
async fn test_cucm(store: &Store, secrets: &SecretBox) -> Result<TestReport, ConnectionError> {
    let client = axl_client(store, secrets).await?;
    let count = client
        .execute_sql_query("SELECT COUNT(*) AS n FROM enduser")
        .await
        .ok()
        .and_then(|rows| {
            rows.first()
                .and_then(|r| r.get("n"))
                .and_then(|n| n.parse().ok())
        });
    let page = client
        .list_users_page(
            &ucbridge_axl::UserSearch::default(),
            &[ucbridge_axl::UserTag::Userid],
            0,
            LISTED as u32,
        )
        .await
        .map_err(|e| remote("CUCM", &e))?;
    Ok(TestReport {
        kind: ConnectionKind::Cucm.to_string(),
        ok: true,
        summary: format!(
            "AXL schema {} at {}; {} end users",
            client.schema_version(),
            client.url(),
            count.map_or("an unknown number of".into(), |n: u64| n.to_string())
        ),
        accounts: page.into_iter().filter_map(|u| u.userid).collect(),
        account_count: count,
        message_count: None,
    })
}

/// CUPI/CUMI: the version, the first users, the messages in their three folders.
async fn test_cuc(store: &Store, secrets: &SecretBox) -> Result<TestReport, ConnectionError> {
    let client = cuc_client(store, secrets).await?;
    let version = client.version().await.map_err(|e| remote("CUC", &e))?;
    let page = client
        .users(&ucbridge_cuc::UserQuery {
            rows_per_page: LISTED as u32,
            ..Default::default()
        })
        .await
        .map_err(|e| remote("CUC", &e))?;
    let messages = count_cuc_messages(&client, &page.users).await?;
    Ok(TestReport {
        kind: ConnectionKind::Cuc.to_string(),
        ok: true,
        summary: format!(
            "Unity Connection {}; {} users; {} messages in the {} listed mailboxes",
            version.version,
            page.total,
            messages,
            page.users.len()
        ),
        accounts: page.users.iter().map(|u| u.alias.clone()).collect(),
        account_count: Some(page.total),
        message_count: Some(messages),
    })
}

/// Messages in the inbox, sent and deleted folders of `users` (a page: bounded).
async fn count_cuc_messages(
    client: &ucbridge_cuc::CucClient,
    users: &[ucbridge_cuc::User],
) -> Result<u64, ConnectionError> {
    let mut messages = 0;
    for u in users {
        let mailbox = ucbridge_cuc::MailboxRef::User(u.object_id.clone());
        for folder in [
            ucbridge_cuc::Folder::Inbox,
            ucbridge_cuc::Folder::Sent,
            ucbridge_cuc::Folder::Deleted,
        ] {
            let f = client
                .folder(&mailbox, folder)
                .await
                .map_err(|e| remote(&format!("CUC mailbox of {}", u.alias), &e))?;
            messages += f.message_count;
        }
    }
    Ok(messages)
}

/// The SSO Status API with the identity service's credentials.
async fn test_ids(store: &Store, secrets: &SecretBox) -> Result<TestReport, ConnectionError> {
    let c = require(store, secrets, ConnectionKind::Ids).await?;
    let status = sso_status_client(store, secrets)
        .await?
        .status()
        .await
        .map_err(|e| remote("SSO status", &e))?;
    Ok(TestReport {
        kind: ConnectionKind::Ids.to_string(),
        ok: true,
        summary: format!(
            "IdS at {}; SSO status: {}",
            c.settings.url,
            sso_summary(&status)
        ),
        accounts: Vec::new(),
        account_count: None,
        message_count: None,
    })
}

/// Bind as the export will, and list the entries one level under the export base.
async fn test_ldap(store: &Store, secrets: &SecretBox) -> Result<TestReport, ConnectionError> {
    let settings = ldap_settings(store, secrets).await?;
    let base = settings.base_dn.clone();
    let exporter = ucbridge_ldap::LdapExporter::new(settings, store.clone())
        .map_err(|e| remote("LDAP", &e))?;
    let mut ldap = exporter.connect().await.map_err(|e| remote("LDAP", &e))?;
    let found = ldap
        .search(
            &base,
            ldap3::Scope::OneLevel,
            "(objectClass=*)",
            vec!["1.1"],
        )
        .await
        .and_then(|r| r.success())
        .map_err(|e| remote(&format!("LDAP search under {base}"), &e))?;
    let _ = ldap.unbind().await;
    let dns: Vec<String> = found
        .0
        .into_iter()
        .map(|e| ldap3::SearchEntry::construct(e).dn)
        .collect();
    Ok(TestReport {
        kind: ConnectionKind::Ldap.to_string(),
        ok: true,
        summary: format!("bound; {} entries under {base}", dns.len()),
        account_count: Some(dns.len() as u64),
        accounts: dns.into_iter().take(LISTED).collect(),
        message_count: None,
    })
}

/// IMAP is tested the way voicemail sync uses it: match CUC users to local users, then
/// log in (as the master user) to the first matched mailbox.
async fn test_imap(store: &Store, secrets: &SecretBox) -> Result<TestReport, ConnectionError> {
    let kind = ConnectionKind::Imap.to_string();
    let (engine, _) = voicemail_engine(store, secrets).await?;
    let report = engine
        .match_accounts()
        .await
        .map_err(|e| remote("matching accounts", &e))?;
    let Some(first) = report.matched.first() else {
        return Ok(TestReport {
            kind,
            ok: false,
            summary: format!(
                "no CUC user matches a local user ({} unmatched); run the user sync and check the voicemail matching options",
                report.unmatched.len()
            ),
            accounts: Vec::new(),
            account_count: Some(0),
            message_count: None,
        });
    };
    engine
        .imap_changed(first)
        .await
        .map_err(|e| remote(&format!("IMAP login for {}", first.imap_user), &e))?;
    let messages = store.voicemail_message_total().await?;
    Ok(TestReport {
        kind,
        ok: true,
        summary: format!(
            "logged in to {}'s mailbox; {} accounts matched, {} unmatched",
            first.imap_user,
            report.matched.len(),
            report.unmatched.len()
        ),
        accounts: report
            .matched
            .iter()
            .take(LISTED)
            .map(|a| format!("{} -> {}", a.cuc_alias, a.imap_user))
            .collect(),
        account_count: Some(report.matched.len() as u64),
        message_count: Some(u64::try_from(messages).unwrap_or(0)),
    })
}
