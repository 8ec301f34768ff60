//! The continuous mode ([`VoicemailEngine::run`]): one event loop over CUC events, IMAP
//! changes (pushed, reported by IDLE or polled), finished syncs and a 100 ms tick that
//! starts what is due — debounced and retried syncs, the periodic reconcile, the IMAP poll,
//! the CUNI subscription's renewal. [`RunState`] holds what the loop knows; each step is a
//! method. The IDLE connections are [`super::idle`]'s pool, owned by the run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::idle::{IdlePool, CHANGES_QUEUE};
use super::{error_chain, lock, now_ms, Pass, VoicemailEngine};
use crate::config::VoicemailOptions;
use crate::matching::MatchedAccount;

impl VoicemailEngine {
    /// The continuous mode until `shutdown` resolves: a full reconcile at start and every
    /// `reconcile_every`; CUC events (callbacks) synced at once; IMAP changes pushed by
    /// the IMAP server ([`VoicemailEngine::imap_push_router`]), reported by IDLE
    /// connections (`imap_idle`, at most `imap_idle_connections`, started after each
    /// reconcile's matching) or detected by polling HIGHESTMODSEQ every `imap_poll_every`
    /// for accounts no IDLE watches (one round at a time, on permits of its own so syncs
    /// never wait for it) synced after `debounce`; failed
    /// accounts retried with exponential backoff; the CUNI subscription (when
    /// `callback_url` is given) renewed at half its lifetime or when CUC ends it.
    pub async fn run(
        &self,
        callback_url: Option<String>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let (Ok(mut events), Ok(mut pushed)) = (
            self.inner.events_rx.try_lock(),
            self.inner.pushed_rx.try_lock(),
        ) else {
            tracing::error!("VoicemailEngine::run is already running");
            return;
        };
        // Notifications may have been lost while no run was going: check IMAP first.
        self.reset_push_trust();
        tokio::pin!(shutdown);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, bool)>();
        let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<String>();
        let (reconciled_tx, mut reconciled_rx) = mpsc::unbounded_channel::<bool>();
        let (idle_tx, mut idle_rx) = mpsc::channel::<String>(CHANGES_QUEUE);
        let channels = Senders {
            done: done_tx,
            changed: changed_tx,
            reconciled: reconciled_tx,
        };
        let mut state = RunState::new(self, callback_url, channels);
        state.idle = IdlePool::start(self, idle_tx);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(oid) = events.recv() => state.spawn_sync(oid),
                // Changes on IMAP, polled or pushed: synced once `debounce` after the first
                // one, so a burst of actions makes one sync (seed 002).
                Some(oid) = changed_rx.recv() => state.debounce(oid),
                Some(oid) = pushed.recv() => state.debounce(oid),
                // IDLE reports ucbridge's own writes too: checked before the sync.
                Some(oid) = idle_rx.recv() => state.debounce_as(oid, Pass::SkipUnchanged),
                Some((oid, ok)) = done_rx.recv() => state.sync_done(oid, ok),
                Some(ok) = reconciled_rx.recv() => state.reconcile_done(ok),
                _ = tick.tick() => state.tick().await,
            }
        }
        state.stop(&mut done_rx).await;
    }

    /// One poll round in the background: which accounts changed on IMAP (HIGHESTMODSEQ),
    /// at most `semaphore`'s permits at a time, accounts in `skip` left out.
    fn spawn_poll(
        &self,
        semaphore: Arc<Semaphore>,
        changed: mpsc::UnboundedSender<String>,
        skip: HashSet<String>,
    ) -> JoinHandle<()> {
        let engine = self.clone();
        let round = PollRound::start(self.clone());
        tokio::spawn(async move {
            let _round = round;
            let accounts: Vec<MatchedAccount> = lock(&engine.inner.shared)
                .matched
                .values()
                .filter(|a| !skip.contains(&a.cuc_object_id))
                .cloned()
                .collect();
            let mut tasks = futures::stream::FuturesUnordered::new();
            for account in accounts {
                let engine = engine.clone();
                let semaphore = semaphore.clone();
                tasks.push(async move {
                    let _permit = semaphore.acquire_owned().await;
                    (
                        account.cuc_object_id.clone(),
                        engine.imap_changed(&account).await,
                    )
                });
            }
            while let Some((oid, changed_now)) = tasks.next().await {
                match changed_now {
                    Ok(true) => {
                        let _ = changed.send(oid);
                    }
                    Ok(false) => {}
                    Err(e) => tracing::debug!(error = %error_chain(&e), "IMAP change check failed"),
                }
            }
            lock(&engine.inner.shared).polls.completed += 1;
        })
    }
}

