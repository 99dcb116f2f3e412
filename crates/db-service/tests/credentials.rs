//! The agent's credentials for Azure Redis against the emulator: access keys
//! through `listKeys` (refetched after a refusal) and Microsoft Entra tokens
//! for caches whose keys are disabled.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use azure_emulator::local_redis::LocalRedis as Redis;
use azure_mint::arm::ArmClient;
use azure_mint::credential::DefaultChain;
use azure_mint::http::HttpConfig;
use db_service::session::CredentialSource;

const CLIENT_ID: &str = "6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01";
const OBJECT_ID: &str = "7b3e6d1f-2c4e-4f90-8b8c-1d2e3f4a5b02";
const MY_REDIS: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.Cache/Redis/my-redis";
const PRIMARY: &str = "cHJpbWFyeS1rZXktb2YtbXktcmVkaXM=";

/// The guide's world, with my-redis's keys disabled when `entra`.
async fn emulator(entra: bool) -> azure_emulator::EmulatorHandle {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml");
    let mut text = std::fs::read_to_string(path).unwrap();
    if entra {
        let line = format!("            primary_key: {PRIMARY}\n");
        assert!(text.contains(&line));
        text = text.replace(
            &line,
            &format!("{line}            access_keys_disabled: true\n"),
        );
    }
    let world = azure_emulator::World::from_yaml(&text).unwrap();
    azure_emulator::Emulator::start(world).await.unwrap()
}

fn source(
    emu: &azure_emulator::EmulatorHandle,
    client_id: &str,
) -> db_service::credentials::AzureCredentialSource {
    let http = HttpConfig::with_proxy(emu.proxy_url(None), emu.ca_pem().as_bytes().to_vec());
    let cloud = azure_mint::Cloud::AzureCloud;
    let id = client_id.to_string();
    let chain: Arc<dyn azure_core::credentials::TokenCredential> =
        Arc::new(DefaultChain::from_vars(
            move |k| (k == "AZURE_CLIENT_ID").then(|| id.clone()),
            &http,
            cloud,
        ));
    let arm = ArmClient::with_credential(&http, cloud, chain.clone()).unwrap();
    db_service::credentials::AzureCredentialSource::new(Arc::new(arm), chain)
}

