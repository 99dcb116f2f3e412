//! The agent's credentials for Azure Redis against the emulator: access keys
//! through `listKeys` (refetched after a refusal) and Microsoft Entra tokens
//! for caches whose keys are disabled.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use azure_mint::arm::{ArmClient, CredentialBearer};
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
    let arm = ArmClient::new(
        &http,
        cloud,
        Arc::new(CredentialBearer::new(chain.clone(), cloud)),
    )
    .unwrap();
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
    // Rotated in Azure: the cached key is refused by Redis, then refetched.
    let (new_primary, _) = emu.rotate_redis_keys("my-redis").unwrap();
    provider.invalidate(&c).await;
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
        e.starts_with("Failed to get token for Azure Redis \"my-azure-redis\". Please make sure the database agent has the \"listKeys\" permission to the database."),
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
