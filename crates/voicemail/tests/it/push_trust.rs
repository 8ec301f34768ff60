//! Issue 17 item 4: with IMAP push configured and healthy, a no-op reconcile trusts it and
//! skips the IMAP login of unchanged accounts — against a real Dovecot running
//! `contrib/dovecot/ucbridge-push.lua`. Logins are counted twice: by the engine
//! (`VoicemailStatus::imap_logins`) and in Dovecot's own log.

use crate::common;
use crate::dovecot_sync::{
    cuc_inbox_read, push_world, quick_options, serve_imap_push, PushWorld, Running, PUSH_TOKEN,
};

use std::time::Duration;

use common::{eventually, world};
use ucbridge_voicemail::{SyncSummary, VoicemailEngine, VoicemailOptions};

/// Successful IMAP logins Dovecot logged (`imap-login: Login: user=<...>`); during a
/// reconcile only ucbridge logs in.
fn logins_logged(w: &common::World) -> usize {
    w.dovecot
        .log()
        .lines()
        .filter(|l| l.contains("Login: user=<"))
        .count()
}

/// Serve `engine`'s IMAP push route on a new listener; its URL.
async fn serve_push(engine: &VoicemailEngine) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/callbacks/imap",
        listener.local_addr().expect("addr")
    );
    serve_imap_push(engine, listener);
    url
}