fn my_redis() -> resources::Database {
    let mut db = resources::Database::new("my-azure-redis", "redis", "rediss://localhost:6380");
    db.spec.azure = Some(resources::DatabaseAzure {
        resource_id: MY_REDIS.into(),
        ..Default::default()
    });
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_keys_are_cached_until_refused() {
    let emu = emulator(false).await;
    let provider = source(&emu, CLIENT_ID).provider(&my_redis());
    let c = provider.credentials().await.unwrap();
    assert_eq!(c.password, PRIMARY);
    assert_eq!(c.username, None);
    assert_eq!(c.valid_for, None);
    assert_eq!(provider.credentials().await.unwrap().password, PRIMARY);
    assert_eq!(emu.request_count("my-redis/listKeys"), 1, "cached");
    // Rotated in Azure: the cached primary is refused by Redis, the
    // secondary is tried (Azure's advice is to move to it while the primary
    // is regenerated), then, refused too, the keys are fetched again.
    let (new_primary, _) = emu.rotate_redis_keys("my-redis").unwrap();
    provider.invalidate(&c).await;
    let s = provider.credentials().await.unwrap();
    assert_eq!(s.password, SECONDARY);
    assert_eq!(emu.request_count("my-redis/listKeys"), 1);
    // A late refusal of the old primary (a connection that asked before)
    // changes nothing.
    provider.invalidate(&c).await;
    assert_eq!(provider.credentials().await.unwrap().password, SECONDARY);
    provider.invalidate(&s).await;
    assert_eq!(provider.credentials().await.unwrap().password, new_primary);
    assert_eq!(emu.request_count("my-redis/listKeys"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_list_keys_permission_gives_teleports_error() {
    let emu = emulator(false).await;
    // other-identity may not read my-resource-group's keys (it is not even
    // on this VM: the chain fails, then listKeys cannot be called).
    let provider = source(&emu, "0e6192a4-5f71-4c23-9ebf-4a5b6c7d8e05").provider(&my_redis());
    let e = provider.credentials().await.unwrap_err();
    assert!(
        e.to_string().starts_with("Failed to get token for Azure Redis \"my-azure-redis\". Please make sure the database agent has the \"listKeys\" permission to the database."),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_tokens_for_caches_without_keys() {
    let emu = emulator(true).await;
    emu.set_token_lifetime(Duration::from_secs(120));
    let provider = source(&emu, CLIENT_ID).provider(&my_redis());
    let c = provider.credentials().await.unwrap();
    assert_eq!(c.username.as_deref(), Some(OBJECT_ID));
    let life = c.valid_for.unwrap();
    assert!(
        life <= Duration::from_secs(120) && life > Duration::from_secs(100),
        "{life:?}"
    );
    // The token is for Azure Redis.
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c.password.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], "https://redis.azure.com", "{claims}");
    assert_eq!(claims["oid"], OBJECT_ID);
    assert_eq!(emu.request_count("my-redis/listKeys"), 0);
    // Reused while fresh.
    assert_eq!(provider.credentials().await.unwrap().password, c.password);
}

#[test]
fn example_configuration_registers_its_databases() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/db-service.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = config::parse(&text, "examples/db-service.yaml").unwrap();
    assert!(cfg.db_service.enabled);
    assert_eq!(cfg.db_service.azure[0].regions, ["eastus"]);
    let dbs = db_service::databases_from_config(&cfg.db_service).unwrap();
    let orders = &dbs[0];
    assert_eq!(orders.metadata.name, "orders-cache");
    let azure = orders.spec.azure.as_ref().unwrap();
    assert!(!azure.is_enterprise);
    assert!(!orders.redis_cluster_mode());
    assert_eq!(
        orders.host_port(),
        Some(("orders.redis.cache.windows.net".into(), 6380))
    );
    let sessions = &dbs[1];
    assert!(sessions.spec.azure.as_ref().unwrap().is_enterprise);
    assert!(sessions.redis_cluster_mode());
    assert_eq!(
        sessions.host_port(),
        Some((
            "sessions.eastus.redisenterprise.cache.azure.net".into(),
            10000
        ))
    );
}

const SECONDARY: &str = "c2Vjb25kYXJ5LWtleS1vZi1teS1yZWRpcw==";

/// Opens `n` connections at once through the engine's connection factory and
/// checks each answers PING; returns the failures.
async fn connect_many(backend: &redis_proxy::Backend, n: usize) -> Vec<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let mut c = backend.connect().await.map_err(|e| e.to_string())?;
                c.write_all(b"*1\r\n$4\r\nPING\r\n")
                    .await
                    .map_err(|e| e.to_string())?;
                let mut reply = [0u8; 7];
                c.read_exact(&mut reply).await.map_err(|e| e.to_string())?;
                (&reply == b"+PONG\r\n")
                    .then_some(())
                    .ok_or_else(|| String::from_utf8_lossy(&reply).into_owned())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e);
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_share_one_fallback_after_rotation() {
    let emu = emulator(false).await;
    let redis = Redis::start(PRIMARY).unwrap();
    let mut db = my_redis();
    db.spec.uri = format!("redis://127.0.0.1:{}", redis.port);
    let provider = source(&emu, CLIENT_ID).provider(&db);
    let backend = db_service::session::backend_for(&db, provider).unwrap();
    assert!(connect_many(&backend, 1).await.is_empty());
    assert_eq!(emu.request_count("my-redis/listKeys"), 1);

    // The cache accepts only the secondary key while listKeys still lists
    // the old primary first: every one of many concurrent connections gets
    // in, and the keys are fetched once for all of them.
    redis.set_password(PRIMARY, SECONDARY).unwrap();
    let failures = connect_many(&backend, 20).await;
    assert!(failures.is_empty(), "{failures:?}");
    let fetched = emu.request_count("my-redis/listKeys");
    assert!(fetched <= 2, "single-flight: {fetched} listKeys");
    // The key that works is remembered: no more fetches.
    assert!(connect_many(&backend, 20).await.is_empty());
    assert_eq!(emu.request_count("my-redis/listKeys"), fetched);

    // Both keys regenerated, and the cache takes only the new secondary
    // (the new primary, listed first, is refused too): the connections
    // step from the refused keys to the one that works.
    let (new_primary, new_secondary) = emu.rotate_redis_keys("my-redis").unwrap();
    redis.set_password(SECONDARY, &new_secondary).unwrap();
    let failures = connect_many(&backend, 20).await;
    assert!(failures.is_empty(), "{failures:?}");
    let fetched_after = emu.request_count("my-redis/listKeys");
    assert!(
        fetched_after <= fetched + 2,
        "single-flight: {} listKeys",
        fetched_after - fetched
    );

    // Back to the primary (the operator's next step): found again.
    redis.set_password(&new_secondary, &new_primary).unwrap();
    assert!(connect_many(&backend, 20).await.is_empty());

    // Neither key works: a clear error, and later connections try again.
    // Listing the same keys again just before means no listKeys per
    // refused connection.
    redis.set_password(&new_primary, "known-to-nobody").unwrap();
    let fetched = emu.request_count("my-redis/listKeys");
    let failures = connect_many(&backend, 5).await;
    assert_eq!(failures.len(), 5);
    assert!(
        failures.iter().all(|e| e.contains("WRONGPASS")),
        "{failures:?}"
    );
    assert!(emu.request_count("my-redis/listKeys") <= fetched + 1);
    redis.set_password("known-to-nobody", &new_primary).unwrap();
    assert!(connect_many(&backend, 5).await.is_empty());
}
