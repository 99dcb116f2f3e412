//! azure-mint's clients and credentials against the Azure emulator (through its forward proxy).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use azure_emulator::{Emulator, EmulatorHandle, World};
use azure_mint::arm::{ArmClient, StaticBearer, ThrottlePolicy};
use azure_mint::credential::{
    self, DefaultChain, IdentityMinter, MintStrategy, DEFAULT_CHAIN_ERROR,
};
use azure_mint::http::HttpConfig;
use azure_mint::imds::{ImdsClient, ManagedIdentityId, Retry};
use azure_mint::{Cloud, Error, TokenCache};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const TELEPORT_CLIENT_ID: &str = "6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01";
const TELEPORT_PRINCIPAL_ID: &str = "7b3e6d1f-2c4e-4f90-8b8c-1d2e3f4a5b02";
const APP_CLIENT_ID: &str = "3194c5d7-82a4-4f56-a1e2-7d8e9fa0b108";

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml")
}

async fn start(page_size: Option<usize>) -> EmulatorHandle {
    let mut world = World::load(&fixture_path()).unwrap();
    if page_size.is_some() {
        world.fixture.page_size = page_size;
        world = World::new(world.fixture).unwrap();
    }
    Emulator::start(world).await.unwrap()
}

fn identity_id(rg: &str, name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}")
}

fn http(emu: &EmulatorHandle, vm: Option<&str>) -> HttpConfig {
    HttpConfig::with_proxy(emu.proxy_url(vm), emu.ca_pem().as_bytes().to_vec())
}

