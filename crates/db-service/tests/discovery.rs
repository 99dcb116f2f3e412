//! Discovery against the emulator's ARM, as the agent on teleport-vm sees it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use azure_mint::arm::{ArmClient, StaticBearer};
use azure_mint::http::HttpConfig;
use azure_mint::imds::{ImdsClient, ManagedIdentityId};
use config::AzureMatcher;

const TELEPORT_AZURE: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure";

fn matcher(regions: &[&str]) -> AzureMatcher {
    AzureMatcher {
        types: vec!["redis".into()],
        subscriptions: vec!["*".into()],
        resource_groups: vec!["*".into()],
        regions: regions.iter().map(|s| s.to_string()).collect(),
        tags: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_what_the_agent_may_read() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml");
    let emu = azure_emulator::Emulator::start_fixture(&fixture)
        .await
        .unwrap();
    let http = HttpConfig::with_proxy(emu.proxy_url(None), emu.ca_pem().as_bytes().to_vec());
    let token = ImdsClient::new(&http)
        .unwrap()
        .token(
            "https://management.azure.com/",
            &ManagedIdentityId::ResourceId(TELEPORT_AZURE.into()),
        )
        .await
        .unwrap();
    let arm = ArmClient::new(
        &http,
        azure_mint::Cloud::AzureCloud,
        Arc::new(StaticBearer(token.access_token)),
    )
    .unwrap();

    // `East US` and `eastus` are the same region.
    let dbs = db_service::discovery::discover(&arm, &[matcher(&["East US"])])
        .await
        .unwrap();
    let names: Vec<&str> = dbs.iter().map(|d| d.metadata.name.as_str()).collect();
    assert!(names.contains(&"my-redis"), "{names:?}");
    assert!(
        !names.contains(&"other-redis"),
        "outside the identity's reach: {names:?}"
    );
    let redis = dbs.iter().find(|d| d.metadata.name == "my-redis").unwrap();
    let labels = redis.all_labels();
    assert_eq!(labels["region"], "eastus");
    assert_eq!(labels["resource-group"], "my-resource-group");
    assert_eq!(
        labels["subscription-id"],
        "00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(labels["engine"], "Microsoft.Cache/Redis");
    assert_eq!(labels["env"], "dev", "Azure tags become labels");
    assert_eq!(labels["teleport.dev/origin"], "cloud");
    assert!(redis.spec.uri.ends_with(":6380"), "{}", redis.spec.uri);
    assert_eq!(redis.metadata.description, "Azure Redis server in East US");
    let ent = dbs
        .iter()
        .find(|d| d.metadata.name == "my-enterprise")
        .unwrap();
    assert_eq!(
        ent.all_labels()["engine"],
        "Microsoft.Cache/redisEnterprise"
    );
    assert_eq!(ent.all_labels()["endpoint-type"], "OSSCluster");
    // The OSS cluster policy: sessions run the engine's cluster mode.
    assert!(
        ent.spec.uri.ends_with(":10000?mode=cluster"),
        "{}",
        ent.spec.uri
    );
    assert!(ent.redis_cluster_mode());
    assert!(!redis.redis_cluster_mode());
    assert_eq!(
        ent.host_port(),
        Some((
            "my-enterprise.eastus.redisenterprise.cache.azure.net".to_string(),
            10000
        ))
    );

    // Another region selects nothing; a tag filter narrows.
    let none = db_service::discovery::discover(&arm, &[matcher(&["westeurope"])])
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    let mut tagged = matcher(&["*"]);
    tagged
        .tags
        .insert("env".into(), config::StringOrList::One("prod".into()));
    let none = db_service::discovery::discover(&arm, &[tagged])
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}

#[test]
fn regions_and_ids() {
    assert_eq!(
        db_service::discovery::normalize_region("East US 2"),
        "eastus2"
    );
    assert_eq!(
        db_service::discovery::parse_resource_id(
            "/subscriptions/s/resourceGroups/g/providers/x/y/z"
        ),
        Some(("s".into(), "g".into()))
    );
    assert_eq!(db_service::discovery::parse_resource_id("/nope"), None);
}

fn redis_resource(host: &str, port: u16, tags: serde_json::Value) -> azure_mint::arm::Redis {
    redis_resource_with_id(
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/Redis/r",
        host,
        port,
        tags,
    )
}

fn redis_resource_with_id(
    id: &str,
    host: &str,
    port: u16,
    tags: serde_json::Value,
) -> azure_mint::arm::Redis {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "name": "r",
        "type": "Microsoft.Cache/Redis",
        "location": "eastus",
        "tags": tags,
        "properties": {"hostName": host, "sslPort": port, "provisioningState": "Succeeded"},
    }))
    .unwrap()
}