/// Where the loop's background work reports back.
struct Senders {
    /// An account sync ended: its object id and whether it succeeded.
    done: mpsc::UnboundedSender<(String, bool)>,
    /// A poll found an account changed on IMAP.
    changed: mpsc::UnboundedSender<String>,
    /// A reconcile ended, successfully or not.
    reconciled: mpsc::UnboundedSender<bool>,
}

/// What one [`VoicemailEngine::run`] knows: syncs queued, running and backing off, and
/// when the periodic work is next due.
struct RunState<'e> {
    engine: &'e VoicemailEngine,
    options: VoicemailOptions,
    callback_url: Option<String>,
    tx: Senders,
    semaphore: Arc<Semaphore>,
    /// Polls get their own permits: waiting for sync permits they queued up behind
    /// syncs, and syncs behind them (issue 17 item 8).
    poll_semaphore: Arc<Semaphore>,
    poll: Option<JoinHandle<()>>,
    /// IDLE connections, when the settings ask for them.
    idle: Option<IdlePool>,
    /// Syncs due after the debounce, and how (a full read unless only IDLE asked).
    debounced: HashMap<String, (Instant, Pass)>,
    retries: HashMap<String, (Instant, u32)>,
    running: HashSet<String>,
    /// Syncs asked for while one of the account ran: again after it.
    rerun: HashMap<String, Pass>,
    next_reconcile: Instant,
    next_poll: Instant,
    next_subscribe: Option<Instant>,
    /// When the current subscription was made (the push watchdog's reference point).
    subscribed_at: Option<i64>,
    /// A re-subscription was asked for (SUB_END, silence): reconcile once it succeeds,
    /// even if that takes several attempts.
    reconcile_after_subscribe: bool,
    reconciling: bool,
    /// Consecutive failures of the reconcile and of the subscription (their back-off).
    reconcile_failures: u32,
    subscribe_failures: u32,
}

impl<'e> RunState<'e> {
    fn new(engine: &'e VoicemailEngine, callback_url: Option<String>, tx: Senders) -> Self {
        let options = engine.inner.options.clone();
        let now = Instant::now();
        RunState {
            engine,
            semaphore: Arc::new(Semaphore::new(options.concurrency.max(1))),
            poll_semaphore: Arc::new(Semaphore::new(options.concurrency.max(1))),
            poll: None,
            idle: None,
            debounced: HashMap::new(),
            retries: HashMap::new(),
            running: HashSet::new(),
            rerun: HashMap::new(),
            next_reconcile: now,
            next_poll: now + options.imap_poll_every,
            next_subscribe: callback_url.as_ref().map(|_| now),
            subscribed_at: None,
            reconcile_after_subscribe: false,
            reconciling: false,
            reconcile_failures: 0,
            subscribe_failures: 0,
            options,
            callback_url,
            tx,
        }
    }

    /// Sync an account now, on a permit; once more after the one in flight, if any.
    fn spawn_sync(&mut self, oid: String) {
        self.spawn_sync_as(oid, Pass::Full);
    }

