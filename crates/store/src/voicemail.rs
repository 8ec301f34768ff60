//! Voicemail sync state (tables `voicemail_accounts`, `voicemail_folders`,
//! `voicemail_messages`, migration 0004; audio problems per account, 0008; the CUC
//! fingerprint that lets a reconcile skip an unchanged account, 0009).
//!
//! Per matched account: which CUC user and IMAP login it is, how its last sync went; per
//! CUC folder role the IMAP folder mirroring it (by identity, so a renamed folder is still
//! found); per message what CUC and IMAP showed after the last sync, which is what lets the
//! engine tell who changed what since (and resume after a restart without duplicates).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_millis, opt_text, Result, Store, StoreError};

/// A CUC mailbox matched to a local user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoicemailAccount {
    pub cuc_object_id: String,
    pub cuc_alias: String,
    pub local_username: String,
    /// The IMAP login name (Dovecot: the user part of `user*master`).
    pub imap_user: String,
    pub last_sync_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub consecutive_failures: i64,
    /// Messages in the mapping (filled by [`Store::voicemail_accounts`]).
    pub messages: i64,
    /// Voicemails delivered without the MP3 asked for (unsupported codec such as GSM 6.10,
    /// corrupt or missing audio): they carry CUC's WAV, or no audio, and say why.
    pub audio_problems: i64,
    /// The latest such reason, naming the message.
    pub last_audio_problem: Option<String>,
    pub last_audio_problem_at: Option<i64>,
}

/// What CUC showed of an account's folders (counts, USNs) before the last successful full
/// read of its listings, and when that read was (migration 0009).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoicemailCucMark {
    pub fingerprint: Option<String>,
    pub full_read_at: Option<i64>,
}

/// The IMAP folder mirroring one CUC folder of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoicemailFolder {
    pub cuc_object_id: String,
    /// `inbox`, `sent` or `deleted`.
    pub role: String,
    /// Its name when last seen (it may have been renamed since).
    pub imap_name: String,
    /// RFC 8474 MAILBOXID, when the server offers OBJECTID.
    pub mailbox_id: Option<String>,
    pub uid_validity: u32,
    /// HIGHESTMODSEQ (RFC 7162) after the last sync; unchanged = nothing happened on IMAP.
    pub highest_modseq: Option<u64>,
}

/// One message as both sides showed it after the last sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoicemailMessage {
    /// `0:<uuid>`.
    pub cuc_message_id: String,
    pub cuc_folder: String,
    pub cuc_read: bool,
    /// The folder role it is in on IMAP; `None` = not on IMAP.
    pub imap_role: Option<String>,
    pub imap_uid_validity: Option<u32>,
    pub imap_uid: Option<u32>,
    pub imap_seen: bool,
}

fn account_from_row(row: &AnyRow) -> Result<VoicemailAccount> {
    Ok(VoicemailAccount {
        cuc_object_id: row.try_get("cuc_object_id")?,
        cuc_alias: row.try_get("cuc_alias")?,
        local_username: row.try_get("local_username")?,
        imap_user: row.try_get("imap_user")?,
        last_sync_at: row.try_get("last_sync_at")?,
        last_success_at: row.try_get("last_success_at")?,
        last_error: opt_text(row, "last_error")?,
        consecutive_failures: row.try_get("consecutive_failures")?,
        messages: row.try_get("messages")?,
        audio_problems: row.try_get("audio_problems")?,
        last_audio_problem: opt_text(row, "last_audio_problem")?,
        last_audio_problem_at: row.try_get("last_audio_problem_at")?,
    })
}

fn u32_of(v: Option<i64>, what: &str) -> Result<Option<u32>> {
    v.map(|n| u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} {n} is not a u32"))))
        .transpose()
}

fn message_from_row(row: &AnyRow) -> Result<VoicemailMessage> {
    Ok(VoicemailMessage {
        cuc_message_id: row.try_get("cuc_message_id")?,
        cuc_folder: row.try_get("cuc_folder")?,
        cuc_read: row.try_get::<i64, _>("cuc_read")? != 0,
        imap_role: opt_text(row, "imap_role")?,
        imap_uid_validity: u32_of(row.try_get("imap_uid_validity")?, "imap_uid_validity")?,
        imap_uid: u32_of(row.try_get("imap_uid")?, "imap_uid")?,
        imap_seen: row.try_get::<i64, _>("imap_seen")? != 0,
    })
}

