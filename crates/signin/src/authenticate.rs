//! The steps of one attempt: shape, throttle, resolve, cache, CUCM, outage.

use std::sync::atomic::Ordering;

use serde_json::json;
use ucbridge_store::{SignInUser, Store};

use crate::cache::{self, Entry};
use crate::{
    check_login, check_password, credential, is_outage, shown, Authenticator, RefusalReason,
    SignInAttempt, SignInError, SignedIn,
};

/// What the cache says about this password.
enum Cached {
    /// No entry, or it did not match.
    Miss,
    /// Matches and is younger than `cache_ttl`.
    Fresh,
    /// Matches, older than `cache_ttl`, within the outage grace.
    WithinGrace,
}

impl Authenticator {
    pub(crate) async fn attempt(&self, a: &SignInAttempt<'_>) -> Result<SignedIn, SignInError> {
        check_login(a.login)?;
        if let Err(retry_after) = self.inner.throttle.check(a.client, a.login) {
            tracing::info!(login = %shown(a.login), via = a.via, client = ?a.client,
                "sign-in throttled");
            return Err(SignInError::Throttled { retry_after });
        }
        check_password(a.password, self.inner.config.max_password_bytes)?;
        let user = match self.resolve(a.login).await? {
            Ok(user) => user,
            Err(reason) => return Err(self.refuse_unresolved(a, reason).await),
        };
        // Per cluster: one userid on two clusters is two people with two passwords.
        let key = cache_key(&user);
        let _turn = self.stripe(&key).lock().await;
        let cached = self.check_cache(&key, a.password).await;
        if let Cached::Fresh = cached {
            return Ok(signed_in(&user, true));
        }
        let client = match self.inner.cucm.cluster_client(&user.cluster).await {
            Ok(client) => client,
            Err(e) => return self.outage(a, &user, cached, &e.0).await,
        };
        let secret = credential(a.password);
        let asked = client.authenticate_user(&user.cucm_userid, &secret);
        let Ok(answer) = tokio::time::timeout(self.inner.config.cucm_timeout, asked).await else {
            return self
                .outage(a, &user, cached, "no answer within cucm_timeout")
                .await;
        };
        match answer {
            Ok(answer) if answer.authenticated => {
                self.inner.outage.store(false, Ordering::Relaxed);
                self.remember(&key, a.password).await;
                let detail = json!({"verified_by": "cucm", "cluster": user.cluster});
                self.audit(&user.username, "sign_in", a, detail).await;
                Ok(signed_in(&user, false))
            }
            Ok(answer) => {
                self.inner.outage.store(false, Ordering::Relaxed);
                self.inner.cache.remove(&key);
                let reason = RefusalReason::RefusedByCucm { code: answer.code };
                self.audit_refusal(&user.username, a, &reason).await;
                Err(SignInError::Rejected { reason })
            }
            Err(e) if is_outage(&e) => self.outage(a, &user, cached, &e.to_string()).await,
            Err(_) => Err(SignInError::Invalid(
                "the password holds a character CUCM cannot take",
            )),
        }
    }

    /// The synced user `login` names: the first ID source with exactly one match.
    async fn resolve(&self, login: &str) -> Result<Result<SignInUser, RefusalReason>, SignInError> {
        for key in &self.inner.config.id_sources {
            let found = self
                .inner
                .store
                .sign_in_candidates(*key, login.trim(), 2)
                .await
                .map_err(|e| SignInError::Internal(e.to_string()))?;
            match found.as_slice() {
                [] => continue,
                [one] if one.disabled => return Ok(Err(RefusalReason::Disabled)),
                [one] => return Ok(Ok(one.clone())),
                _ => return Ok(Err(RefusalReason::Ambiguous)),
            }
        }
        Ok(Err(RefusalReason::UnknownUser))
    }

    /// Unknown, ambiguous or disabled: the same hash work as a cached user, then the same
    /// answer (or `Unavailable` while CUCM is down, as a known user would get).
    async fn refuse_unresolved(&self, a: &SignInAttempt<'_>, reason: RefusalReason) -> SignInError {
        let dummy = cache::dummy_verifier();
        let password = a.password.as_bytes().to_vec();
        let _ = tokio::task::spawn_blocking(move || cache::verify(&password, &dummy)).await;
        self.audit_refusal(&shown(a.login), a, &reason).await;
        if self.inner.outage.load(Ordering::Relaxed) {
            return SignInError::Unavailable;
        }
        SignInError::Rejected { reason }
    }