/// POST a well-formed notification about nobody with `bearer`; the answer's status.
async fn notify(url: &str, bearer: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {bearer}"))
        .body(r#"{"user":"nobody-here","event":"FlagsSet"}"#)
        .send()
        .await
        .expect("answer")
        .status()
        .as_u16()
}

/// One reconcile in which every account succeeded, and the logins it made.
async fn reconcile(
    w: &common::World,
    engine: &VoicemailEngine,
) -> (SyncSummary, u64, Option<usize>) {
    let engine_before = engine.status().await.expect("status").imap_logins;
    let log_before = logins_logged(w);
    let s = engine.sync_all(&|_, _| {}).await.expect("reconcile");
    assert_eq!(s.succeeded, s.accounts, "{:?}", s.failed);
    let delta = engine.status().await.expect("status").imap_logins - engine_before;
    // Dovecot may write its line a moment after the login: `None` when its count does
    // not come to agree with the engine's within a few seconds.
    let want = usize::try_from(delta).unwrap_or(usize::MAX);
    let logged = eventually(Duration::from_secs(3), || async {
        (logins_logged(w).saturating_sub(log_before) == want).then_some(want)
    })
    .await;
    (s, delta, logged)
}

fn push_options() -> VoicemailOptions {
    VoicemailOptions {
        // Nothing in the background but what the test causes: no poll, no periodic
        // reconcile after the one at start.
        imap_poll_every: Duration::from_secs(3600),
        reconcile_every: Duration::from_secs(3600),
        imap_push_token: Some(PUSH_TOKEN.into()),
        ..quick_options()
    }
}

/// Until every account has a successful sync recorded.
async fn all_synced(engine: &VoicemailEngine, accounts: usize) {
    let synced = eventually(Duration::from_secs(60), || async {
        let status = engine.status().await.ok()?;
        (status.accounts.len() == accounts
            && status
                .accounts
                .iter()
                .all(|a| a.account.last_success_at.is_some()))
        .then_some(())
    })
    .await;
    assert!(synced.is_some(), "initial reconcile");
}

/// Flip the read state of `alias`'s first inbox voicemail in the user's own session (a
/// mail client, so Dovecot's plugin reports it); its CUC id and the new state.
async fn flip_on_imap(w: &common::World, alias: &str) -> (String, bool) {
    let mut imap = common::TestImap::login_as_user(w.dovecot.port(), alias).await;
    let first = imap
        .messages("Voicemail")
        .await
        .into_iter()
        .next()
        .expect("a voicemail");
    let id = first.cuc_id.clone().expect("ours");
    assert_eq!(cuc_inbox_read(w, alias, &id), Some(first.seen));
    imap.set_seen("Voicemail", first.uid, !first.seen).await;
    imap.logout().await;
    (id, !first.seen)
}

async fn scheduled(engine: &VoicemailEngine) -> u64 {
    engine.status().await.expect("status").imap_push.scheduled
}

/// (a) trusted push: a no-op reconcile logs in nowhere; (b) a flag change pushed by
/// Dovecot still reaches CUC, by the debounced sync and — with the loop stopped — by the
/// reconcile, which checks that account; a refused notification ends the trust.
#[tokio::test]
async fn a_no_op_reconcile_trusting_push_logs_in_nowhere_yet_pushed_changes_reach_cuc() {
    let Some(PushWorld {
        w,
        listener,
        url,
        _token_dir,
    }) = push_world(3, 3).await
    else {
        return;
    };
    let engine = w.engine(push_options());
    serve_imap_push(&engine, listener);
    let running = Running::start(&engine, false).await;
    all_synced(&engine, 3).await;
    // Settle (a run right after the first may still read: its own CUC writes move USNs).
    reconcile(&w, &engine).await;
    // Nothing heard from Dovecot yet: push is not known to work, IMAP is checked.
    let (s, engine_logins, logged) = reconcile(&w, &engine).await;
    assert_eq!((s.skipped_unchanged, s.skipped_trusting_push), (3, 0));
    assert_eq!(engine_logins, 3, "one IMAP check per account");
    assert_eq!(logged, Some(3), "Dovecot logged the same logins");

    // (b) A read change in a mail client -> Dovecot's plugin -> webhook -> debounced sync -> CUC.
    let alias = w.aliases[0].clone();
    let (id, seen) = flip_on_imap(&w, &alias).await;
    let read = eventually(Duration::from_secs(20), || async {
        (cuc_inbox_read(&w, &alias, &id) == Some(seen)).then_some(())
    })
    .await;
    assert!(
        read.is_some(),
        "pushed read reached CUC; log: {}",
        w.dovecot.log()
    );
    assert!(scheduled(&engine).await >= 1);
    // That sync's own CUC write moved the account's fingerprint: one more read settles it.
    reconcile(&w, &engine).await;

    // (a) Push heard and nothing pushed since each account's last check: no login at all.
    let before = engine.status().await.unwrap().imap_checks_trusted;
    let (s, engine_logins, logged) = reconcile(&w, &engine).await;
    assert_eq!((s.skipped_unchanged, s.skipped_trusting_push), (3, 3));
    assert_eq!(
        engine_logins, 0,
        "no IMAP login in a trusted no-op reconcile"
    );
    assert_eq!(logged, Some(0), "nor in Dovecot's log");
    assert_eq!(
        engine.status().await.unwrap().imap_checks_trusted,
        before + 3
    );

    // (b) With the loop stopped (no debounced sync), a pushed change is still not trusted
    // away: the reconcile checks that account, finds the change and writes it to CUC.
    running.stop().await;
    let pushed_before = scheduled(&engine).await;
    let (id, seen) = flip_on_imap(&w, &alias).await;
    let arrived = eventually(Duration::from_secs(10), || async {
        (scheduled(&engine).await > pushed_before).then_some(())
    })
    .await;
    assert!(arrived.is_some(), "Dovecot pushed the read");
    let (s, engine_logins, _) = reconcile(&w, &engine).await;
    assert_eq!(s.skipped_trusting_push, 2, "the others stay trusted");
    assert_eq!(s.skipped_unchanged, 2, "the pushed account was synced");
    assert!(engine_logins >= 1);
    assert_eq!(cuc_inbox_read(&w, &alias, &id), Some(seen));

    // A refused notification (a wrong token: Dovecot may be losing events) ends the trust.
    assert_eq!(notify(&url, "not-the-token-0123456789").await, 401);
    reconcile(&w, &engine).await;
    let (s, engine_logins, _) = reconcile(&w, &engine).await;
    assert_eq!((s.skipped_unchanged, s.skipped_trusting_push), (3, 0));
    assert_eq!(engine_logins, 3);
}

/// (c) After a restart — of the loop, or of the process (a new engine) — the first
/// reconcile checks IMAP for every account, even once push is heard again.
#[tokio::test]
async fn after_a_restart_the_first_reconcile_checks_imap() {
    let Some(PushWorld {
        w,
        listener,
        url,
        _token_dir,
    }) = push_world(2, 2).await
    else {
        return;
    };
    let engine = w.engine(push_options());
    serve_imap_push(&engine, listener);
    let running = Running::start(&engine, false).await;
    all_synced(&engine, 2).await;
    reconcile(&w, &engine).await;
    // Push heard (an authenticated notification about nobody), checks recorded: trusted.
    assert_eq!(notify(&url, PUSH_TOKEN).await, 204);
    reconcile(&w, &engine).await;
    let (s, engine_logins, _) = reconcile(&w, &engine).await;
    assert_eq!((s.skipped_trusting_push, engine_logins), (2, 0));

    // The loop restarts: its start-up reconcile logs in to every account.
    running.stop().await;
    let before = engine.status().await.unwrap().imap_logins;
    let running = Running::start(&engine, false).await;
    let checked = eventually(Duration::from_secs(30), || async {
        (engine.status().await.ok()?.imap_logins >= before + 2).then_some(())
    })
    .await;
    assert!(
        checked.is_some(),
        "the first reconcile after a restart checks IMAP"
    );
    running.stop().await;

    // A new engine over the same store (a process restart): push heard, yet nothing of
    // this run was checked, so its first reconcile logs in; the next one trusts.
    let fresh = w.engine(push_options());
    assert_eq!(fresh.status().await.unwrap().imap_logins, 0);
    fresh.match_accounts().await.expect("matching");
    assert_eq!(notify(&serve_push(&fresh).await, PUSH_TOKEN).await, 204);
    let (s, engine_logins, logged) = reconcile(&w, &fresh).await;
    assert_eq!((s.skipped_unchanged, s.skipped_trusting_push), (2, 0));
    assert_eq!(engine_logins, 2);
    assert_eq!(logged, Some(2));
    let (s, engine_logins, _) = reconcile(&w, &fresh).await;
    assert_eq!((s.skipped_trusting_push, engine_logins), (2, 0));
}

/// (d) Without push configured (or with `trust_imap_push = false`), every no-op reconcile
/// checks IMAP as before: one login per account.
#[tokio::test]
async fn without_push_every_no_op_reconcile_checks_imap() {
    let Some(w) = world(2, 2).await else { return };
    for options in [
        quick_options(),
        VoicemailOptions {
            imap_push_token: Some(PUSH_TOKEN.into()),
            trust_imap_push: false,
            ..quick_options()
        },
    ] {
        let engine = w.engine(options);
        reconcile(&w, &engine).await;
        // A notification that would make push healthy: 404 without a token, accepted
        // (yet not trusted) with one.
        let answer = notify(&serve_push(&engine).await, PUSH_TOKEN).await;
        let configured = engine.options().imap_push_token.is_some();
        assert_eq!(answer, if configured { 204 } else { 404 });
        reconcile(&w, &engine).await;
        for _ in 0..2 {
            let (s, engine_logins, logged) = reconcile(&w, &engine).await;
            assert_eq!((s.skipped_unchanged, s.skipped_trusting_push), (2, 0));
            assert_eq!(engine_logins, 2);
            assert_eq!(logged, Some(2));
        }
    }
}