const ACCOUNT_SELECT: &str = "SELECT a.cuc_object_id, a.cuc_alias, a.local_username, \
    a.imap_user, a.last_sync_at, a.last_success_at, a.last_error, a.consecutive_failures, \
    a.audio_problems, a.last_audio_problem, a.last_audio_problem_at, \
    (SELECT COUNT(*) FROM voicemail_messages m WHERE m.cuc_object_id = a.cuc_object_id) \
    AS messages FROM voicemail_accounts a";

/// Rows per multi-row upsert (9 parameters each; far below both backends' limits).
const UPSERT_BATCH: usize = 200;

impl Store {
    /// Record (or update) a matched account; its sync history is kept.
    pub async fn upsert_voicemail_account(
        &self,
        cuc_object_id: &str,
        cuc_alias: &str,
        local_username: &str,
        imap_user: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO voicemail_accounts (cuc_object_id, cuc_alias, local_username, \
             imap_user, consecutive_failures, updated_at) VALUES ($1, $2, $3, $4, 0, $5) \
             ON CONFLICT (cuc_object_id) DO UPDATE SET cuc_alias = excluded.cuc_alias, \
             local_username = excluded.local_username, imap_user = excluded.imap_user, \
             updated_at = excluded.updated_at",
        )
        .bind(cuc_object_id)
        .bind(cuc_alias)
        .bind(local_username)
        .bind(imap_user)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every matched account with its message count, by alias.
    pub async fn voicemail_accounts(&self) -> Result<Vec<VoicemailAccount>> {
        let rows = sqlx::query(&format!("{ACCOUNT_SELECT} ORDER BY a.cuc_alias"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account_from_row).collect()
    }

    /// One page of the matched accounts by alias, and how many there are in all.
    pub async fn voicemail_accounts_page(
        &self,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<VoicemailAccount>)> {
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM voicemail_accounts")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let rows = sqlx::query(&format!(
            "{ACCOUNT_SELECT} ORDER BY a.cuc_alias LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let page = rows.iter().map(account_from_row).collect::<Result<_>>()?;
        Ok((total, page))
    }

    /// Messages in the mapping of every account (one aggregate read).
    pub async fn voicemail_message_total(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM voicemail_messages")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// The account matched to local user `username` (one indexed read; the first by alias
    /// should two CUC mailboxes ever match one user).
    pub async fn voicemail_account_of_user(
        &self,
        username: &str,
    ) -> Result<Option<VoicemailAccount>> {
        let row = sqlx::query(&format!(
            "{ACCOUNT_SELECT} WHERE a.local_username = $1 ORDER BY a.cuc_alias LIMIT 1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    pub async fn voicemail_account(&self, cuc_object_id: &str) -> Result<Option<VoicemailAccount>> {
        let row = sqlx::query(&format!("{ACCOUNT_SELECT} WHERE a.cuc_object_id = $1"))
            .bind(cuc_object_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    /// Note the outcome of a sync: `Ok` clears the error and the failure count.
    pub async fn record_voicemail_sync(
        &self,
        cuc_object_id: &str,
        outcome: std::result::Result<(), &str>,
    ) -> Result<()> {
        let now = now_millis();
        let query = match outcome {
            Ok(()) => sqlx::query(
                "UPDATE voicemail_accounts SET last_sync_at = $1, last_success_at = $1, \
                 last_error = NULL, consecutive_failures = 0, updated_at = $1 \
                 WHERE cuc_object_id = $2",
            )
            .bind(now)
            .bind(cuc_object_id),
            Err(error) => sqlx::query(
                "UPDATE voicemail_accounts SET last_sync_at = $1, last_error = $2, \
                 consecutive_failures = consecutive_failures + 1, updated_at = $1 \
                 WHERE cuc_object_id = $3",
            )
            .bind(now)
            .bind(error.chars().take(2000).collect::<String>())
            .bind(cuc_object_id),
        };
        query.execute(&self.pool).await?;
        Ok(())
    }

    /// The account's CUC fingerprint and last full read (`None`: no such account).
    pub async fn voicemail_cuc_mark(
        &self,
        cuc_object_id: &str,
    ) -> Result<Option<VoicemailCucMark>> {
        let row = sqlx::query(
            "SELECT cuc_fingerprint, cuc_full_read_at FROM voicemail_accounts \
             WHERE cuc_object_id = $1",
        )
        .bind(cuc_object_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(VoicemailCucMark {
                fingerprint: opt_text(&row, "cuc_fingerprint")?,
                full_read_at: row.try_get("cuc_full_read_at")?,
            })
        })
        .transpose()
    }

    /// Record a full read of the account's CUC listings at `read_at`, and the fingerprint
    /// taken just before it (`None`: CUC offered none, so the account is never skipped).
    pub async fn record_voicemail_full_read(
        &self,
        cuc_object_id: &str,
        fingerprint: Option<&str>,
        read_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE voicemail_accounts SET cuc_fingerprint = $1, cuc_full_read_at = $2 \
             WHERE cuc_object_id = $3",
        )
        .bind(fingerprint)
        .bind(read_at)
        .bind(cuc_object_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forget the account's CUC fingerprint (kept: when the last full read was), so the
    /// next reconcile reads it in full. Done before a sync writes anything: a sync that
    /// fails or is cut off half-way must not leave an account that looks in sync.
    pub async fn forget_voicemail_cuc_fingerprint(&self, cuc_object_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE voicemail_accounts SET cuc_fingerprint = NULL WHERE cuc_object_id = $1",
        )
        .bind(cuc_object_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Count `count` more voicemails delivered without their MP3 and keep `latest`, the
    /// last reason (cut to 2,000 characters like errors).
    pub async fn record_voicemail_audio_problems(
        &self,
        cuc_object_id: &str,
        count: u64,
        latest: &str,
    ) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let now = now_millis();
        sqlx::query(
            "UPDATE voicemail_accounts SET audio_problems = audio_problems + $1, \
             last_audio_problem = $2, last_audio_problem_at = $3, updated_at = $3 \
             WHERE cuc_object_id = $4",
        )
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .bind(latest.chars().take(2000).collect::<String>())
        .bind(now)
        .bind(cuc_object_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forget an account that no longer matches (its IMAP messages stay where they are).
    pub async fn remove_voicemail_account(&self, cuc_object_id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        for table in ["voicemail_messages", "voicemail_folders"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE cuc_object_id = $1"))
                .bind(cuc_object_id)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM voicemail_accounts WHERE cuc_object_id = $1")
            .bind(cuc_object_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// The account's folders, by role.
    pub async fn voicemail_folders(&self, cuc_object_id: &str) -> Result<Vec<VoicemailFolder>> {
        let rows = sqlx::query(
            "SELECT role, imap_name, mailbox_id, uid_validity, highest_modseq \
             FROM voicemail_folders WHERE cuc_object_id = $1 ORDER BY role",
        )
        .bind(cuc_object_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(VoicemailFolder {
                    cuc_object_id: cuc_object_id.to_owned(),
                    role: row.try_get("role")?,
                    imap_name: row.try_get("imap_name")?,
                    mailbox_id: opt_text(row, "mailbox_id")?,
                    uid_validity: u32_of(Some(row.try_get("uid_validity")?), "uid_validity")?
                        .unwrap_or_default(),
                    highest_modseq: row
                        .try_get::<Option<i64>, _>("highest_modseq")?
                        .map(|v| v as u64),
                })
            })
            .collect()
    }

    /// Insert or replace the folder of `folder.role`.
    pub async fn save_voicemail_folder(&self, folder: &VoicemailFolder) -> Result<()> {
        sqlx::query(
            "INSERT INTO voicemail_folders (cuc_object_id, role, imap_name, mailbox_id, \
             uid_validity, highest_modseq, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (cuc_object_id, role) DO UPDATE SET imap_name = excluded.imap_name, \
             mailbox_id = excluded.mailbox_id, uid_validity = excluded.uid_validity, \
             highest_modseq = excluded.highest_modseq, updated_at = excluded.updated_at",
        )
        .bind(&folder.cuc_object_id)
        .bind(&folder.role)
        .bind(&folder.imap_name)
        .bind(folder.mailbox_id.as_deref())
        .bind(i64::from(folder.uid_validity))
        // MODSEQ values fit i64 in practice (RFC 7162 allows 63 bits).
        .bind(folder.highest_modseq.map(|v| v as i64))
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The account's message mapping.
    pub async fn voicemail_messages(&self, cuc_object_id: &str) -> Result<Vec<VoicemailMessage>> {
        let rows = sqlx::query(
            "SELECT cuc_message_id, cuc_folder, cuc_read, imap_role, imap_uid_validity, \
             imap_uid, imap_seen FROM voicemail_messages WHERE cuc_object_id = $1 \
             ORDER BY cuc_message_id",
        )
        .bind(cuc_object_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// Write what a sync left: `upserts` replace their rows, `removals` (CUC message ids)
    /// go; one transaction, so a crash leaves either the old or the new state.
    pub async fn apply_voicemail_messages(
        &self,
        cuc_object_id: &str,
        upserts: &[VoicemailMessage],
        removals: &[String],
    ) -> Result<()> {
        if upserts.is_empty() && removals.is_empty() {
            return Ok(());
        }
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        for chunk in upserts.chunks(UPSERT_BATCH) {
            let sql = format!(
                "INSERT INTO voicemail_messages (cuc_object_id, cuc_message_id, cuc_folder, \
                 cuc_read, imap_role, imap_uid_validity, imap_uid, imap_seen, updated_at) \
                 VALUES {} ON CONFLICT (cuc_object_id, cuc_message_id) DO UPDATE SET \
                 cuc_folder = excluded.cuc_folder, cuc_read = excluded.cuc_read, \
                 imap_role = excluded.imap_role, imap_uid_validity = excluded.imap_uid_validity, \
                 imap_uid = excluded.imap_uid, imap_seen = excluded.imap_seen, \
                 updated_at = excluded.updated_at",
                self.row_placeholders(chunk.len(), 9)
            );
            let mut q = sqlx::query(&sql);
            for m in chunk {
                q = q
                    .bind(cuc_object_id)
                    .bind(&m.cuc_message_id)
                    .bind(&m.cuc_folder)
                    .bind(i64::from(m.cuc_read))
                    .bind(m.imap_role.as_deref())
                    .bind(m.imap_uid_validity.map(i64::from))
                    .bind(m.imap_uid.map(i64::from))
                    .bind(i64::from(m.imap_seen))
                    .bind(now);
            }
            q.execute(&mut *tx).await?;
        }
        for id in removals {
            sqlx::query(
                "DELETE FROM voicemail_messages WHERE cuc_object_id = $1 AND cuc_message_id = $2",
            )
            .bind(cuc_object_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, read: bool, uid: Option<u32>) -> VoicemailMessage {
        VoicemailMessage {
            cuc_message_id: id.into(),
            cuc_folder: "inbox".into(),
            cuc_read: read,
            imap_role: Some("inbox".into()),
            imap_uid_validity: Some(4_000_000_000),
            imap_uid: uid,
            imap_seen: read,
        }
    }

    async fn exercise(store: Store) {
        store
            .upsert_voicemail_account("oid-1", "jdoe", "jdoe", "jdoe")
            .await
            .unwrap();
        store
            .upsert_voicemail_account("oid-1", "jdoe", "john", "john")
            .await
            .unwrap();
        let empty = VoicemailCucMark {
            fingerprint: None,
            full_read_at: None,
        };
        assert_eq!(
            store.voicemail_cuc_mark("oid-1").await.unwrap(),
            Some(empty)
        );
        assert_eq!(store.voicemail_cuc_mark("nobody").await.unwrap(), None);
        store
            .record_voicemail_full_read("oid-1", Some("inbox 3/7"), 1_700_000_000_000)
            .await
            .unwrap();
        // A re-match keeps the mark; the next full read replaces it.
        store
            .upsert_voicemail_account("oid-1", "jdoe", "john", "john")
            .await
            .unwrap();
        let mark = store.voicemail_cuc_mark("oid-1").await.unwrap().unwrap();
        assert_eq!(mark.fingerprint.as_deref(), Some("inbox 3/7"));
        assert_eq!(mark.full_read_at, Some(1_700_000_000_000));
        store
            .forget_voicemail_cuc_fingerprint("oid-1")
            .await
            .unwrap();
        let mark = store.voicemail_cuc_mark("oid-1").await.unwrap().unwrap();
        assert_eq!(mark.fingerprint, None);
        assert_eq!(mark.full_read_at, Some(1_700_000_000_000));
        store
            .record_voicemail_full_read("oid-1", Some("inbox 3/7"), 1_700_000_000_000)
            .await
            .unwrap();
        store
            .record_voicemail_full_read("oid-1", None, 1_700_000_000_001)
            .await
            .unwrap();
        let mark = store.voicemail_cuc_mark("oid-1").await.unwrap().unwrap();
        assert_eq!(mark.fingerprint, None);
        assert_eq!(mark.full_read_at, Some(1_700_000_000_001));
        let many: Vec<_> = (0..450)
            .map(|i| message(&format!("0:{i:04}"), i % 2 == 0, Some(i)))
            .collect();
        store
            .apply_voicemail_messages("oid-1", &many, &[])
            .await
            .unwrap();
        let mut changed = message("0:0001", true, None);
        changed.imap_role = None;
        store
            .apply_voicemail_messages("oid-1", &[changed.clone()], &["0:0002".into()])
            .await
            .unwrap();
        let rows = store.voicemail_messages("oid-1").await.unwrap();
        assert_eq!(rows.len(), 449);
        assert_eq!(rows[1], changed);
        assert_eq!(
            rows[0].imap_uid_validity,
            Some(4_000_000_000),
            "UIDVALIDITY is a u32"
        );
        let folder = VoicemailFolder {
            cuc_object_id: "oid-1".into(),
            role: "inbox".into(),
            imap_name: "Voicemail".into(),
            mailbox_id: None,
            uid_validity: 4_000_000_001,
            highest_modseq: Some(77),
        };
        store.save_voicemail_folder(&folder).await.unwrap();
        let renamed = VoicemailFolder {
            imap_name: "Archive.VM".into(),
            ..folder
        };
        store.save_voicemail_folder(&renamed).await.unwrap();
        assert_eq!(store.voicemail_folders("oid-1").await.unwrap(), [renamed]);
        store
            .record_voicemail_sync("oid-1", Err("CUC down"))
            .await
            .unwrap();
        store
            .record_voicemail_sync("oid-1", Err("CUC down"))
            .await
            .unwrap();
        let a = store.voicemail_account("oid-1").await.unwrap().unwrap();
        assert_eq!(
            (
                a.local_username.as_str(),
                a.consecutive_failures,
                a.messages
            ),
            ("john", 2, 449)
        );
        assert_eq!(a.last_error.as_deref(), Some("CUC down"));
        assert_eq!(
            (a.audio_problems, a.last_audio_problem.as_deref()),
            (0, None)
        );
        store
            .record_voicemail_audio_problems("oid-1", 2, "GSM 6.10 (message 0:1)")
            .await
            .unwrap();
        store
            .record_voicemail_audio_problems("oid-1", 0, "ignored")
            .await
            .unwrap();
        store
            .record_voicemail_audio_problems("oid-1", 1, "no audio (message 0:2)")
            .await
            .unwrap();
        let a = store.voicemail_account("oid-1").await.unwrap().unwrap();
        assert_eq!(
            (a.audio_problems, a.last_audio_problem.as_deref()),
            (3, Some("no audio (message 0:2)"))
        );
        assert!(a.last_audio_problem_at.is_some());
        store.record_voicemail_sync("oid-1", Ok(())).await.unwrap();
        // Bounded reads: one user's account, a page of accounts, the message total.
        for (oid, alias) in [("oid-2", "adams"), ("oid-3", "zed")] {
            store
                .upsert_voicemail_account(oid, alias, alias, alias)
                .await
                .unwrap();
        }
        let mine = store.voicemail_account_of_user("john").await.unwrap();
        assert_eq!(mine.map(|a| a.cuc_object_id), Some("oid-1".to_owned()));
        assert!(store
            .voicemail_account_of_user("jdoe")
            .await
            .unwrap()
            .is_none());
        let (total, page) = store.voicemail_accounts_page(1, 1).await.unwrap();
        assert_eq!(total, 3);
        assert_eq!(page.len(), 1);
        assert_eq!(
            page[0].cuc_alias, "jdoe",
            "second by alias: adams, jdoe, zed"
        );
        assert_eq!(store.voicemail_message_total().await.unwrap(), 449);
        for oid in ["oid-2", "oid-3"] {
            assert!(store.remove_voicemail_account(oid).await.unwrap());
        }
        let a = store.voicemail_accounts().await.unwrap().remove(0);
        assert!(
            a.last_error.is_none() && a.last_success_at.is_some() && a.consecutive_failures == 0
        );
        assert!(store.remove_voicemail_account("oid-1").await.unwrap());
        assert!(store.voicemail_messages("oid-1").await.unwrap().is_empty());
        assert!(store.voicemail_folders("oid-1").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn voicemail_state_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        exercise(store).await;
    }

    #[tokio::test]
    async fn voicemail_state_on_postgres() {
        let Some(url) = ucbridge_testkit::postgres_database() else {
            return;
        };
        exercise(Store::open(&url).await.unwrap()).await;
    }
}