    /// [`RunState::spawn_sync`] with a full read, or a skip-unchanged check first.
    fn spawn_sync_as(&mut self, oid: String, pass: Pass) {
        if !self.running.insert(oid.clone()) {
            let rerun = self.rerun.entry(oid).or_insert(pass);
            *rerun = stronger(*rerun, pass);
            return;
        }
        let engine = self.engine.clone();
        let semaphore = self.semaphore.clone();
        let done = self.tx.done.clone();
        tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let ok = match engine.account_by_id(&oid).await {
                Some(a) => engine.sync_matched_as(&a, pass).await.is_ok(),
                None => true,
            };
            let _ = done.send((oid, ok));
        });
    }

    /// Sync an account `debounce` after the first change of a burst.
    fn debounce(&mut self, oid: String) {
        self.debounce_as(oid, Pass::Full);
    }

    /// [`RunState::debounce`]; `Pass::SkipUnchanged` when the change may be ucbridge's own
    /// write (IDLE): the sync then starts with a reconcile's unchanged check.
    fn debounce_as(&mut self, oid: String, pass: Pass) {
        let at = Instant::now() + self.options.debounce;
        let due = self.debounced.entry(oid).or_insert((at, pass));
        due.1 = stronger(due.1, pass);
    }

    /// A sync ended: forget or schedule its retry, and run it again when asked meanwhile.
    fn sync_done(&mut self, oid: String, ok: bool) {
        self.running.remove(&oid);
        if ok {
            self.retries.remove(&oid);
        } else {
            let attempts = self.retries.get(&oid).map_or(0, |r| r.1) + 1;
            let at = Instant::now() + backoff(&self.options, attempts);
            self.retries.insert(oid.clone(), (at, attempts));
        }
        if let Some(pass) = self.rerun.remove(&oid) {
            self.spawn_sync_as(oid, pass);
        }
    }

    fn reconcile_done(&mut self, ok: bool) {
        self.reconciling = false;
        // The reconcile matched accounts again: IDLE follows the matched set.
        if let Some(idle) = &mut self.idle {
            idle.rebalance();
        }
        if ok {
            self.reconcile_failures = 0;
        } else {
            // CUC down: back off like an account does, not every 5 s.
            self.reconcile_failures += 1;
            self.next_reconcile = Instant::now() + backoff(&self.options, self.reconcile_failures);
        }
    }

    /// Start whatever is due.
    async fn tick(&mut self) {
        let now = Instant::now();
        self.start_due_syncs(now);
        self.start_reconcile(now);
        self.start_poll(now);
        let mut resubscribe = std::mem::take(&mut lock(&self.engine.inner.shared).resubscribe_now);
        resubscribe |= self.push_fell_silent();
        self.reconcile_after_subscribe |= resubscribe;
        self.renew_subscription(now, resubscribe).await;
    }

    /// Debounced syncs whose time came, and retries due.
    fn start_due_syncs(&mut self, now: Instant) {
        let due: Vec<String> = self
            .debounced
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for oid in due {
            if let Some((_, pass)) = self.debounced.remove(&oid) {
                self.spawn_sync_as(oid, pass);
            }
        }
        let due: Vec<String> = self
            .retries
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for oid in due {
            if let Some(r) = self.retries.get_mut(&oid) {
                // Not due again until this attempt reports back.
                r.0 = now + self.options.retry_max;
            }
            self.spawn_sync(oid);
        }
    }

    /// The periodic reconcile (every account), one at a time.
    fn start_reconcile(&mut self, now: Instant) {
        if self.reconciling || now < self.next_reconcile {
            return;
        }
        self.reconciling = true;
        self.next_reconcile = now + self.options.reconcile_every;
        let engine = self.engine.clone();
        let tx = self.tx.reconciled.clone();
        tokio::spawn(async move {
            let ok = match engine.sync_all(&|_, _| {}).await {
                Ok(s) => {
                    tracing::info!(
                        accounts = s.accounts,
                        failed = s.failed.len(),
                        appended = s.appended,
                        "voicemail reconcile done"
                    );
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "voicemail reconcile failed");
                    false
                }
            };
            let _ = tx.send(ok);
        });
    }

    /// The IMAP poll round when due; never two rounds at once.
    fn start_poll(&mut self, now: Instant) {
        if now < self.next_poll {
            return;
        }
        self.next_poll = now + self.options.imap_poll_every;
        if self.poll.as_ref().is_some_and(|p| !p.is_finished()) {
            lock(&self.engine.inner.shared).polls.skipped_busy += 1;
            return;
        }
        // Accounts about to be synced anyway need no check, one backing off is retried on
        // its schedule, not every poll, and one an IDLE watches reports its changes.
        let mut skip: HashSet<String> = self
            .running
            .iter()
            .chain(self.debounced.keys())
            .chain(self.retries.keys())
            .cloned()
            .collect();
        skip.extend(
            lock(&self.engine.inner.shared)
                .idle_watching
                .iter()
                .cloned(),
        );
        self.poll = Some(self.engine.spawn_poll(
            self.poll_semaphore.clone(),
            self.tx.changed.clone(),
            skip,
        ));
    }

    /// The push watchdog: nothing from CUC's Notifier, not even a keep-alive, for longer
    /// than `push_silence_limit` since the subscription was made.
    fn push_fell_silent(&mut self) -> bool {
        let (Some(limit), Some(since)) = (self.options.push_silence_limit, self.subscribed_at)
        else {
            return false;
        };
        let heard = {
            let shared = lock(&self.engine.inner.shared);
            shared.last_event_at.max(shared.last_keep_alive_at)
        };
        let silent_ms = now_ms() - heard.unwrap_or(since).max(since);
        if silent_ms <= i64::try_from(limit.as_millis()).unwrap_or(i64::MAX) {
            return false;
        }
        tracing::warn!(
            silent_for_s = silent_ms / 1000,
            "nothing from CUC's Notifier, not even a keep-alive; re-subscribing"
        );
        metrics::counter!("ucbridge_voicemail_push_silences_total").increment(1);
        // Not again before the new subscription had its chance.
        self.subscribed_at = None;
        true
    }

    /// (Re)subscribe when due or asked; back off on failure. Events may have been lost
    /// while unsubscribed (notes §3), so a re-subscription is followed by a reconcile.
    async fn renew_subscription(&mut self, now: Instant, resubscribe: bool) {
        let (Some(url), Some(at)) = (&self.callback_url, self.next_subscribe) else {
            return;
        };
        if now < at && !resubscribe {
            return;
        }
        match self.engine.subscribe(url).await {
            Ok(_) => {
                self.subscribe_failures = 0;
                self.subscribed_at = Some(now_ms());
                self.next_subscribe = Some(now + self.options.subscription_lifetime / 2);
                if std::mem::take(&mut self.reconcile_after_subscribe) {
                    self.next_reconcile = now;
                }
            }
            Err(e) => {
                self.subscribe_failures += 1;
                let delay = backoff(&self.options, self.subscribe_failures);
                tracing::warn!(error = %error_chain(&e), retry_in_s = delay.as_secs_f32(), "CUNI subscription failed; retrying");
                self.next_subscribe = Some(now + delay);
            }
        }
    }

    /// Stop: abort the poll (it only reads), end the IDLE connections (at most
    /// [`super::idle::STOP_GRACE`]), and meanwhile let account syncs in flight finish
    /// (their outcome is recorded), for at most 30 s.
    async fn stop(mut self, done_rx: &mut mpsc::UnboundedReceiver<(String, bool)>) {
        if let Some(p) = self.poll.take() {
            p.abort();
        }
        let idle = self.idle.take();
        let idle_stopped = async {
            if let Some(idle) = idle {
                idle.stop().await;
            }
        };
        let running = &mut self.running;
        let syncs_done = async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !running.is_empty() {
                match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                    Ok(Some((oid, _))) => {
                        running.remove(&oid);
                    }
                    _ => break,
                }
            }
        };
        tokio::join!(idle_stopped, syncs_done);
    }
}

