//! One export run: local users → LDAP entries, with per-user outcomes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapResult, Mod, Scope};
use serde::{Deserialize, Serialize};
use ucbridge_store::{
    now_millis, ExportUser, LdapExportCounts, LdapExportEntry, LdapExportStatus, Store, StoreError,
};

use crate::entry::{desired_entry, diff, AttributeChange, DesiredEntry, MANAGED_ATTRIBUTES};
use crate::settings::{LdapExportSettings, RemovalPolicy};
use crate::LdapExportError;

/// Fingerprint of a state row whose entry was deliberately left as it is (removal policy
/// `leave`, or an entry ucbridge did not create): the user is not looked at again until
/// it changes.
const LEFT_AS_IS: &str = "left";

/// A run older than this still marked running is taken to have crashed.
const STALE_RUN_MILLIS: i64 = 6 * 3600 * 1000;

// RFC 4511 Appendix A result codes the export acts on.
const RC_SUCCESS: u32 = 0;
const RC_NO_SUCH_OBJECT: u32 = 32;

/// Which users an export looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportMode {
    /// Only users whose entry would differ from what was last exported (by the fingerprint
    /// kept in the store), plus removals. Unchanged users cost no LDAP operation.
    Incremental,
    /// Every user: read each entry back and repair differences, and remove entries
    /// ucbridge created for users that no longer exist (seed 002's "Re-Synchronize").
    Resynchronize,
}

impl ExportMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportMode::Incremental => "incremental",
            ExportMode::Resynchronize => "resynchronize",
        }
    }
}

/// What happened to one user's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportAction {
    Added,
    Modified,
    /// Moved to a new DN (uid or base changed), attributes updated; counted as modified.
    Renamed,
    Deleted,
    /// Disabled or removed locally, but the entry was left (policy, or not ucbridge's).
    Left,
    Failed,
}

/// One user's outcome (unchanged users are only counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserOutcome {
    pub user_id: i64,
    pub username: String,
    pub dn: Option<String>,
    pub action: ExportAction,
    /// Why it failed (the LDAP diagnostic), or a note.
    pub reason: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    pub run_id: i64,
    pub mode: ExportMode,
    pub counts: LdapExportCounts,
    /// Every user that was not unchanged, in processing order (removals first).
    pub users: Vec<UserOutcome>,
    pub duration_ms: u64,
}

impl ExportSummary {
    pub fn failures(&self) -> impl Iterator<Item = &UserOutcome> {
        self.users
            .iter()
            .filter(|u| u.action == ExportAction::Failed)
    }
}

/// Exports local users to LDAP. Cheap to clone; runs of one exporter never overlap, and
/// the store refuses a second concurrent run from another process or node.
#[derive(Clone)]
pub struct LdapExporter {
    inner: Arc<Inner>,
}

struct Inner {
    settings: LdapExportSettings,
    store: Store,
    tls: Option<Arc<rustls::ClientConfig>>,
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for LdapExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapExporter")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

/// An LDAP operation that did not succeed, as a per-user reason.
fn ldap_failure(what: &str, result: &LdapResult) -> String {
    let text = result.text.trim();
    if text.is_empty() {
        format!("{what}: LDAP result {}", result.rc)
    } else {
        format!("{what}: {text} (LDAP result {})", result.rc)
    }
}

fn values(v: &[String]) -> HashSet<String> {
    v.iter().cloned().collect()
}

/// The parent of a DN ucbridge built (values are hex-escaped, so the first literal comma
/// separates the RDN, RFC 4514 §2.4).
fn parent_dn(dn: &str) -> &str {
    let bytes = dn.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => return &dn[i + 1..],
            _ => i += 1,
        }
    }
    ""
}

enum Removal {
    /// The user no longer exists: forget the state row once handled.
    Deleted,
    /// The user is disabled: keep a row while the entry stays, so re-enabling finds it.
    Disabled,
}