fn fast_retry() -> Retry {
    Retry {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

fn imds(emu: &EmulatorHandle, vm: Option<&str>) -> ImdsClient {
    ImdsClient::new(&http(emu, vm))
        .unwrap()
        .with_retry(fast_retry())
}

fn claims(jwt: &str) -> Value {
    let body = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap()
}

async fn arm_as_teleport(emu: &EmulatorHandle) -> ArmClient {
    let token = imds(emu, None)
        .token(
            "https://management.azure.com/",
            &ManagedIdentityId::ResourceId(identity_id("my-resource-group", "teleport-azure")),
        )
        .await
        .unwrap();
    ArmClient::new(
        &http(emu, None),
        Cloud::AzureCloud,
        Arc::new(StaticBearer(token.access_token)),
    )
    .unwrap()
}

#[tokio::test]
async fn imds_tokens_by_resource_id_client_id_and_object_id() {
    let emu = start(None).await;
    let client = imds(&emu, None);
    let id = identity_id("my-resource-group", "teleport-azure");
    for which in [
        ManagedIdentityId::ResourceId(id.clone()),
        ManagedIdentityId::ClientId(TELEPORT_CLIENT_ID.into()),
        ManagedIdentityId::ObjectId(TELEPORT_PRINCIPAL_ID.into()),
        ManagedIdentityId::System,
    ] {
        let t = client
            .token("https://management.azure.com/", &which)
            .await
            .unwrap();
        let c = claims(&t.access_token);
        assert_eq!(c["xms_mirid"], id.as_str());
        assert_eq!(c["oid"], TELEPORT_PRINCIPAL_ID);
        assert_eq!(c["appid"], TELEPORT_CLIENT_ID);
        assert_eq!(c["tid"], TENANT);
        assert_eq!(c["iss"], format!("https://sts.windows.net/{TENANT}/"));
        assert_eq!(c["aud"], "https://management.azure.com/");
        assert!(c["xms_az_rid"]
            .as_str()
            .unwrap()
            .ends_with("/virtualMachines/teleport-vm"));
        assert!(t.expires_on > 0);
        assert_eq!(t.client_id.as_deref(), Some(TELEPORT_CLIENT_ID));
    }
    // An identity on another VM: IMDS's 400, not retried.
    let err = client
        .token(
            "https://management.azure.com/",
            &ManagedIdentityId::ResourceId(identity_id("other-resource-group", "other-identity")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Imds { status: 400, ref message } if message == "Identity not found"),
        "{err}"
    );
    assert_eq!(emu.request_count("/metadata/identity/oauth2/token"), 5);

    // The other VM gets its own identity.
    let other = imds(&emu, Some("other-vm"))
        .token("https://vault.azure.net", &ManagedIdentityId::System)
        .await
        .unwrap();
    assert_eq!(
        claims(&other.access_token)["aud"],
        "https://vault.azure.net"
    );
    // A VM without identities.
    let none = imds(&emu, Some("app-vm"))
        .token("https://management.azure.com/", &ManagedIdentityId::System)
        .await
        .unwrap_err();
    assert!(matches!(none, Error::Imds { status: 400, .. }));
    let inst = imds(&emu, Some("other-vm")).instance().await.unwrap();
    assert_eq!(inst.name, "other-vm");
    assert_eq!(inst.resource_group_name, "other-resource-group");
    assert_eq!(inst.subscription_id, SUB);
}

#[tokio::test]
async fn imds_retries_transient_failures_and_rejects_malformed_bodies() {
    let emu = start(None).await;
    let client = imds(&emu, None);
    emu.fail_next("/metadata/identity/oauth2/token", 2, 503, None);
    emu.fail_next("/metadata/identity/oauth2/token", 1, 410, None);
    let t = client
        .token("https://management.azure.com/", &ManagedIdentityId::System)
        .await
        .unwrap();
    assert!(!t.access_token.is_empty());
    assert_eq!(emu.request_count("/metadata/identity/oauth2/token"), 4);

    // Always failing: gives up after max_attempts with the last status.
    emu.fail_next("/metadata/identity/oauth2/token", 10, 429, None);
    let err = client
        .token("https://management.azure.com/", &ManagedIdentityId::System)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Imds { status: 429, .. }), "{err}");
    assert_eq!(emu.request_count("/metadata/identity/oauth2/token"), 8);
    // Drain the remaining faults.
    for _ in 0..6 {
        let _ = client.token("r", &ManagedIdentityId::System).await;
    }

    for (body, what) in [
        ("{not json", "not JSON"),
        (r#"{"access_token": 5, "expires_on": "1"}"#, "access_token"),
        (
            r#"{"access_token": "x", "expires_on": "soon"}"#,
            "expires_on",
        ),
        (r#"{"access_token": "x"}"#, "expires_on"),
        ("[]", "access_token"),
    ] {
        emu.fail_next("/metadata/identity/oauth2/token", 1, 200, Some(body));
        let err = client
            .token("https://management.azure.com/", &ManagedIdentityId::System)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Malformed {
                    service: "IMDS",
                    ..
                }
            ),
            "{body}: {err}"
        );
        assert!(err.to_string().contains(what), "{body}: {err}");
    }
    assert!(matches!(
        client.attested_document(&"n".repeat(33)).await,
        Err(Error::InvalidArgument(_))
    ));
    let doc = client
        .attested_document("0123456789abcdefABCDEF0123456789")
        .await
        .unwrap();
    assert_eq!(doc.encoding, "pkcs7");
    let der = base64::engine::general_purpose::STANDARD
        .decode(&doc.signature)
        .unwrap();
    assert_eq!(der.first(), Some(&0x30));
    let needle = b"0123456789abcdefABCDEF0123456789";
    assert!(
        der.windows(needle.len()).any(|w| w == needle),
        "nonce inside the signed content"
    );
    emu.fail_next(
        "/metadata/attested/document",
        1,
        200,
        Some(r#"{"encoding":"base64","signature":"x"}"#),
    );
    assert!(matches!(
        client.attested_document("abc").await,
        Err(Error::Malformed { .. })
    ));
}

#[tokio::test]
async fn arm_lists_are_filtered_paged_and_typed() {
    let emu = start(Some(1)).await;
    let arm = arm_as_teleport(&emu).await;

    let subs = arm.list_subscriptions().await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].subscription_id, SUB);
    assert_eq!(subs[0].tenant_id, TENANT);

    // Page size 1: two pages, only my-resource-group's VMs.
    let before = emu.request_count("/providers/Microsoft.Compute/virtualMachines");
    let vms = arm.list_vms(SUB).await.unwrap();
    let mut names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["app-vm", "teleport-vm"]);
    assert_eq!(
        emu.request_count("/providers/Microsoft.Compute/virtualMachines") - before,
        2
    );
    let in_group = arm
        .list_vms_in_group(SUB, "my-resource-group")
        .await
        .unwrap();
    assert_eq!(in_group.len(), 2);

    let vm = vms.iter().find(|v| v.name == "teleport-vm").unwrap();
    let attached = &vm.identity.as_ref().unwrap().user_assigned_identities;
    assert_eq!(
        attached[&identity_id("my-resource-group", "teleport-azure")].client_id,
        TELEPORT_CLIENT_ID
    );
    let got = arm.get_vm(&vm.id).await.unwrap();
    assert_eq!(got.properties.vm_id, "8c4f7e20-3d5f-4a01-9c9d-2e3f4a5b6c03");
    let found = arm
        .find_vm_by_vm_id(SUB, "8C4F7E20-3D5F-4A01-9C9D-2E3F4A5B6C03")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.name, "teleport-vm");
    assert!(arm
        .find_vm_by_vm_id(SUB, "2083b4c6-7193-4e45-90d1-6c7d8e9fa007")
        .await
        .unwrap()
        .is_none());

    let ident = arm
        .get_identity(&identity_id("my-resource-group", "teleport-azure"))
        .await
        .unwrap();
    assert_eq!(ident.properties.principal_id, TELEPORT_PRINCIPAL_ID);

    let redis = arm.list_redis(SUB).await.unwrap();
    assert_eq!(redis.len(), 1);
    assert_eq!(redis[0].properties.ssl_port, Some(6380));
    assert_eq!(redis[0].location, "East US");
    assert_eq!(redis[0].tags["env"], "dev");
    let same = arm.get_redis(&redis[0].id).await.unwrap();
    assert_eq!(
        same.properties.host_name,
        "my-redis.redis.cache.windows.net"
    );
    assert_eq!(
        arm.list_redis_in_group(SUB, "my-resource-group")
            .await
            .unwrap()
            .len(),
        1
    );
    let keys = arm.redis_keys(&redis[0].id).await.unwrap();
    assert_eq!(keys.preferred(), Some("cHJpbWFyeS1rZXktb2YtbXktcmVkaXM="));

    // Key rotation shows up on the next listKeys.
    let (primary, _) = emu.rotate_redis_keys("my-redis").unwrap();
    assert_eq!(
        arm.redis_keys(&redis[0].id).await.unwrap().preferred(),
        Some(primary.as_str())
    );

    let clusters = arm.list_redis_enterprise(SUB).await.unwrap();
    assert_eq!(clusters.len(), 1);
    assert_eq!(
        arm.list_redis_enterprise_in_group(SUB, "my-resource-group")
            .await
            .unwrap(),
        clusters
    );
    assert!(clusters[0]
        .properties
        .host_name
        .ends_with(".redisenterprise.cache.azure.net"));
    let dbs = arm
        .list_redis_enterprise_databases(&clusters[0].id)
        .await
        .unwrap();
    assert_eq!(dbs.len(), 1);
    assert_eq!(dbs[0].properties.port, Some(10000));
    assert_eq!(dbs[0].properties.clustering_policy, "OSSCluster");
    let ekeys = arm.redis_enterprise_keys(&dbs[0].id).await.unwrap();
    assert_eq!(ekeys.preferred(), Some("ZW50ZXJwcmlzZS1wcmltYXJ5"));

    // Outside the role assignments: typed AuthorizationFailed.
    let err = arm
        .get_identity(&identity_id("other-resource-group", "other-identity"))
        .await
        .unwrap_err();
    assert!(err.arm().unwrap().is_authorization_failed(), "{err}");
    let err = arm
        .list_vms_in_group(SUB, "other-resource-group")
        .await
        .unwrap_err();
    assert_eq!(err.arm().unwrap().status, 403);
    // Missing resource in a readable group: ResourceNotFound.
    let err = arm
        .get_vm(&format!("/subscriptions/{SUB}/resourceGroups/my-resource-group/providers/Microsoft.Compute/virtualMachines/nope"))
        .await
        .unwrap_err();
    assert_eq!(err.arm().unwrap().code, "ResourceNotFound");
    assert!(matches!(
        arm.get_vm("not-an-id").await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn second_identity_sees_only_its_group() {
    let emu = start(None).await;
    let token = imds(&emu, Some("other-vm"))
        .token(
            "https://management.core.windows.net/",
            &ManagedIdentityId::ResourceId(identity_id("other-resource-group", "other-identity")),
        )
        .await
        .unwrap();
    let arm = ArmClient::new(
        &http(&emu, Some("other-vm")),
        Cloud::AzureCloud,
        Arc::new(StaticBearer(token.access_token)),
    )
    .unwrap();
    assert_eq!(arm.list_subscriptions().await.unwrap().len(), 1);
    let vms = arm.list_vms(SUB).await.unwrap();
    assert_eq!(
        vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["other-vm"]
    );
    let ident = arm
        .get_identity(&identity_id("other-resource-group", "other-identity"))
        .await
        .unwrap();
    assert_eq!(
        ident.properties.client_id,
        "0e6192a4-5f71-4c23-9ebf-4a5b6c7d8e05"
    );
    let redis = arm.list_redis(SUB).await.unwrap();
    assert_eq!(redis.len(), 1);
    assert_eq!(redis[0].name, "other-redis");
    // Reader: no listKeys, and nothing of the other group.
    let err = arm.redis_keys(&redis[0].id).await.unwrap_err();
    assert!(err.arm().unwrap().is_authorization_failed(), "{err}");
    assert!(arm.list_redis_enterprise(SUB).await.unwrap().is_empty());
    let err = arm
        .get_identity(&identity_id("my-resource-group", "teleport-azure"))
        .await
        .unwrap_err();
    assert!(err.arm().unwrap().is_authorization_failed(), "{err}");
}

#[tokio::test]
async fn arm_throttling_bad_tokens_and_hostile_bodies() {
    let emu = start(None).await;
    let arm = arm_as_teleport(&emu).await;
    emu.fail_next("/providers/Microsoft.Cache/redis", 1, 429, None);
    assert_eq!(arm.list_redis(SUB).await.unwrap().len(), 1);

    let impatient = arm_as_teleport(&emu).await.with_throttle(ThrottlePolicy {
        max_retries: 0,
        max_wait: Duration::from_secs(1),
    });
    emu.fail_next("/providers/Microsoft.Cache/redis", 1, 429, None);
    assert!(matches!(
        impatient.list_redis(SUB).await,
        Err(Error::Throttled {
            retry_after: Some(_)
        })
    ));

    for (body, what) in [
        (r#"{"value": {}}"#, "not an array"),
        (r#"{"nope": []}"#, "without"),
        (
            r#"{"value": [], "nextLink": "https://evil.example.com/steal"}"#,
            "nextLink leaves",
        ),
        (r#"{"value": [{"id": 1}]}"#, "invalid type"),
        ("<html>", "not JSON"),
    ] {
        emu.fail_next(
            "/providers/Microsoft.Compute/virtualMachines",
            1,
            200,
            Some(body),
        );
        let err = arm.list_vms(SUB).await.unwrap_err();
        assert!(
            matches!(err, Error::Malformed { service: "ARM", .. }),
            "{body}: {err}"
        );
        assert!(err.to_string().contains(what), "{body}: {err}");
    }
    emu.fail_next(
        "/providers/Microsoft.Compute/virtualMachines",
        1,
        500,
        Some("truncated {"),
    );
    let err = arm.list_vms(SUB).await.unwrap_err();
    assert_eq!(err.arm().unwrap().status, 500);
    assert!(err.is_retryable());

    let forged = ArmClient::new(
        &http(&emu, None),
        Cloud::AzureCloud,
        Arc::new(StaticBearer("a.b.c".into())),
    )
    .unwrap();
    let err = forged.list_subscriptions().await.unwrap_err();
    assert_eq!(err.arm().unwrap().code, "InvalidAuthenticationToken");

    emu.expire_issued_tokens();
    let err = arm.list_subscriptions().await.unwrap_err();
    assert_eq!(err.arm().unwrap().code, "ExpiredAuthenticationToken");

    emu.set_token_lifetime(Duration::ZERO);
    let expired = arm_as_teleport(&emu).await;
    let err = expired.list_subscriptions().await.unwrap_err();
    assert_eq!(err.arm().unwrap().code, "ExpiredAuthenticationToken");
    assert!(err.arm().unwrap().is_authentication_failed());
}

/// A federated token of the emulator's AKS issuer for `sub` and `aud`, valid for an hour,
/// written as AKS projects it, to `dir/name`.
fn federated_token(dir: &Path, name: &str, sub: &str, aud: &str) -> PathBuf {
    let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let assertion = format!(
        "{}.{}.c2ln",
        enc(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        enc(
            serde_json::json!({"iss": "https://oidc.aks.example.com/teleport/", "sub": sub, "aud": aud, "exp": exp})
        )
    );
    let path = dir.join(name);
    std::fs::write(&path, assertion).unwrap();
    path
}

/// A Key Vault token for teleport-azure by workload identity, exchanging the federated token
/// in `token_file`.
async fn vault_token_by_workload_identity(
    cfg: &HttpConfig,
    token_file: PathBuf,
) -> azure_core::Result<azure_core::credentials::AccessToken> {
    credential::workload_identity(
        Some(TELEPORT_CLIENT_ID.into()),
        Some(TENANT.into()),
        Some(token_file),
        cfg,
        Cloud::AzureCloud,
    )
    .unwrap()
    .get_token(&["https://vault.azure.net/.default"], None)
    .await
}

#[tokio::test]
async fn sdk_credentials_through_the_emulator() {
    let emu = start(None).await;
    let cfg = http(&emu, None);

    // Managed identity (azure_identity, IMDS with msi_res_id) feeding the ARM client.
    let mi = credential::managed_identity(
        &ManagedIdentityId::ResourceId(identity_id("my-resource-group", "teleport-azure")),
        &cfg,
        Cloud::AzureCloud,
    )
    .unwrap();
    let arm = ArmClient::with_credential(&cfg, Cloud::AzureCloud, mi).unwrap();
    assert_eq!(arm.list_vms(SUB).await.unwrap().len(), 2);

    // Client secret (Entra client-credentials grant): Reader on the whole subscription.
    let cs = credential::client_secret(
        TENANT,
        APP_CLIENT_ID,
        "app-secret-value",
        &cfg,
        Cloud::AzureCloud,
    )
    .unwrap();
    let arm = ArmClient::with_credential(&cfg, Cloud::AzureCloud, cs).unwrap();
    assert_eq!(arm.list_vms(SUB).await.unwrap().len(), 3);
    let bad =
        credential::client_secret(TENANT, APP_CLIENT_ID, "wrong", &cfg, Cloud::AzureCloud).unwrap();
    let err = bad
        .get_token(&["https://management.azure.com/.default"], None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");

    // Workload identity: a federated token exchanged for teleport-azure.
    let dir = tempfile::tempdir().unwrap();
    let token_file = federated_token(
        dir.path(),
        "token",
        "system:serviceaccount:teleport:teleport",
        "api://AzureADTokenExchange",
    );
    let t = vault_token_by_workload_identity(&cfg, token_file.clone())
        .await
        .unwrap();
    let c = claims(t.token.secret());
    assert_eq!(c["aud"], "https://vault.azure.net");
    assert_eq!(
        c["xms_mirid"],
        identity_id("my-resource-group", "teleport-azure")
    );

    // A federated token from another subject or for another audience is refused.
    for (name, sub, aud) in [
        (
            "intruder",
            "system:serviceaccount:default:intruder",
            "api://AzureADTokenExchange",
        ),
        (
            "other-audience",
            "system:serviceaccount:teleport:teleport",
            "api://SomethingElse",
        ),
    ] {
        let other = federated_token(dir.path(), name, sub, aud);
        let err = vault_token_by_workload_identity(&cfg, other)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("AADSTS7002"), "{err}");
    }

    // AKS minting: client ID resolved through ARM, then workload identity, through the cache.
    let minter = IdentityMinter::new(
        MintStrategy::Aks {
            arm: Arc::new(arm_as_teleport(&emu).await),
            tenant_id: TENANT.into(),
            token_file,
        },
        cfg.clone(),
        Cloud::AzureCloud,
    );
    let cache = TokenCache::new(Arc::new(minter));
    let id = identity_id("my-resource-group", "teleport-azure");
    let t1 = cache.get(&id, "https://redis.azure.com").await.unwrap();
    let t2 = cache.get(&id, "https://redis.azure.com").await.unwrap();
    assert_eq!(t1.secret, t2.secret);
    assert_eq!(claims(&t1.secret)["aud"], "https://redis.azure.com");

    // VM minting: IMDS with the identity's resource ID, for a data-plane resource.
    let vm_cache = TokenCache::new(Arc::new(IdentityMinter::new(
        MintStrategy::Vm,
        cfg.clone(),
        Cloud::AzureCloud,
    )));
    let kv = vm_cache.get(&id, "https://vault.azure.net").await.unwrap();
    assert_eq!(claims(&kv.secret)["aud"], "https://vault.azure.net");
    assert!(vm_cache
        .get(
            &identity_id("other-resource-group", "other-identity"),
            "https://vault.azure.net"
        )
        .await
        .is_err());
}

#[tokio::test]
async fn default_chain_order_and_error_text() {
    let emu = start(None).await;
    // A VM without identities and no environment: every source fails, each is named.
    let chain = DefaultChain::from_vars(|_| None, &http(&emu, Some("app-vm")), Cloud::AzureCloud);
    let err = chain
        .token(&["https://management.azure.com/.default"])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(DEFAULT_CHAIN_ERROR), "{text}");
    for name in [
        "EnvironmentCredential",
        "WorkloadIdentityCredential",
        "ManagedIdentityCredential",
    ] {
        assert!(text.contains(&format!("\n\t{name}: ")), "{text}");
    }
    let env_pos = text.find("EnvironmentCredential").unwrap();
    let mi_pos = text.find("ManagedIdentityCredential").unwrap();
    assert!(env_pos < mi_pos);

    // Environment first when it is set.
    let vars = |k: &str| match k {
        "AZURE_TENANT_ID" => Some(TENANT.to_string()),
        "AZURE_CLIENT_ID" => Some(APP_CLIENT_ID.to_string()),
        "AZURE_CLIENT_SECRET" => Some("app-secret-value".to_string()),
        _ => None,
    };
    let chain = DefaultChain::from_vars(vars, &http(&emu, None), Cloud::AzureCloud);
    let t = chain
        .token(&["https://management.azure.com/.default"])
        .await
        .unwrap();
    assert_eq!(claims(t.token.secret())["appid"], APP_CLIENT_ID);

    // Managed identity last: the default VM's single identity.
    let chain = DefaultChain::from_vars(|_| None, &http(&emu, None), Cloud::AzureCloud);
    let t = chain
        .token(&["https://management.azure.com/.default"])
        .await
        .unwrap();
    assert_eq!(claims(t.token.secret())["appid"], TELEPORT_CLIENT_ID);
}