/// Counts a poll round in flight for [`PollStats`]; dropped when the round ends or is
/// aborted.
struct PollRound(VoicemailEngine);

impl PollRound {
    fn start(engine: VoicemailEngine) -> PollRound {
        {
            let mut shared = lock(&engine.inner.shared);
            shared.polls.started += 1;
            shared.polls_in_flight += 1;
            shared.polls.max_in_flight = shared.polls.max_in_flight.max(shared.polls_in_flight);
        }
        PollRound(engine)
    }
}

impl Drop for PollRound {
    fn drop(&mut self) {
        let mut shared = lock(&self.0.inner.shared);
        shared.polls_in_flight = shared.polls_in_flight.saturating_sub(1);
    }
}

/// The pass that reads more: a full read wins over a skip-unchanged check.
fn stronger(a: Pass, b: Pass) -> Pass {
    if a == Pass::Full || b == Pass::Full {
        Pass::Full
    } else {
        Pass::SkipUnchanged
    }
}

/// Delay before retry number `attempt` (1 = the first): `retry_initial` doubled per
/// attempt up to `retry_max`, less a random share of up to a quarter so that accounts
/// that failed together (CUC down) do not all come back at the same instant.
pub(super) fn backoff(options: &VoicemailOptions, attempt: u32) -> Duration {
    let jitter = rand::thread_rng().gen::<f64>();
    retry_delay(attempt, options.retry_initial, options.retry_max, jitter)
}

/// The back-off schedule, pure: `jitter` in [0, 1) takes up to 25 % off the step.
fn retry_delay(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    // 2^20 x any sane initial delay is far beyond any cap; this bounds the shift.
    let doublings = attempt.saturating_sub(1).min(20);
    let step = initial.saturating_mul(1u32 << doublings).min(max);
    step.saturating_sub(step.mul_f64(jitter.clamp(0.0, 1.0) * 0.25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_read_wins_over_a_check_when_both_are_asked_for() {
        use Pass::{Full, SkipUnchanged};
        assert_eq!(stronger(SkipUnchanged, SkipUnchanged), SkipUnchanged);
        assert_eq!(stronger(SkipUnchanged, Full), Full);
        assert_eq!(stronger(Full, SkipUnchanged), Full);
        assert_eq!(stronger(Full, Full), Full);
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_the_cap() {
        let (initial, max) = (Duration::from_secs(5), Duration::from_secs(600));
        let plain: Vec<u64> = (1..=10)
            .map(|n| retry_delay(n, initial, max, 0.0).as_secs())
            .collect();
        assert_eq!(plain, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        // Jitter takes at most a quarter off, never adds: the cap holds.
        for n in 1..=40 {
            let step = retry_delay(n, initial, max, 0.0);
            for jitter in [0.0, 0.3, 0.999_999] {
                let d = retry_delay(n, initial, max, jitter);
                assert!(d <= step && d >= step.mul_f64(0.75), "attempt {n}: {d:?}");
            }
        }
        assert_eq!(
            retry_delay(3, initial, max, 0.5),
            Duration::from_millis(17_500)
        );
        // Huge attempt counts neither overflow nor pass the cap.
        assert_eq!(retry_delay(u32::MAX, initial, max, 0.0), max);
        assert_eq!(retry_delay(0, initial, max, 0.0), initial);
    }
}
