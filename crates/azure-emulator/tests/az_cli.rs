//! The proof that the emulator is faithful: the real `az` CLI runs against it.
//!
//! `az` is found through `AZ_CLI`, else `<workspace>/target/az-venv/bin/az` (`cargo xtask test` creates
//! that virtualenv). A missing `az` fails these tests: they are never skipped.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use azure_emulator::{Emulator, EmulatorHandle};
use serde_json::Value;

const SUB: &str = "00000000-0000-0000-0000-000000000000";

fn az_path() -> PathBuf {
    if let Some(p) = std::env::var_os("AZ_CLI") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/az-venv/bin/az");
    assert!(
        p.exists(),
        "the az CLI is needed: set AZ_CLI or create the virtualenv \
         (python3 -m venv target/az-venv && target/az-venv/bin/pip install azure-cli; `cargo xtask test` does it); \
         looked for {}",
        p.display()
    );
    p
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml")
}

fn identity_id(rg: &str, name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}")
}

/// One az "user": a VM of the emulator and its own AZURE_CONFIG_DIR.
struct Az {
    bin: PathBuf,
    env: Vec<(String, String)>,
    config: tempfile::TempDir,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Az {
    fn new(emu: &EmulatorHandle, vm: Option<&str>) -> Self {
        Self {
            bin: az_path(),
            env: emu.try_env(vm).unwrap(),
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `az` with the words of `line` (none holds a space).
    async fn run(&self, line: &str) -> Out {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(line.split_whitespace()).args(["--output", "json"]);
        for k in azure_emulator::CLIENT_ENV_TO_CLEAR {
            cmd.env_remove(k);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AZURE_CONFIG_DIR", self.config.path())
            .env("AZURE_CORE_COLLECT_TELEMETRY", "0")
            .env("AZURE_CORE_NO_COLOR", "1")
            .env("AZURE_CORE_ONLY_SHOW_ERRORS", "1")
            .kill_on_drop(true);
        let out = cmd.output().await.unwrap();
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn json(&self, line: &str) -> Value {
        let out = self.run(line).await;
        assert!(out.ok, "az {line} failed:\n{}\n{}", out.stdout, out.stderr);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("az {line} printed no JSON ({e}):\n{}", out.stdout))
    }

    /// `az login --identity` as the user-assigned identity `id`.
    async fn login(&self, id: &str) -> Value {
        self.json(&format!("login --identity --resource-id {id}"))
            .await
    }

    /// Runs `line`, which ARM refuses with AuthorizationFailed.
    async fn denied(&self, line: &str) {
        let out = self.run(line).await;
        assert!(!out.ok, "az {line} succeeded: {}", out.stdout);
        assert!(
            out.stderr.contains("AuthorizationFailed"),
            "az {line}: {}",
            out.stderr
        );
    }
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_as_teleport_azure_sees_its_resource_group() {
    let emu = Emulator::start_fixture(&fixture()).await.unwrap();
    let az = Az::new(&emu, None);
    let id = identity_id("my-resource-group", "teleport-azure");

    let login = az.login(&id).await;
    let account = &login[0];
    assert_eq!(account["id"], SUB);
    assert_eq!(account["tenantId"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(
        account["user"]["assignedIdentityInfo"],
        format!("MSIResource-{id}")
    );
    assert_eq!(account["user"]["type"], "servicePrincipal");

    let show = az.json("account show").await;
    assert_eq!(show["id"], SUB);
    assert_eq!(show["name"], "Azure subscription 1");
    assert_eq!(show["user"]["name"], "userAssignedIdentity");

    let vms = az.json("vm list").await;
    assert_eq!(names(&vms), ["app-vm", "teleport-vm"]);
    for vm in vms.as_array().unwrap() {
        assert_eq!(vm["resourceGroup"], "my-resource-group");
    }
    let teleport_vm = vms
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "teleport-vm")
        .unwrap();
    assert_eq!(teleport_vm["vmId"], "8c4f7e20-3d5f-4a01-9c9d-2e3f4a5b6c03");
    assert!(teleport_vm["identity"]["userAssignedIdentities"][&id].is_object());

    let ident = az
        .json("identity show -g my-resource-group -n teleport-azure")
        .await;
    assert_eq!(ident["id"], id);
    assert_eq!(ident["clientId"], "6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01");
    assert_eq!(ident["principalId"], "7b3e6d1f-2c4e-4f90-8b8c-1d2e3f4a5b02");

    let redis = az.json("redis list").await;
    assert_eq!(names(&redis), ["my-redis"]);
    assert_eq!(redis[0]["hostName"], "my-redis.redis.cache.windows.net");
    assert_eq!(redis[0]["sslPort"], 6380);

    let keys = az
        .json("redis list-keys -g my-resource-group -n my-redis")
        .await;
    assert_eq!(keys["primaryKey"], "cHJpbWFyeS1rZXktb2YtbXktcmVkaXM=");
    assert_eq!(keys["secondaryKey"], "c2Vjb25kYXJ5LWtleS1vZi1teS1yZWRpcw==");

    // Outside its resource group: refused with ARM's AuthorizationFailed.
    az.denied("identity show -g other-resource-group -n other-identity")
        .await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_as_second_identity_sees_only_its_group() {
    let emu = Emulator::start_fixture(&fixture()).await.unwrap();
    let az = Az::new(&emu, Some("other-vm"));
    let id = identity_id("other-resource-group", "other-identity");

    let login = az.login(&id).await;
    assert_eq!(login[0]["id"], SUB);
    let show = az.json("account show").await;
    assert_eq!(
        show["user"]["assignedIdentityInfo"],
        format!("MSIResource-{id}")
    );

    let vms = az.json("vm list").await;
    assert_eq!(names(&vms), ["other-vm"]);
    let ident = az
        .json("identity show -g other-resource-group -n other-identity")
        .await;
    assert_eq!(ident["clientId"], "0e6192a4-5f71-4c23-9ebf-4a5b6c7d8e05");
    let redis = az.json("redis list").await;
    assert_eq!(names(&redis), ["other-redis"]);

    // Reader cannot read keys, and cannot see the other group at all.
    az.denied("redis list-keys -g other-resource-group -n other-redis")
        .await;
    az.denied("redis list-keys -g my-resource-group -n my-redis")
        .await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_with_the_app_service_protocol() {
    let emu = Emulator::start_fixture(&fixture()).await.unwrap();
    let mut az = Az::new(&emu, None);
    az.env = emu.app_service_env(None).unwrap();
    let id = identity_id("my-resource-group", "teleport-azure");
    let login = az.login(&id).await;
    assert_eq!(login[0]["id"], SUB);
    assert_eq!(emu.request_count("169.254.169.254/msi/token"), 1);
    assert_eq!(emu.request_count("/metadata/identity/oauth2/token"), 0);
    let vms = az.json("vm list").await;
    assert_eq!(names(&vms), ["app-vm", "teleport-vm"]);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_with_a_service_principal_secret() {
    let emu = Emulator::start_fixture(&fixture()).await.unwrap();
    let az = Az::new(&emu, None);
    let app = "3194c5d7-82a4-4f56-a1e2-7d8e9fa0b108";
    let tenant = "11111111-2222-3333-4444-555555555555";
    let bad = az
        .run(&format!(
            "login --service-principal -u {app} -p wrong --tenant {tenant}"
        ))
        .await;
    assert!(!bad.ok);
    assert!(bad.stderr.contains("AADSTS7000215"), "{}", bad.stderr);
    let login = az
        .json(&format!(
            "login --service-principal -u {app} -p app-secret-value --tenant {tenant}"
        ))
        .await;
    assert_eq!(login[0]["user"]["name"], app);
    // Reader on the whole subscription: every VM.
    let vms = az.json("vm list").await;
    assert_eq!(names(&vms), ["app-vm", "other-vm", "teleport-vm"]);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_cannot_use_an_identity_not_attached_to_its_vm() {
    let emu = Emulator::start_fixture(&fixture()).await.unwrap();
    // The default VM holds teleport-azure only.
    let az = Az::new(&emu, None);
    let id = identity_id("other-resource-group", "other-identity");
    let out = az
        .run(&format!("login --identity --resource-id {id}"))
        .await;
    assert!(
        !out.ok,
        "login with a foreign identity succeeded: {}",
        out.stdout
    );
    // IMDS's own error reaches the user.
    assert!(out.stderr.contains("Identity not found"), "{}", out.stderr);
    emu.shutdown().await;
}

/// `az redis regenerate-keys` as an operator rotates keys: one key at a time, the other kept, and
/// `list-keys` agreeing; refused where the identity holds no role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_redis_regenerate_keys() {
    let emu = Emulator::start_fixture(&fixture()).await.unwrap();
    let az = Az::new(&emu, None);
    let id = identity_id("my-resource-group", "teleport-azure");
    az.login(&id).await;
    let cache = "-g my-resource-group -n my-redis";
    let regenerate = |kind: &str| format!("redis regenerate-keys {cache} --key-type {kind}");
    let list = format!("redis list-keys {cache}");

    let keys = az.json(&regenerate("Primary")).await;
    let primary = keys["primaryKey"].as_str().unwrap().to_string();
    assert_ne!(primary, "cHJpbWFyeS1rZXktb2YtbXktcmVkaXM=");
    assert_eq!(keys["secondaryKey"], "c2Vjb25kYXJ5LWtleS1vZi1teS1yZWRpcw==");
    assert_eq!(az.json(&list).await, keys);

    let keys = az.json(&regenerate("Secondary")).await;
    assert_eq!(keys["primaryKey"], primary.as_str());
    assert_ne!(keys["secondaryKey"], "c2Vjb25kYXJ5LWtleS1vZi1teS1yZWRpcw==");
    assert_eq!(az.json(&list).await, keys);

    // other-identity is a Reader of its own group: it may not rotate other-redis's keys.
    let other = Az::new(&emu, Some("other-vm"));
    other
        .login(&identity_id("other-resource-group", "other-identity"))
        .await;
    other
        .denied("redis regenerate-keys -g other-resource-group -n other-redis --key-type Primary")
        .await;
    emu.shutdown().await;
}
