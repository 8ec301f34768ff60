//! Issue 17 item 3, servers without webhooks: IMAP IDLE against a real Dovecot, with no
//! push token and the poll and reconcile an hour away, so whatever reaches CUC within the
//! test was reported by IDLE; a pool of one IDLE connection for two accounts, the second
//! still synced by the poll; and a prompt stop.

use crate::common;
use crate::dovecot_sync::{cuc_inbox_read, quick_options, Running};

use std::time::{Duration, Instant};

use common::{eventually, world};
use ucbridge_voicemail::{ImapIdle, VoicemailEngine, VoicemailOptions};

/// Generous bound for anything the test waits for (not a timing assertion).
const WITHIN: Duration = Duration::from_secs(30);

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

/// Until `n` accounts are watched by an IDLE.
async fn watching(engine: &VoicemailEngine, n: u64) {
    let watched = eventually(WITHIN, || async {
        (engine.activity().imap_idle.watching == n).then_some(())
    })
    .await;
    assert!(
        watched.is_some(),
        "{n} IDLE connection(s): {:?}",
        engine.activity().imap_idle
    );
}

/// Flip the read state of `alias`'s first inbox voicemail in the user's own session (as a
/// mail client); its CUC id and the new state.
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

/// A read flipped on IMAP reaches CUC; how long it took.
async fn read_reaches_cuc(w: &common::World, alias: &str) -> Duration {
    let started = Instant::now();
    let (id, seen) = flip_on_imap(w, alias).await;
    let reached = eventually(WITHIN, || async {
        (cuc_inbox_read(w, alias, &id) == Some(seen)).then_some(())
    })
    .await;
    assert!(
        reached.is_some(),
        "the read of {alias} reached CUC; Dovecot's log: {}",
        w.dovecot.log()
    );
    started.elapsed()
}

