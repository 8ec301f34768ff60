//! The sign-in service's CUCM clusters: the default cluster is the stored `cucm`
//! connection, as the admin page last saved it; a further cluster is its `[sources.NAME]
//! kind = "cucm"` table. Each cluster's AXL client is built once and reused (one
//! connection pool and session), so a sign-in costs CUCM one doAuthenticateUser, not a
//! version discovery as well: the default one until the stored connection changes (its
//! `updated_at` moves), a further one for the process's life (its settings come from the
//! configuration file, which takes a restart to change). A client that cannot be built is
//! not kept: the next sign-in tries again.
//!
//! Sign-in sends a user's password to the user's own cluster only (the store's sign-in
//! candidates carry it); a user's WebPhone goes there too ([`user_cluster_client`]).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use ucbridge_auth::SecretBox;
use ucbridge_axl::AxlClient;
use ucbridge_signin::{CucmSource, CucmUnavailable};
use ucbridge_store::Store;
use ucbridge_sync::SourceConfig;

use crate::connections;
use crate::AppState;

pub(crate) struct StoredCucm {
    store: Store,
    secrets: SecretBox,
    /// The client and the `updated_at` of the connection it was built from.
    current: tokio::sync::Mutex<Option<(i64, AxlClient)>>,
    /// The configured further clusters (`[sources.NAME] kind = "cucm"`).
    sources: Arc<[(String, SourceConfig)]>,
    /// Per further cluster, its client once built; a lock each, so a cluster that is slow
    /// to answer the version discovery holds up only its own users' sign-ins. Bounded: one
    /// entry per configured cluster, made up front.
    clusters: HashMap<String, tokio::sync::Mutex<Option<AxlClient>>>,
}

impl StoredCucm {
    pub(crate) fn new(
        store: Store,
        secrets: SecretBox,
        sources: &[(String, SourceConfig)],
    ) -> Arc<StoredCucm> {
        let clusters = sources
            .iter()
            .filter(|(_, config)| matches!(config, SourceConfig::Cucm(_)))
            .map(|(name, _)| (name.clone(), tokio::sync::Mutex::new(None)))
            .collect();
        Arc::new(StoredCucm {
            store,
            secrets,
            current: tokio::sync::Mutex::new(None),
            sources: sources.into(),
            clusters,
        })
    }

    /// The client of the further cluster `name`, built on first use.
    async fn further_client(&self, name: &str) -> Result<AxlClient, CucmUnavailable> {
        let Some(slot) = self.clusters.get(name) else {
            return Err(CucmUnavailable(format!(
                "cluster {name} is not configured (no [sources.{name}] table of kind \"cucm\")"
            )));
        };
        let mut slot = slot.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = crate::jobs::cluster_client(&self.store, &self.secrets, &self.sources, name)
            .await
            .map_err(|e| CucmUnavailable(format!("cluster {name}: {e}")))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    async fn client_now(&self) -> Result<AxlClient, CucmUnavailable> {
        let unavailable = |e: &dyn std::fmt::Display| CucmUnavailable(e.to_string());
        let stored = connections::load(&self.store, &self.secrets, "cucm")
            .await
            .map_err(|e| unavailable(&e))?
            .ok_or_else(|| CucmUnavailable("no CUCM connection is configured".into()))?;
        let mut current = self.current.lock().await;
        if let Some((at, client)) = current.as_ref() {
            if *at == stored.updated_at {
                return Ok(client.clone());
            }
        }
        let client = connections::axl_client(&self.store, &self.secrets)
            .await
            .map_err(|e| unavailable(&e))?;
        *current = Some((stored.updated_at, client.clone()));
        Ok(client)
    }
}

impl CucmSource for StoredCucm {
    fn client(&self) -> BoxFuture<'_, Result<AxlClient, CucmUnavailable>> {
        Box::pin(self.client_now())
    }

    fn cluster_client<'a>(
        &'a self,
        cluster: &'a str,
    ) -> BoxFuture<'a, Result<AxlClient, CucmUnavailable>> {
        if cluster == ucbridge_store::SOURCE_CUCM {
            return Box::pin(self.client_now());
        }
        Box::pin(self.further_client(cluster))
    }
}

/// The AXL client of the cluster of the local user `username`, as directory sync recorded
/// it (`user_sources`); the default cluster when none is recorded.
pub(crate) async fn user_cluster_client(
    state: &AppState,
    username: &str,
) -> Result<AxlClient, String> {
    let source = state
        .store
        .user_cluster_source(username)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| ucbridge_store::SOURCE_CUCM.to_owned());
    crate::jobs::cluster_client(&state.store, &state.secrets, &state.config.sources, &source)
        .await
        .map_err(|e| e.to_string())
}