fn enterprise_resources(
    host: &str,
    port: u16,
) -> (
    azure_mint::arm::RedisEnterprise,
    azure_mint::arm::RedisEnterpriseDatabase,
) {
    let cluster = serde_json::from_value(serde_json::json!({
        "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/redisEnterprise/e",
        "name": "e",
        "type": "Microsoft.Cache/redisEnterprise",
        "location": "eastus",
        "properties": {"hostName": host, "provisioningState": "Succeeded"},
    }))
    .unwrap();
    let db = serde_json::from_value(serde_json::json!({
        "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/redisEnterprise/e/databases/default",
        "name": "default",
        "type": "Microsoft.Cache/redisEnterprise/databases",
        "properties": {"port": port, "clientProtocol": "Encrypted", "clusteringPolicy": "OSSCluster", "provisioningState": "Succeeded"},
    }))
    .unwrap();
    (cluster, db)
}

/// Azure tags become labels shown in `tsh db ls`: those the auth service
/// would refuse (control characters, too long) are left out rather than the
/// whole database, and a location that cannot be shown skips the resource.
#[test]
fn discovered_labels_are_announceable() {
    let m = matcher(&["*"]);
    let r = redis_resource(
        "my.redis.cache.windows.net",
        6380,
        serde_json::json!({
            "env": "dev",
            "Cost Center": "ops",
            "title": "\u{1b}]0;owned\u{7}",
            "k\u{1b}[31m": "v",
            "long": "v".repeat(2000),
        }),
    );
    let db = db_service::discovery::redis_database(&m, &r).unwrap();
    let labels = db.all_labels();
    assert_eq!(labels["env"], "dev");
    assert_eq!(labels["Cost Center"], "ops");
    assert!(!labels.contains_key("title"), "{labels:?}");
    assert!(!labels.contains_key("long"), "{labels:?}");
    assert!(!labels.keys().any(|k| k.starts_with('k')), "{labels:?}");
    db.check_served_text().unwrap();

    let mut r = redis_resource("my.redis.cache.windows.net", 6380, serde_json::json!({}));
    r.location = "east\u{1b}[2Jus".into();
    assert_eq!(db_service::discovery::redis_database(&m, &r), None);
}

