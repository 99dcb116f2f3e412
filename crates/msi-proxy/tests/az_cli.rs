//! Real clients through the proxy: the `az` CLI (`AZ_CLI`, or `target/az-venv/bin/az` of the
//! workspace) and the Azure SDK for JavaScript (`AZURE_JS_SDK`, or `target/azure-js/node_modules`),
//! both installed by `cargo xtask deps`. Skipped (with a message) when not installed and not named;
//! a named one that is missing fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{IDENTITY, SUB, TENANT};
use http::{Request, Response};
use msi_proxy::{verify_local_token, MsiProxy, Upstream, UpstreamError};

#[derive(Default)]
struct Arm {
    seen: Mutex<Vec<(String, String, String)>>,
}

#[async_trait::async_trait]
impl Upstream for Arm {
    async fn forward(&self, req: Request<Bytes>) -> Result<Response<Bytes>, UpstreamError> {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.seen
            .lock()
            .unwrap()
            .push((req.method().to_string(), req.uri().to_string(), auth));
        let arm = req.uri().host() == Some("management.azure.com");
        let body = common::arm_body(if arm { req.uri().path() } else { "" });
        Ok(common::json_response(&body))
    }
}

fn az_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AZ_CLI") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/az-venv/bin/az");
    p.exists().then_some(p)
}

fn js_sdk_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AZURE_JS_SDK") {
        let p = PathBuf::from(p);
        assert!(
            p.join("@azure/identity").exists(),
            "AZURE_JS_SDK={} has no @azure/identity: run cargo xtask deps",
            p.display()
        );
        return Some(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/azure-js/node_modules");
    p.join("@azure/identity").exists().then_some(p)
}

/// Variables of the test machine that would point clients at other proxies or CAs: removed so
/// a client has only what the proxy exports.
const INHERITED: &[&str] = msi_proxy::CLIENT_SETTINGS;