/// IMAP logins of `user` that Dovecot logged.
fn logins_of(w: &common::World, user: &str) -> usize {
    let needle = format!("Login: user=<{user}>");
    w.dovecot
        .log()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

/// Sessions of `user` that ended with LOGOUT, as Dovecot logged them (one dropped in IDLE
/// is logged "Connection closed (IDLE running for ...)" instead).
fn logouts_of(w: &common::World, user: &str) -> usize {
    let needle = format!("imap({user})");
    w.dovecot
        .log()
        .lines()
        .filter(|l| l.contains(&needle) && l.contains("Disconnected: Logged out"))
        .count()
}

fn idle_options() -> VoicemailOptions {
    VoicemailOptions {
        // An hour: no poll round and no reconcile after the one at start, and no push
        // token, so only IDLE can bring an IMAP change to CUC within the test.
        imap_poll_every: Duration::from_secs(3600),
        reconcile_every: Duration::from_secs(3600),
        imap_push_token: None,
        imap_idle: ImapIdle::Auto,
        ..quick_options()
    }
}

/// Stop the loop: it must end within a generous bound, and every session of the users —
/// the IDLE ones included — ends with DONE and LOGOUT, not dropped.
async fn stop_promptly(w: &common::World, engine: &VoicemailEngine, running: Running) {
    let stopped = tokio::time::timeout(Duration::from_secs(15), running.stop()).await;
    assert!(stopped.is_ok(), "run() ended after the stop signal");
    let idle = engine.activity().imap_idle;
    assert_eq!((idle.watching, idle.enabled), (0, false), "{idle:?}");
    let all_logged_out = eventually(Duration::from_secs(5), || async {
        w.aliases
            .iter()
            .all(|u| logouts_of(w, u) == logins_of(w, u))
            .then_some(())
    })
    .await;
    assert!(
        all_logged_out.is_some(),
        "every session logged out; Dovecot's log: {}",
        w.dovecot.log()
    );
}

#[tokio::test]
async fn a_read_on_imap_reaches_cuc_through_idle_without_poll_or_push() {
    let Some(w) = world(2, 3).await else { return };
    let engine = w.engine(idle_options());
    let running = Running::start(&engine, false).await;
    all_synced(&engine, 2).await;
    watching(&engine, 2).await;
    let alias = w.aliases[0].clone();
    // Five reads, each reaching CUC through IDLE -> debounce (300 ms here) -> sync.
    let mut took: Vec<Duration> = Vec::new();
    for _ in 0..5 {
        took.push(read_reaches_cuc(&w, &alias).await);
    }
    took.sort();
    eprintln!(
        "IMAP read -> CUC through IDLE, debounce 300 ms: p50 {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    let activity = engine.activity();
    assert_eq!(activity.imap_polls.started, 0, "no poll ran");
    assert!(activity.imap_idle.notifications >= 5, "{activity:?}");
    assert_eq!(activity.imap_idle.failures, 0, "{activity:?}");
    own_append_echo_is_checked_not_read_in_full(&w, &engine, &alias).await;
    stop_promptly(&w, &engine, running).await;
}

/// IDLE also reports ucbridge's own APPEND of a new voicemail: the sync it schedules
/// finds both sides as recorded and skips the account without a full read of CUC.
async fn own_append_echo_is_checked_not_read_in_full(
    w: &common::World,
    engine: &VoicemailEngine,
    alias: &str,
) {
    let oid = engine
        .status()
        .await
        .expect("status")
        .accounts
        .into_iter()
        .find(|a| a.account.cuc_alias == *alias)
        .expect("account")
        .account
        .cuc_object_id;
    let full_read_at = || async {
        w.store
            .voicemail_cuc_mark(&oid)
            .await
            .expect("store")
            .and_then(|m| m.full_read_at)
    };
    let last_sync_at = || async {
        w.store
            .voicemail_account(&oid)
            .await
            .expect("store")
            .and_then(|a| a.last_sync_at)
    };
    let before = full_read_at().await;
    let notified = engine.activity().imap_idle.notifications;
    let new = ucbridge_lab::NewVoicemail {
        caller_number: "+14085550100".into(),
        caller_name: "Echo Caller".into(),
        duration_ms: 1200,
        ..ucbridge_lab::NewVoicemail::default()
    };
    let id = w
        .lab
        .cuc()
        .deliver_voicemail(alias, new)
        .expect("delivered");
    // What a CUNI callback does: the account's sync at once, a full read that appends.
    assert!(engine.notify_cuc_change(alias), "matched");
    let mut imap = w.imap(alias).await;
    assert!(imap.wait_for("Voicemail", &id, WITHIN).await, "appended");
    imap.logout().await;
    let read_in_full = eventually(WITHIN, || async {
        full_read_at().await.filter(|at| Some(*at) > before)
    })
    .await
    .expect("the event's sync read CUC in full");
    // The APPEND's notification, then a sync that ended after it: the one it scheduled.
    let notified_at = eventually(WITHIN, || async {
        (engine.activity().imap_idle.notifications > notified).then(ucbridge_store::now_millis)
    })
    .await
    .expect("IDLE reported the APPEND");
    assert!(read_in_full < notified_at, "the event's sync came first");
    let echo_synced = eventually(WITHIN, || async {
        (last_sync_at().await > Some(notified_at)).then_some(())
    })
    .await;
    assert!(echo_synced.is_some(), "the sync IDLE asked for ran");
    assert_eq!(
        full_read_at().await,
        Some(read_in_full),
        "the echo was checked (skip-unchanged), not read in full"
    );
}

/// A pool of one for two accounts: the first by alias is watched by IDLE (and not
/// polled: no new login for it while poll rounds run, though its IDLE is renewed every
/// second on the same connection), the other is polled.
#[tokio::test]
async fn a_pool_of_one_idles_one_account_and_polls_the_other() {
    let Some(w) = world(2, 2).await else { return };
    let engine = w.engine(VoicemailOptions {
        imap_poll_every: Duration::from_millis(500),
        imap_idle_connections: 1,
        imap_idle_renew: Duration::from_secs(1),
        ..idle_options()
    });
    let running = Running::start(&engine, false).await;
    all_synced(&engine, 2).await;
    watching(&engine, 1).await;
    let mut aliases = w.aliases.clone();
    aliases.sort();
    let (idled, polled) = (aliases[0].clone(), aliases[1].clone());

    // Several poll rounds: the polled account logs in each time, the watched one never —
    // except for the one-login "unchanged?" check after an IDLE notification (IDLE also
    // reports ucbridge's own late writes of the first sync), so each of its new logins
    // must be explained by a notification.
    // The baseline after a first renewal on the IDLE connection: Dovecot writes its log
    // through its log process, so the watcher's own login line may land a moment late.
    let renewed = eventually(WITHIN, || async {
        (engine.activity().imap_idle.renewed >= 1).then_some(())
    })
    .await;
    assert!(renewed.is_some(), "IDLE renewed once");
    let (idled_before, polled_before) = (logins_of(&w, &idled), logins_of(&w, &polled));
    let notified_before = engine.activity().imap_idle.notifications;
    let rounds = engine.activity().imap_polls.completed;
    let ran = eventually(WITHIN, || async {
        (engine.activity().imap_polls.completed >= rounds + 3).then_some(())
    })
    .await;
    assert!(ran.is_some(), "poll rounds ran");
    let polled_logins = eventually(Duration::from_secs(5), || async {
        (logins_of(&w, &polled) >= polled_before + 2).then_some(())
    })
    .await;
    assert!(polled_logins.is_some(), "the other account is polled");
    let notified = engine.activity().imap_idle.notifications - notified_before;
    let idled_logins = logins_of(&w, &idled) - idled_before;
    assert!(
        idled_logins as u64 <= notified,
        "the watched account is not polled: {idled_logins} new logins, {notified} IDLE notifications, during 3 poll rounds"
    );

    read_reaches_cuc(&w, &polled).await;
    read_reaches_cuc(&w, &idled).await;
    assert!(
        engine.activity().imap_idle.renewed >= 2,
        "IDLE was renewed on its connection"
    );
    let idle = engine.activity().imap_idle;
    assert_eq!(
        (idle.pool_size, idle.watching, idle.failures),
        (1, 1, 0),
        "{idle:?}"
    );
    stop_promptly(&w, &engine, running).await;
}