/// ARM is a peer: a host name it reports is dialled and sent as SNI only when it is a DNS name
/// under Azure's Redis suffixes, with nothing a URL parser could read as another host.
#[test]
fn discovered_endpoints_are_azure_redis_hosts() {
    let m = matcher(&["*"]);
    let hostile = [
        "my.redis.cache.windows.net:1@evil.example",
        "my.redis.cache.windows.net@evil.example",
        "evil.example",
        "redis.cache.windows.net.evil.example",
        "evilredis.cache.windows.net",
        "redis.cache.windows.net",
        "10.0.0.1",
        "[::1]",
        "my.redis.cache.windows.net/x",
        "my.redis.cache.windows.net?mode=cluster",
        "my.redis.cache.windows.net#x",
        "my.redis.cache.windows.net:6380",
        "my.redis.cache.windows.net\n",
        " my.redis.cache.windows.net",
        "",
    ];
    for host in hostile {
        let r = redis_resource(host, 6380, serde_json::json!({}));
        assert_eq!(
            db_service::discovery::redis_database(&m, &r),
            None,
            "cache at {host:?}"
        );
        let (cluster, d) = enterprise_resources(host, 10000);
        assert_eq!(
            db_service::discovery::enterprise_database(&m, &cluster, &d),
            None,
            "Enterprise at {host:?}"
        );
        assert!(
            db_service::discovery::redis_endpoint_host(host).is_err(),
            "{host:?}"
        );
    }
    // Port 0 and names the auth service would not register are skipped too.
    assert_eq!(
        db_service::discovery::redis_database(
            &m,
            &redis_resource("my.redis.cache.windows.net", 0, serde_json::json!({}))
        ),
        None
    );
    for name in ["../x", "a b", "x\ny", ".."] {
        let r = redis_resource(
            "my.redis.cache.windows.net",
            6380,
            serde_json::json!({"TeleportDatabaseName": name}),
        );
        assert_eq!(
            db_service::discovery::redis_database(&m, &r),
            None,
            "{name:?}"
        );
    }

    // Resource IDs become part of ARM URLs (listKeys): plain paths only.
    for id in [
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/Redis/r/../../../other/providers/Microsoft.Cache/Redis/x",
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/Redis/r?api-version=1#",
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/Redis/r%2F..",
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/Redis/r/",
        "/subscriptions/s/resourceGroups/g//providers/Microsoft.Cache/Redis/r",
    ] {
        let r = redis_resource_with_id(
            id,
            "my.redis.cache.windows.net",
            6380,
            serde_json::json!({"TeleportDatabaseName": "x"}),
        );
        assert_eq!(db_service::discovery::redis_database(&m, &r), None, "{id}");
    }

    // Azure's own names (any case, private endpoints, sovereign clouds) are kept, lowercase.
    for (host, want) in [
        ("My.Redis.Cache.Windows.Net", "my.redis.cache.windows.net"),
        (
            "my.privatelink.redis.cache.windows.net",
            "my.privatelink.redis.cache.windows.net",
        ),
        ("my.eastus.redis.azure.net", "my.eastus.redis.azure.net"),
        (
            "my.redis.cache.chinacloudapi.cn",
            "my.redis.cache.chinacloudapi.cn",
        ),
        ("localhost", "localhost"),
    ] {
        let db = db_service::discovery::redis_database(
            &m,
            &redis_resource(host, 6380, serde_json::json!({})),
        )
        .unwrap_or_else(|| panic!("{host}"));
        assert_eq!(db.host_port(), Some((want.to_string(), 6380)));
    }
    let (cluster, d) = enterprise_resources("e.eastus.redisenterprise.cache.azure.net", 10000);
    let db = db_service::discovery::enterprise_database(&m, &cluster, &d).unwrap();
    assert_eq!(
        db.spec.uri,
        "rediss://e.eastus.redisenterprise.cache.azure.net:10000?mode=cluster"
    );
}

/// Caches and Enterprise databases in a passing state (being created, deleted, ...) are not
/// announced, whatever the case ARM spells the state in; an Enterprise database is skipped
/// when its cluster is.
#[test]
fn resources_in_passing_states_are_skipped() {
    let m = matcher(&["*"]);
    let mut r = redis_resource("my.redis.cache.windows.net", 6380, serde_json::json!({}));
    assert!(db_service::discovery::redis_database(&m, &r).is_some());
    for state in ["Deleting", "creating", "DISABLED"] {
        r.properties.provisioning_state = state.into();
        assert!(
            db_service::discovery::redis_database(&m, &r).is_none(),
            "{state}"
        );
    }
    let (cluster, db) = enterprise_resources("e.eastus.redisenterprise.cache.azure.net", 10000);
    assert!(db_service::discovery::enterprise_database(&m, &cluster, &db).is_some());
    let mut creating = db.clone();
    creating.properties.provisioning_state = "Creating".into();
    assert!(db_service::discovery::enterprise_database(&m, &cluster, &creating).is_none());
    let mut deleting = cluster.clone();
    deleting.properties.provisioning_state = "deleting".into();
    assert!(db_service::discovery::enterprise_database(&m, &deleting, &db).is_none());
}
