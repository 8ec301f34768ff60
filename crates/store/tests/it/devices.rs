//! Provisioning records (migration 0002) on SQLite and on a real PostgreSQL.

use ucbridge_store::*;

async fn backends() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let mut stores = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ucbridge.db").display());
    stores.push((Store::open(&url).await.expect("sqlite opens"), Some(dir)));
    if let Some(url) = ucbridge_testkit::postgres_database() {
        stores.push((Store::open(&url).await.expect("postgres opens"), None));
    }
    stores
}

fn record(userid: &str, device: &str, partition: Option<&str>) -> ProvisionedDevice {
    ProvisionedDevice {
        userid: userid.into(),
        device_name: device.into(),
        state: DeviceState::Pending,
        dn_pattern: "80000".into(),
        dn_partition: partition.map(str::to_owned),
        dn_created: true,
        digest_password_enc: "v1:AAAA".into(),
        key_id: "0123456789ab".into(),
        created_at: 0,
        updated_at: 0,
    }
}

#[tokio::test]
async fn records_round_trip_and_conflict() {
    for (store, _dir) in backends().await {
        let backend = store.backend();
        store
            .insert_provisioned_device(&record("alice", "ucbalice", Some("Internal_PT")))
            .await
            .unwrap();
        store
            .insert_provisioned_device(&record("bob", "UCBBOB", None))
            .await
            .unwrap();
        let a = store.provisioned_device("alice").await.unwrap().unwrap();
        assert_eq!(a.device_name, "UCBALICE", "{backend:?}: stored upper case");
        assert_eq!(a.dn_partition.as_deref(), Some("Internal_PT"));
        assert!(a.dn_created);
        assert_eq!(a.state, DeviceState::Pending);
        assert!(a.created_at > 0 && a.updated_at >= a.created_at);
        assert!(!format!("{a:?}").contains("v1:AAAA"));
        let b = store
            .provisioned_device_by_name("ucbbob")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.userid, "bob");
        assert_eq!(b.dn_partition, None);

        // One record per user and per device name.
        for dup in [
            record("alice", "OTHER", None),
            record("carol", "UCBALICE", None),
        ] {
            let err = store.insert_provisioned_device(&dup).await.unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{backend:?}: {err}");
        }

        store
            .set_provisioned_device_state("alice", DeviceState::Active)
            .await
            .unwrap();
        assert_eq!(
            store
                .provisioned_device("alice")
                .await
                .unwrap()
                .unwrap()
                .state,
            DeviceState::Active
        );
        assert!(store
            .set_provisioned_device_state("nobody", DeviceState::Active)
            .await
            .is_err());
        assert_eq!(store.provisioned_devices().await.unwrap().len(), 2);
        assert!(store.delete_provisioned_device("alice").await.unwrap());
        assert!(!store.delete_provisioned_device("alice").await.unwrap());
        assert!(store.provisioned_device("alice").await.unwrap().is_none());
        store.close().await;
    }
}