impl LdapExporter {
    /// Read the password file if needed, validate the settings and prepare TLS; no
    /// connection is made yet.
    pub fn new(mut settings: LdapExportSettings, store: Store) -> Result<Self, LdapExportError> {
        settings.load_password_file()?;
        settings.validate()?;
        let tls = if settings.insecure_skip_tls_verify {
            None
        } else {
            Some(crate::tls::client_config(
                settings.ca_file.as_deref(),
                settings.ca_pem.as_deref(),
            )?)
        };
        Ok(LdapExporter {
            inner: Arc::new(Inner {
                settings,
                store,
                tls,
                running: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn settings(&self) -> &LdapExportSettings {
        &self.inner.settings
    }

    /// Connect and bind with the configured account (also a connection check).
    pub async fn connect(&self) -> Result<Ldap, LdapExportError> {
        let s = &self.inner.settings;
        let mut conn = LdapConnSettings::new()
            .set_conn_timeout(s.timeout())
            .set_starttls(s.starttls);
        if s.insecure_skip_tls_verify {
            tracing::warn!("LDAP TLS certificate verification is OFF; use only against a lab");
            conn = conn.set_no_tls_verify(true);
        } else if let Some(tls) = &self.inner.tls {
            conn = conn.set_config(tls.clone());
        }
        let (driver, mut ldap) =
            LdapConnAsync::with_settings(conn, &s.url)
                .await
                .map_err(|source| LdapExportError::Connect {
                    url: s.url.clone(),
                    source: Box::new(source),
                })?;
        ldap3::drive!(driver);
        let password = s
            .bind_password
            .as_ref()
            .map(|p| p.expose())
            .unwrap_or_default();
        let result = ldap
            .with_timeout(s.timeout())
            .simple_bind(&s.bind_dn, password)
            .await
            .map_err(|source| LdapExportError::Connect {
                url: s.url.clone(),
                source: Box::new(source),
            })?;
        if result.rc != RC_SUCCESS {
            return Err(LdapExportError::Bind {
                dn: s.bind_dn.clone(),
                rc: result.rc,
                text: result.text,
            });
        }
        Ok(ldap)
    }

    /// Run one export and record it (table `ldap_export_runs`). `Err` only when the run
    /// could not proceed (settings, connection, bind, store); a user whose entry could
    /// not be written is a `Failed` outcome and the run goes on with the others.
    pub async fn export(&self, mode: ExportMode) -> Result<ExportSummary, LdapExportError> {
        let _one_at_a_time = self.inner.running.lock().await;
        let started = Instant::now();
        let store = &self.inner.store;
        let run_id = match store
            .begin_ldap_export_run(mode.as_str(), STALE_RUN_MILLIS)
            .await
        {
            Ok(id) => id,
            Err(StoreError::Conflict(why)) => return Err(LdapExportError::AlreadyRunning(why)),
            Err(e) => return Err(e.into()),
        };
        let mut run = Run {
            exporter: self,
            mode,
            counts: LdapExportCounts::default(),
            users: Vec::new(),
        };
        let outcome = run.execute().await;
        let elapsed = started.elapsed();
        metrics::histogram!("ucbridge_ldap_export_duration_seconds", "mode" => mode.as_str())
            .record(elapsed.as_secs_f64());
        let counts = run.counts;
        for (action, n) in [
            ("added", counts.added),
            ("modified", counts.modified),
            ("deleted", counts.deleted),
            ("unchanged", counts.unchanged),
            ("failed", counts.failed),
        ] {
            metrics::counter!("ucbridge_ldap_export_entries_total", "action" => action)
                .increment(n);
        }
        match outcome {
            Ok(()) => {
                let status = if counts.failed == 0 {
                    LdapExportStatus::Ok
                } else {
                    LdapExportStatus::Partial
                };
                store
                    .finish_ldap_export_run(run_id, status, counts, None)
                    .await?;
                tracing::info!(
                    mode = mode.as_str(),
                    added = counts.added,
                    modified = counts.modified,
                    deleted = counts.deleted,
                    unchanged = counts.unchanged,
                    failed = counts.failed,
                    "LDAP export finished"
                );
                Ok(ExportSummary {
                    run_id,
                    mode,
                    counts,
                    users: run.users,
                    duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                })
            }
            Err(e) => {
                let message = e.to_string();
                if let Err(store_error) = store
                    .finish_ldap_export_run(
                        run_id,
                        LdapExportStatus::Failed,
                        counts,
                        Some(&message),
                    )
                    .await
                {
                    tracing::warn!(%store_error, "cannot record the failed LDAP export run");
                }
                Err(e)
            }
        }
    }
}

/// The state of one run in progress.
struct Run<'a> {
    exporter: &'a LdapExporter,
    mode: ExportMode,
    counts: LdapExportCounts,
    users: Vec<UserOutcome>,
}

impl Run<'_> {
    fn settings(&self) -> &LdapExportSettings {
        &self.exporter.inner.settings
    }

    fn store(&self) -> &Store {
        &self.exporter.inner.store
    }

    fn report(
        &mut self,
        user_id: i64,
        username: &str,
        dn: Option<&str>,
        action: ExportAction,
        reason: Option<String>,
    ) {
        match action {
            ExportAction::Added => self.counts.added += 1,
            ExportAction::Modified | ExportAction::Renamed => self.counts.modified += 1,
            ExportAction::Deleted => self.counts.deleted += 1,
            ExportAction::Left => self.counts.unchanged += 1,
            ExportAction::Failed => {
                self.counts.failed += 1;
                tracing::warn!(
                    username,
                    reason = reason.as_deref().unwrap_or(""),
                    "LDAP export of a user failed"
                );
            }
        }
        self.users.push(UserOutcome {
            user_id,
            username: username.to_owned(),
            dn: dn.map(str::to_owned),
            action,
            reason,
        });
    }

    async fn execute(&mut self) -> Result<(), LdapExportError> {
        let mut ldap = self.exporter.connect().await?;
        let users = self.store().ldap_export_users().await?;
        let states: HashMap<i64, LdapExportEntry> = self
            .store()
            .ldap_export_entries()
            .await?
            .into_iter()
            .map(|e| (e.user_id, e))
            .collect();
        let by_id: HashMap<i64, &ExportUser> = users.iter().map(|u| (u.user.id, u)).collect();

        // Removals first, so a uid freed by a removed user can be taken by another.
        self.remove_gone_and_disabled(&mut ldap, &by_id, &states)
            .await?;
        let planned = self.plan_entries(&users);
        let owners = dn_owners(&planned, &states);
        for (u, entry) in planned {
            let owner = owners.get(&entry.dn.to_lowercase()).copied();
            if owner != Some(u.user.id) {
                self.report_dn_taken(u, &entry, owner.and_then(|id| by_id.get(&id).copied()));
                continue;
            }
            self.export_user(&mut ldap, u, &entry, states.get(&u.user.id))
                .await?;
        }
        let _ = ldap.unbind().await;
        Ok(())
    }

    /// Remove the entries of users removed locally, and of disabled ones (once, or again
    /// on a re-synchronize), in user order.
    async fn remove_gone_and_disabled(
        &mut self,
        ldap: &mut Ldap,
        by_id: &HashMap<i64, &ExportUser>,
        states: &HashMap<i64, LdapExportEntry>,
    ) -> Result<(), LdapExportError> {
        let mut removals: Vec<(&LdapExportEntry, Removal)> = Vec::new();
        for state in states.values() {
            match by_id.get(&state.user_id) {
                None => removals.push((state, Removal::Deleted)),
                Some(u) if u.user.record.disabled => {
                    let handled = state.fingerprint == LEFT_AS_IS;
                    if !handled || self.mode == ExportMode::Resynchronize {
                        removals.push((state, Removal::Disabled));
                    }
                }
                Some(_) => {}
            }
        }
        removals.sort_by_key(|(s, _)| s.user_id);
        for (state, why) in removals {
            self.remove(ldap, state, why).await?;
        }
        Ok(())
    }

    /// The wanted entry of every enabled user; a user whose entry cannot be built is
    /// reported failed.
    fn plan_entries<'u>(&mut self, users: &'u [ExportUser]) -> Vec<(&'u ExportUser, DesiredEntry)> {
        let mut planned = Vec::new();
        for u in users.iter().filter(|u| !u.user.record.disabled) {
            match desired_entry(u, self.settings()) {
                Ok(entry) => planned.push((u, entry)),
                Err(reason) => self.report(
                    u.user.id,
                    &u.user.record.username,
                    None,
                    ExportAction::Failed,
                    Some(reason),
                ),
            }
        }
        planned
    }

    fn report_dn_taken(
        &mut self,
        u: &ExportUser,
        entry: &DesiredEntry,
        owner: Option<&ExportUser>,
    ) {
        let other = owner
            .map(|o| o.user.record.username.clone())
            .unwrap_or_default();
        self.report(
            u.user.id,
            &u.user.record.username,
            Some(&entry.dn),
            ExportAction::Failed,
            Some(format!(
                "DN {} is also the entry of user {other:?}",
                entry.dn
            )),
        );
    }

    /// Write one user's entry unless an incremental run finds it unchanged, and record it.
    async fn export_user(
        &mut self,
        ldap: &mut Ldap,
        u: &ExportUser,
        entry: &DesiredEntry,
        state: Option<&LdapExportEntry>,
    ) -> Result<(), LdapExportError> {
        let username = u.user.record.username.as_str();
        if self.mode == ExportMode::Incremental
            && state.is_some_and(|s| s.fingerprint == entry.fingerprint && s.dn == entry.dn)
        {
            self.counts.unchanged += 1;
            return Ok(());
        }
        match self.export_one(ldap, entry, state).await? {
            Ok((action, created)) => {
                let exported = LdapExportEntry {
                    user_id: u.user.id,
                    username: username.to_owned(),
                    dn: entry.dn.clone(),
                    fingerprint: entry.fingerprint.clone(),
                    created,
                    exported_at: now_millis(),
                };
                self.store()
                    .apply_ldap_export_changes(&[exported], &[])
                    .await?;
                match action {
                    None => self.counts.unchanged += 1,
                    Some(action) => self.report(u.user.id, username, Some(&entry.dn), action, None),
                }
            }
            Err(reason) => self.report(
                u.user.id,
                username,
                Some(&entry.dn),
                ExportAction::Failed,
                Some(reason),
            ),
        }
        Ok(())
    }

    /// Handle the entry of a user who was removed or disabled locally.
    async fn remove(
        &mut self,
        ldap: &mut Ldap,
        state: &LdapExportEntry,
        why: Removal,
    ) -> Result<(), LdapExportError> {
        let policy = self.settings().removal;
        let delete = match policy {
            RemovalPolicy::Leave => false,
            RemovalPolicy::DeleteCreated => state.created,
            RemovalPolicy::Delete => true,
        };
        if !delete {
            match why {
                Removal::Deleted => {
                    self.store()
                        .apply_ldap_export_changes(&[], &[state.user_id])
                        .await?
                }
                Removal::Disabled => {
                    let mut left = state.clone();
                    left.fingerprint = LEFT_AS_IS.to_owned();
                    left.exported_at = now_millis();
                    self.store().apply_ldap_export_changes(&[left], &[]).await?
                }
            }
            let reason = if policy == RemovalPolicy::Leave {
                "removal = leave"
            } else {
                "the entry existed before ucbridge exported to it"
            };
            if state.fingerprint != LEFT_AS_IS {
                self.report(
                    state.user_id,
                    &state.username,
                    Some(&state.dn),
                    ExportAction::Left,
                    Some(reason.into()),
                );
            }
            return Ok(());
        }
        let result = ldap
            .with_timeout(self.settings().timeout())
            .delete(&state.dn)
            .await
            .map_err(|e| LdapExportError::Connection(Box::new(e)))?;
        match result.rc {
            RC_SUCCESS => {
                self.store()
                    .apply_ldap_export_changes(&[], &[state.user_id])
                    .await?;
                self.report(
                    state.user_id,
                    &state.username,
                    Some(&state.dn),
                    ExportAction::Deleted,
                    None,
                );
            }
            RC_NO_SUCH_OBJECT => {
                // Someone else removed it already: nothing left to do.
                self.store()
                    .apply_ldap_export_changes(&[], &[state.user_id])
                    .await?;
            }
            _ => {
                let reason = ldap_failure("delete", &result);
                self.report(
                    state.user_id,
                    &state.username,
                    Some(&state.dn),
                    ExportAction::Failed,
                    Some(reason),
                );
            }
        }
        Ok(())
    }

    /// Make the directory hold `entry`. Outer `Err`: the connection failed (the run stops);
    /// inner `Err`: this user failed. `Ok(None)` = already right. The bool tells whether
    /// ucbridge created the entry.
    async fn export_one(
        &self,
        ldap: &mut Ldap,
        entry: &DesiredEntry,
        state: Option<&LdapExportEntry>,
    ) -> Result<Result<(Option<ExportAction>, bool), String>, LdapExportError> {
        let (renamed, created) = match self.follow_rename(ldap, entry, state).await? {
            Ok(moved) => moved,
            Err(reason) => return Ok(Err(reason)),
        };
        let current = match self.read_entry(ldap, &entry.dn).await? {
            Ok(Some(current)) => current,
            Ok(None) => {
                let added = self.add_entry(ldap, entry).await?;
                return Ok(added.map(|()| (Some(ExportAction::Added), true)));
            }
            Err(reason) => return Ok(Err(reason)),
        };
        let (missing_classes, changes) = diff(entry, &self.settings().object_classes, &current);
        if missing_classes.is_empty() && changes.is_empty() {
            return Ok(Ok((renamed.then_some(ExportAction::Renamed), created)));
        }
        if let Err(reason) = self
            .modify_entry(ldap, &entry.dn, &missing_classes, &changes)
            .await?
        {
            return Ok(Err(reason));
        }
        let action = if renamed {
            ExportAction::Renamed
        } else {
            ExportAction::Modified
        };
        Ok(Ok((Some(action), created)))
    }

    /// When the user's DN changed (uid or base), move ucbridge's entry rather than leave
    /// it. Answers whether it was moved and whether ucbridge created it.
    async fn follow_rename(
        &self,
        ldap: &mut Ldap,
        entry: &DesiredEntry,
        state: Option<&LdapExportEntry>,
    ) -> Result<Result<(bool, bool), String>, LdapExportError> {
        let settings = self.settings();
        let Some(state) = state else {
            return Ok(Ok((false, false)));
        };
        if state.dn.eq_ignore_ascii_case(&entry.dn) {
            return Ok(Ok((false, state.created)));
        }
        if !(state.created || settings.removal == RemovalPolicy::Delete) {
            return Ok(Ok((false, false)));
        }
        let new_parent = settings.base_dn.trim();
        let new_sup =
            (!parent_dn(&state.dn).eq_ignore_ascii_case(new_parent)).then_some(new_parent);
        let result = ldap
            .with_timeout(settings.timeout())
            .modifydn(&state.dn, &entry.rdn, true, new_sup)
            .await
            .map_err(|e| LdapExportError::Connection(Box::new(e)))?;
        Ok(match result.rc {
            RC_SUCCESS => Ok((true, state.created)),
            // The old entry is gone; the new one is added by the caller.
            RC_NO_SUCH_OBJECT => Ok((false, false)),
            _ => Err(ldap_failure(
                &format!("rename {} to {}", state.dn, entry.dn),
                &result,
            )),
        })
    }

    /// The managed attributes of the entry at `dn`, or `None` when there is none.
    async fn read_entry(
        &self,
        ldap: &mut Ldap,
        dn: &str,
    ) -> Result<Result<Option<HashMap<String, Vec<String>>>, String>, LdapExportError> {
        let mut wanted: Vec<&str> = MANAGED_ATTRIBUTES.to_vec();
        wanted.push("objectClass");
        let search = ldap
            .with_timeout(self.settings().timeout())
            .search(dn, Scope::Base, "(objectClass=*)", wanted)
            .await
            .map_err(|e| LdapExportError::Connection(Box::new(e)))?;
        let ldap3::SearchResult(found, result) = search;
        if result.rc == RC_NO_SUCH_OBJECT || (result.rc == RC_SUCCESS && found.is_empty()) {
            return Ok(Ok(None));
        }
        if result.rc != RC_SUCCESS {
            return Ok(Err(ldap_failure("read", &result)));
        }
        let Some(current) = found.into_iter().next() else {
            return Ok(Err("read: no entry returned".into()));
        };
        let current = ldap3::SearchEntry::construct(current);
        let mut attrs = current.attrs;
        // userPassword is an octet string; a value that is not UTF-8 lands in bin_attrs.
        for (name, vals) in current.bin_attrs {
            attrs.entry(name).or_default().extend(
                vals.into_iter()
                    .map(|v| String::from_utf8_lossy(&v).into_owned()),
            );
        }
        Ok(Ok(Some(attrs)))
    }

    async fn add_entry(
        &self,
        ldap: &mut Ldap,
        entry: &DesiredEntry,
    ) -> Result<Result<(), String>, LdapExportError> {
        let settings = self.settings();
        let mut attrs: Vec<(String, HashSet<String>)> =
            vec![("objectClass".to_owned(), values(&settings.object_classes))];
        for (name, v) in &entry.attributes {
            attrs.push(((*name).to_owned(), values(v)));
        }
        let result = ldap
            .with_timeout(settings.timeout())
            .add(&entry.dn, attrs)
            .await
            .map_err(|e| LdapExportError::Connection(Box::new(e)))?;
        Ok(if result.rc == RC_SUCCESS {
            Ok(())
        } else {
            Err(ldap_failure("add", &result))
        })
    }

    async fn modify_entry(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        missing_classes: &[String],
        changes: &[AttributeChange],
    ) -> Result<Result<(), String>, LdapExportError> {
        let mut mods: Vec<Mod<String>> = Vec::new();
        if !missing_classes.is_empty() {
            mods.push(Mod::Add("objectClass".to_owned(), values(missing_classes)));
        }
        for change in changes {
            // Replace with no values deletes the attribute (RFC 4511 §4.6).
            mods.push(Mod::Replace(change.name.to_owned(), values(&change.values)));
        }
        let result = ldap
            .with_timeout(self.settings().timeout())
            .modify(dn, mods)
            .await
            .map_err(|e| LdapExportError::Connection(Box::new(e)))?;
        Ok(if result.rc == RC_SUCCESS {
            Ok(())
        } else {
            Err(ldap_failure("modify", &result))
        })
    }
}

/// Which user each DN belongs to: two users must not share one. The user whose entry it
/// already is keeps it; otherwise the first in username order.
fn dn_owners(
    planned: &[(&ExportUser, DesiredEntry)],
    states: &HashMap<i64, LdapExportEntry>,
) -> HashMap<String, i64> {
    let mut owner: HashMap<String, i64> = HashMap::new();
    for (u, entry) in planned {
        let key = entry.dn.to_lowercase();
        let holds_it = states
            .get(&u.user.id)
            .is_some_and(|s| s.dn.eq_ignore_ascii_case(&entry.dn));
        if holds_it {
            owner.insert(key, u.user.id);
        } else {
            owner.entry(key).or_insert(u.user.id);
        }
    }
    owner
}

#[cfg(test)]
mod tests {
    use super::parent_dn;

    #[test]
    fn parent_skips_escaped_commas() {
        assert_eq!(parent_dn(r"uid=a\2cb,ou=people,dc=x"), "ou=people,dc=x");
        assert_eq!(parent_dn(r"uid=a\,b,ou=p"), "ou=p");
        assert_eq!(parent_dn("uid=a"), "");
    }
}
