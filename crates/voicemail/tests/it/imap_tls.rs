//! IMAP over TLS against a real Dovecot serving a certificate from a private CA: implicit
//! TLS (imaps) and STARTTLS both verify the server, and trust only what is configured.

use crate::common;

use common::{cuc_client, world_with, World, WorldOptions};
use ucbridge_auth::TlsOptions;
use ucbridge_lab::CucFolder;
use ucbridge_voicemail::{ImapSecurity, ImapSettings, VoicemailEngine, VoicemailOptions};

fn settings(w: &World, port: u16, security: ImapSecurity, ca_pem: Option<&str>) -> ImapSettings {
    ImapSettings {
        port,
        security,
        tls: TlsOptions {
            ca_pem: ca_pem.map(str::to_owned),
            ..TlsOptions::default()
        },
        ..w.imap_settings()
    }
}

fn engine(w: &World, imap: ImapSettings) -> VoicemailEngine {
    VoicemailEngine::new(
        w.store.clone(),
        cuc_client(&w.lab),
        imap,
        VoicemailOptions::default(),
    )
}

#[tokio::test]
async fn imaps_and_starttls_verify_the_server_against_the_configured_ca() {
    let (ca_pem, certificate) = ucbridge_testkit::tls::localhost_certificate();
    let options = WorldOptions {
        tls: Some(&certificate),
        ..WorldOptions::default()
    };
    let Some(w) = world_with(1, 2, options).await else {
        return;
    };
    let alias = w.aliases[0].clone();
    let imaps = w.dovecot.imaps_port().expect("an imaps port");
    let plain = w.dovecot.port();

    // Verification is on by default: a server certificate from an unknown CA is refused,
    // over implicit TLS and over STARTTLS, and the mailbox is left alone.
    for (port, security) in [(imaps, ImapSecurity::Tls), (plain, ImapSecurity::Starttls)] {
        let err = engine(&w, settings(&w, port, security, None))
            .sync_account(&alias)
            .await
            .expect_err("an untrusted certificate");
        let text = err.to_string();
        assert!(
            text.contains("TLS handshake") && text.contains("certificate"),
            "{security:?}: {text}"
        );
    }
    let mut imap = w.imap(&alias).await;
    assert!(
        !imap.folders().await.contains(&"Voicemail".to_owned()),
        "nothing written after a refused handshake"
    );

    // With the CA configured, imaps works...
    let summary = engine(&w, settings(&w, imaps, ImapSecurity::Tls, Some(&ca_pem)))
        .sync_account(&alias)
        .await
        .expect("sync over imaps");
    assert!(summary.appended > 0, "{summary:?}");
    let inbox = w.lab.cuc().messages(&alias, CucFolder::Inbox).unwrap();
    assert_eq!(imap.messages("Voicemail").await.len(), inbox.len());

    // ...and so does STARTTLS on the plain port (a second pass: nothing left to do).
    let again = engine(
        &w,
        settings(&w, plain, ImapSecurity::Starttls, Some(&ca_pem)),
    )
    .sync_account(&alias)
    .await
    .expect("sync over STARTTLS");
    assert_eq!(again.appended, 0, "{again:?}");
    imap.logout().await;
}