/// Runs `cmd` with `env` as its only proxy, CA and identity settings; fails after two minutes.
async fn run(mut cmd: tokio::process::Command, env: &[(String, String)]) -> std::process::Output {
    cmd.kill_on_drop(true);
    for k in INHERITED {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("client timed out")
        .unwrap()
}

async fn az(
    az: &PathBuf,
    env: &[(String, String)],
    config_dir: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(az);
    cmd.args(args)
        .env("AZURE_CONFIG_DIR", config_dir)
        .env("AZURE_CORE_COLLECT_TELEMETRY", "0")
        .env("AZURE_CORE_NO_COLOR", "1");
    run(cmd, env).await
}

async fn start(dir: &tempfile::TempDir) -> (MsiProxy, Arc<Arm>, pki::KeyPair) {
    let key = pki::generate_key().unwrap();
    let arm = Arc::new(Arm::default());
    let config = common::config(&key, 1, dir.path().join("keys/azure-cli-localca.pem"));
    let proxy = MsiProxy::start(config, arm.clone()).await.unwrap();
    (proxy, arm, key)
}

fn check_login(out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("az login stdout:\n{stdout}\naz login stderr:\n{stderr}");
    assert!(out.status.success(), "az failed: {stdout}\n{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(v[0]["id"], SUB, "{v}");
    assert_eq!(v[0]["tenantId"], TENANT, "{v}");
    assert_eq!(v[0]["user"]["type"], "servicePrincipal", "{v}");
    assert_eq!(
        v[0]["user"]["assignedIdentityInfo"],
        format!("MSIResource-{IDENTITY}"),
        "{v}"
    );
}

/// A logged-in `az`: its binary, configuration and environment, and the proxy it went through.
struct Login {
    bin: PathBuf,
    cfg: PathBuf,
    env: Vec<(String, String)>,
    arm: Arc<Arm>,
    key: pki::KeyPair,
    _proxy: MsiProxy,
    _dir: tempfile::TempDir,
}

/// Starts the proxy and runs `az login --identity` with the proxy's variables that `keep`
/// keeps; checks the login. `None` (skipped) without an az CLI.
async fn login(keep: fn(&str) -> bool) -> Option<Login> {
    let Some(bin) = az_path() else {
        eprintln!("skipped: no az CLI (set AZ_CLI or run cargo xtask test)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, arm, key) = start(&dir).await;
    let cfg = dir.path().join("az");
    let env: Vec<_> = proxy.env().into_iter().filter(|(k, _)| keep(k)).collect();
    let out = az(
        &bin,
        &env,
        &cfg,
        &["login", "--identity", "--resource-id", IDENTITY],
    )
    .await;
    check_login(&out);
    Some(Login {
        bin,
        cfg,
        env,
        arm,
        key,
        _proxy: proxy,
        _dir: dir,
    })
}

#[tokio::test]
async fn real_az_login_with_the_app_service_protocol() {
    let Some(l) = login(|_| true).await else {
        return;
    };
    let (az_bin, cfg, env, arm, key) = (&l.bin, &l.cfg, &l.env, &l.arm, &l.key);
    {
        let seen = arm.seen.lock().unwrap();
        let (method, uri, auth) = seen
            .iter()
            .find(|(_, u, _)| u.starts_with("https://management.azure.com/subscriptions?"))
            .unwrap_or_else(|| panic!("no ARM call: {seen:?}"));
        assert_eq!(method, "GET");
        assert!(uri.contains("api-version="), "{uri}");
        let claims =
            verify_local_token(auth.strip_prefix("Bearer ").unwrap(), &key.public_key_der).unwrap();
        assert_eq!(claims.aud, "https://management.core.windows.net/");
        assert_eq!(claims.sub, IDENTITY);
    }

    // a later command uses a fresh token from the endpoint and reaches ARM
    let out = az(az_bin, env, cfg, &["vm", "list", "-o", "json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!([]));
    assert!(arm
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|(_, u, _)| u.contains(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines"
        ))));
}

/// Only the proxy and CA variables: az falls back to IMDS at 169.254.169.254 via HTTP_PROXY.
fn imds_only(k: &str) -> bool {
    !k.starts_with("IDENTITY_") && !k.starts_with("MSI_")
}

#[tokio::test]
async fn real_az_login_through_imds_over_http_proxy() {
    if let Some(l) = login(imds_only).await {
        assert!(!l.arm.seen.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn real_az_login_with_msi_endpoint_and_secret() {
    // MSI_ENDPOINT + MSI_SECRET only: MSAL's Azure ML protocol against the legacy endpoint
    // (no HTTP_PROXY either, so a silent fallback to IMDS could not succeed)
    let keep = |k: &str| !k.starts_with("IDENTITY_") && !k.eq_ignore_ascii_case("http_proxy");
    if let Some(l) = login(keep).await {
        assert!(!l.arm.seen.lock().unwrap().is_empty());
    }
}

/// The Azure SDK for JavaScript (`@azure/identity` + `@azure/core-rest-pipeline` under Node):
/// a token from the App Service endpoint, or from IMDS through `HTTP_PROXY` (its credentials),
/// and an ARM call through `HTTPS_PROXY` trusting the local CA by `NODE_EXTRA_CA_CERTS`.
#[tokio::test]
async fn javascript_sdk_through_the_proxy() {
    let Some(modules) = js_sdk_path() else {
        eprintln!("skipped: no @azure/identity (set AZURE_JS_SDK or run cargo xtask deps)");
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/azure_sdk.js");
    let dir = tempfile::tempdir().unwrap();
    let (proxy, arm, key) = start(&dir).await;
    let app_service = proxy.env();
    let imds: Vec<_> = proxy
        .env()
        .into_iter()
        .filter(|(k, _)| imds_only(k))
        .collect();
    for (mode, env) in [("app service", app_service), ("imds", imds)] {
        let before = arm.seen.lock().unwrap().len();
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(&script).arg(SUB).env("NODE_PATH", &modules);
        let out = run(cmd, &env).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{mode}: {stderr}");
        let seen = arm.seen.lock().unwrap();
        assert_eq!(seen.len(), before + 1, "{mode}: {seen:?}");
        let (method, uri, auth) = &seen[before];
        assert_eq!(method, "GET");
        assert!(
            uri.starts_with(&format!(
                "https://management.azure.com/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines?"
            )),
            "{uri}"
        );
        let claims =
            verify_local_token(auth.strip_prefix("Bearer ").unwrap(), &key.public_key_der).unwrap();
        assert_eq!(claims.sub, IDENTITY, "{mode}");
    }
}
