//! Which CUCM cluster a user belongs to, as directory sync recorded it in `user_sources`
//! (migration 0013): device provisioning and sign-in's WebPhone use the user's own
//! cluster. A cluster is a `cucm` source: the default `cucm` (`cucm_users`) or a named
//! `[sources.NAME] kind = "cucm"` (`source_users`).

use sqlx::Row;

use crate::{Result, Store, SOURCE_CUCM};

/// At most this many clusters are listed for one CUCM userid.
const MAX_CLUSTERS: i64 = 100;

/// Links written per statement (4 parameters each, well under SQLite's 32,766).
const LINKS_PER_STATEMENT: usize = 500;

/// A person's entry in a cluster that is not the source its local user is linked to (AD
/// primary, the CUCM cluster adding the extension): the user, found by its link
/// (`users.source`/`source_key`), also came from `source`/`source_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLink {
    pub linked_source: String,
    pub linked_key: String,
    pub source: String,
    pub source_key: String,
}

impl Store {
    /// The `cucm` source (cluster) the local user `username` came from: the one it is
    /// linked to now if that is a CUCM source, else the latest recorded CUCM source; `None`
    /// when it has none (a local user, or one from an LDAP source alone).
    pub async fn user_cluster_source(&self, username: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT s.source AS source FROM user_sources s \
             JOIN users u ON u.id = s.user_id \
             JOIN directory_sources d ON d.name = s.source AND d.kind = 'cucm' \
             WHERE lower(u.username) = lower($1) \
             ORDER BY CASE WHEN s.source = u.source THEN 0 ELSE 1 END, s.updated_at DESC, \
             s.source LIMIT 1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("source")?),
            None => None,
        })
    }

    /// The `cucm` sources on which a local user is recorded for the CUCM end user
    /// `userid` (CUCM's exact spelling, as listUser returns it): the entry of that userid
    /// in a cluster's snapshot is the identity a synced user's `user_sources` row names.
    /// Empty when no synced user is linked to such an entry.
    pub async fn cluster_sources_of_userid(&self, userid: &str) -> Result<Vec<String>> {
        let mut sources: Vec<String> = sqlx::query_scalar(
            "SELECT s.source FROM cucm_users c \
             JOIN user_sources s ON s.source = $2 AND s.source_key = c.uuid \
             WHERE c.userid = $1 LIMIT 1",
        )
        .bind(userid)
        .bind(SOURCE_CUCM)
        .fetch_all(&self.pool)
        .await?;
        let named: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT d.name FROM directory_sources d \
             JOIN source_users e ON e.source = d.name AND e.userid = $1 \
             JOIN user_sources s ON s.source = e.source AND s.source_key = e.uuid \
             WHERE d.kind = 'cucm' AND d.name <> $2 ORDER BY d.name LIMIT $3",
        )
        .bind(userid)
        .bind(SOURCE_CUCM)
        .bind(MAX_CLUSTERS)
        .fetch_all(&self.pool)
        .await?;
        sources.extend(named);
        Ok(sources)
    }

    /// Record `links` in `user_sources` (each with its source's cluster), stamped `at`:
    /// sign-in finds a user through any of its clusters' entries, and provisioning the
    /// user's cluster, whichever source is primary. A link whose user does not exist (yet)
    /// is left out.
    pub async fn record_cluster_links(&self, links: &[ClusterLink], at: i64) -> Result<()> {
        for chunk in links.chunks(LINKS_PER_STATEMENT) {
            let at_placeholder = match self.backend {
                crate::Backend::Sqlite => "?".to_owned(),
                crate::Backend::Postgres => format!("${}", chunk.len() * 4 + 1),
            };
            // SQLite needs the WHERE before ON CONFLICT to parse an upsert from a join.
            let sql = format!(
                "WITH v(linked_source, linked_key, source, source_key) AS (VALUES {}) \
                 INSERT INTO user_sources (user_id, source, source_key, cluster, updated_at) \
                 SELECT u.id, v.source, v.source_key, d.cluster, {at_placeholder} FROM v \
                 JOIN users u ON u.source = v.linked_source AND u.source_key = v.linked_key \
                 LEFT JOIN directory_sources d ON d.name = v.source WHERE u.id IS NOT NULL \
                 ON CONFLICT (user_id, source) DO UPDATE SET source_key = excluded.source_key, \
                 cluster = excluded.cluster, updated_at = excluded.updated_at",
                self.row_placeholders(chunk.len(), 4)
            );
            let mut q = sqlx::query(&sql);
            for l in chunk {
                q = q
                    .bind(l.linked_source.as_str())
                    .bind(l.linked_key.as_str())
                    .bind(l.source.as_str())
                    .bind(l.source_key.as_str());
            }
            q.bind(at).execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Forget the cluster entries (any `kind = 'cucm'` source) a user is not linked to and
    /// that the merged run which recorded its links at `before` did not record again: the
    /// person left that cluster, or the cluster left the rules.
    pub async fn prune_cluster_links(&self, before: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM user_sources WHERE updated_at < $1 \
             AND source IN (SELECT name FROM directory_sources WHERE kind = 'cucm') \
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = user_sources.user_id \
             AND u.source = user_sources.source)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