    async fn check_cache(&self, key: &str, password: &str) -> Cached {
        let Some(entry) = self.inner.cache.get(key) else {
            return Cached::Miss;
        };
        let age = self
            .inner
            .clock
            .now()
            .saturating_duration_since(entry.verified_at);
        let config = &self.inner.config;
        if age >= config.cache_ttl + config.unavailable_grace {
            self.inner.cache.remove(key);
            return Cached::Miss;
        }
        let password = password.as_bytes().to_vec();
        let verifier = entry.verifier.clone();
        let matches = tokio::task::spawn_blocking(move || cache::verify(&password, &verifier))
            .await
            .unwrap_or(false);
        match (matches, age < config.cache_ttl) {
            (false, _) => Cached::Miss,
            (true, true) => Cached::Fresh,
            (true, false) => Cached::WithinGrace,
        }
    }

    async fn remember(&self, key: &str, password: &str) {
        let password = password.as_bytes().to_vec();
        let verifier = tokio::task::spawn_blocking(move || cache::make_verifier(&password))
            .await
            .ok()
            .flatten();
        if let Some(verifier) = verifier {
            let now = self.inner.clock.now();
            let entry = Entry {
                verifier,
                verified_at: now,
            };
            self.inner.cache.put(key, entry, now);
        }
    }

    /// CUCM could not be asked: a cached verifier within the grace, or `Unavailable`.
    async fn outage(
        &self,
        a: &SignInAttempt<'_>,
        user: &SignInUser,
        cached: Cached,
        cause: &str,
    ) -> Result<SignedIn, SignInError> {
        self.inner.outage.store(true, Ordering::Relaxed);
        tracing::warn!(cause, "sign-in: CUCM cannot be reached");
        if let Cached::WithinGrace = cached {
            if !self.inner.config.unavailable_grace.is_zero() {
                let detail = json!({"verified_by": "cache", "cucm": "unreachable"});
                self.audit(&user.username, "sign_in", a, detail).await;
                return Ok(signed_in(user, true));
            }
        }
        let detail = json!({"reason": "CUCM unreachable", "cluster": user.cluster});
        self.audit(&user.username, "sign_in_unavailable", a, detail)
            .await;
        Err(SignInError::Unavailable)
    }

    async fn audit_refusal(&self, name: &str, a: &SignInAttempt<'_>, reason: &RefusalReason) {
        tracing::info!(login = %shown(a.login), via = a.via, client = ?a.client,
            reason = %reason.as_audit(), "sign-in refused");
        let detail = json!({"reason": reason.as_audit()});
        self.audit(name, "sign_in_refused", a, detail).await;
    }

    async fn audit(
        &self,
        name: &str,
        action: &str,
        a: &SignInAttempt<'_>,
        mut detail: serde_json::Value,
    ) {
        detail["via"] = json!(a.via);
        detail["login"] = json!(shown(a.login));
        detail["client"] = json!(a.client.map(|c| c.to_string()));
        if let Err(e) = record(&self.inner.store, name, action, &detail).await {
            tracing::warn!(error = %e, "sign-in audit entry not written");
        }
    }

    fn stripe(&self, key: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        let stripes = &self.inner.stripes;
        &stripes[(h as usize) % stripes.len()]
    }
}

async fn record(
    store: &Store,
    name: &str,
    action: &str,
    detail: &serde_json::Value,
) -> Result<(), ucbridge_store::StoreError> {
    store.record_sign_in(name, action, detail).await
}

/// The cache's (and the stripes') key: the cluster and the userid as CUCM compares it.
fn cache_key(user: &SignInUser) -> String {
    format!("{}\n{}", user.cluster, user.cucm_userid.to_lowercase())
}

fn signed_in(user: &SignInUser, from_cache: bool) -> SignedIn {
    SignedIn {
        username: user.username.clone(),
        cucm_userid: user.cucm_userid.clone(),
        cluster: user.cluster.clone(),
        from_cache,
    }
}
