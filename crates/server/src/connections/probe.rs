//! "Test connection": try a connection the way the jobs will use it, one function per
//! kind.

use serde::Serialize;
use ucbridge_auth::SecretBox;
use ucbridge_store::Store;
use utoipa::ToSchema;

use super::{
    axl_client, cuc_client, error_chain, ldap_settings, require, sso_status_client, sso_summary,
    voicemail_engine, xmpp_settings, ConnectionError, ConnectionKind,
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
        ConnectionKind::Xmpp => test_xmpp(store, secrets).await,
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

/// IM and Presence: open an XMPP stream to the configured domain, as end users' sessions
/// will (a node serving another domain is named, STARTTLS must be offered unless the
/// connection is plain); with a test account (the connection's username and password),
/// that user logs in too — TLS verification, SASL, roster — and logs out.
async fn test_xmpp(store: &Store, secrets: &SecretBox) -> Result<TestReport, ConnectionError> {
    let kind = ConnectionKind::Xmpp;
    let settings = xmpp_settings(store, secrets)
        .await?
        .ok_or_else(|| ConnectionError::NotConfigured(kind.to_string()))?;
    let im = &settings.im;
    let greeting = xmpp_greeting(im).await?;
    let mut summary = format!(
        "IM and Presence at {}:{} serves {}{}",
        im.host,
        im.port,
        im.domain,
        match (&im.tls, greeting.starttls) {
            (ucbridge_im::ImTls::Plain, _) => "; plain (no TLS), as configured",
            (_, true) => "; STARTTLS offered",
            (_, false) => "",
        }
    );
    let mut accounts = Vec::new();
    if let Some((user, password)) = &settings.test_account {
        let jid = xmpp_log_in(&settings, user, password.expose()).await?;
        summary.push_str(&format!("; {jid} logged in"));
        accounts.push(jid);
    }
    Ok(TestReport {
        kind: kind.to_string(),
        ok: true,
        summary,
        accounts,
        account_count: None,
        message_count: None,
    })
}

/// What an XMPP server answers to a stream header.
struct Greeting {
    starttls: bool,
}

/// Largest stream greeting read (a real one is well under 2 KiB).
const XMPP_GREETING_MAX: usize = 16 * 1024;

/// Open a client stream to `im.domain` (RFC 6120 §4.2) and read the server's stream
/// header and features: its `from` must be the domain (§4.7.1), and a
/// `<host-unknown/>` stream error means it serves another.
async fn xmpp_greeting(im: &ucbridge_im::ImSettings) -> Result<Greeting, ConnectionError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let remote = |what: String| ConnectionError::Remote(format!("IM and Presence: {what}"));
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect((im.host.as_str(), im.port))
            .await
            .map_err(|e| remote(format!("cannot connect to {}:{}: {e}", im.host, im.port)))?;
        let header = format!(
            "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            quick_xml::escape::escape(im.domain.as_str())
        );
        tcp.write_all(header.as_bytes())
            .await
            .map_err(|e| remote(format!("cannot send the stream header: {e}")))?;
        let mut text = Vec::new();
        let mut chunk = [0u8; 2048];
        while text.len() < XMPP_GREETING_MAX {
            let n = tcp
                .read(&mut chunk)
                .await
                .map_err(|e| remote(format!("reading the stream header: {e}")))?;
            if n == 0 {
                break;
            }
            text.extend_from_slice(&chunk[..n]);
            let so_far = String::from_utf8_lossy(&text);
            if so_far.contains("</stream:features>") || so_far.contains("</stream:error>") {
                break;
            }
        }
        let _ = tcp.write_all(b"</stream:stream>").await;
        Ok::<_, ConnectionError>(String::from_utf8_lossy(&text).into_owned())
    };
    let text = tokio::time::timeout(im.connect_timeout, exchange)
        .await
        .map_err(|_| {
            remote(format!(
                "no stream header from {}:{} in time",
                im.host, im.port
            ))
        })??;
    read_greeting(&text, &im.domain).map_err(remote)
}

/// The stream header's `from`, a stream error's condition, and whether STARTTLS is
/// offered, from the start of a server's stream.
fn read_greeting(text: &str, domain: &str) -> Result<Greeting, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let (mut from, mut starttls, mut in_error, mut error) = (None, false, false, None);
    // Bounded by the text read (at most XMPP_GREETING_MAX bytes).
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                let name = e.local_name().as_ref().to_vec();
                match name.as_slice() {
                    b"stream" if from.is_none() => {
                        from = e
                            .try_get_attribute("from")
                            .ok()
                            .flatten()
                            .and_then(|a| a.unescape_value().ok())
                            .map(|v| v.into_owned());
                    }
                    b"starttls" => starttls = true,
                    b"error" => in_error = true,
                    other if in_error && error.is_none() && other != b"text" => {
                        error = Some(String::from_utf8_lossy(other).into_owned());
                    }
                    _ => {}
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    match (error.as_deref(), from.as_deref()) {
        (Some("host-unknown"), _) => Err(format!(
            "the server does not serve the domain {domain} (stream error host-unknown): check the XMPP domain"
        )),
        (Some(condition), _) => Err(format!("the server closed the stream: {condition}")),
        (None, None) => Err("no XMPP stream header in the answer: is this an XMPP port?".into()),
        (None, Some(from)) if !from.eq_ignore_ascii_case(domain) => Err(format!(
            "the server serves the domain {from}, not {domain}: check the XMPP domain"
        )),
        (None, Some(_)) => Ok(Greeting { starttls }),
    }
}

/// Log the test account in and out; its bare JID.
async fn xmpp_log_in(
    settings: &super::XmppSettings,
    user: &str,
    password: &str,
) -> Result<String, ConnectionError> {
    use std::io::Write;
    let mut im = settings.im.clone();
    // The client reads its extra CA from a file: a private one for this test.
    let ca = match &settings.ca_pem {
        Some(pem) => {
            let mut f = tempfile::NamedTempFile::new()
                .map_err(|e| ConnectionError::Remote(format!("cannot write the CA file: {e}")))?;
            f.write_all(pem.as_bytes())
                .map_err(|e| ConnectionError::Remote(format!("cannot write the CA file: {e}")))?;
            im.ca_file = Some(f.path().to_owned());
            Some(f)
        }
        None => None,
    };
    let (session, _events) = ucbridge_im::ImSession::open(&im, user, password, "ucbridge-test")
        .await
        .map_err(|e| remote(&format!("IM and Presence log-in of {user}"), &e))?;
    let jid = session.bare_jid();
    session.close().await;
    drop(ca);
    Ok(jid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greeting_names_the_domain_problem() {
        let ok = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' from='cup.example.com' id='x' version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>";
        assert!(read_greeting(ok, "cup.example.com").unwrap().starttls);
        let other = read_greeting(ok, "example.org").err().unwrap();
        assert!(
            other.contains("cup.example.com") && other.contains("example.org"),
            "{other}"
        );
        let unknown = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' from='x.invalid' version='1.0'><stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
        let err = read_greeting(unknown, "x.invalid").err().unwrap();
        assert!(err.contains("host-unknown"), "{err}");
        let err = read_greeting("HTTP/1.1 400 Bad Request\r\n\r\n", "x")
            .err()
            .unwrap();
        assert!(err.contains("XMPP"), "{err}");
    }
}
