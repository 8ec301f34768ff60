//! The sign-in service's CUCM: the stored `cucm` connection, as the admin page last saved
//! it. The AXL client is built once and reused (one connection pool and session) until the
//! stored connection changes (its `updated_at` moves), so a sign-in costs CUCM one
//! doAuthenticateUser, not a version discovery as well.

use std::sync::Arc;

use futures::future::BoxFuture;
use ucbridge_auth::SecretBox;
use ucbridge_axl::AxlClient;
use ucbridge_signin::{CucmSource, CucmUnavailable};
use ucbridge_store::Store;

use crate::connections;

pub(crate) struct StoredCucm {
    store: Store,
    secrets: SecretBox,
    /// The client and the `updated_at` of the connection it was built from.
    current: tokio::sync::Mutex<Option<(i64, AxlClient)>>,
}

impl StoredCucm {
    pub(crate) fn new(store: Store, secrets: SecretBox) -> Arc<StoredCucm> {
        Arc::new(StoredCucm {
            store,
            secrets,
            current: tokio::sync::Mutex::new(None),
        })
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
}
