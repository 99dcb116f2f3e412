//! Azure CLI access end to end, as the guide walks it: an app service on the
//! emulator's VM holding `teleport-azure`, RBAC, `tsh apps login`, `tsh az`,
//! `tsh proxy azure` with the real az CLI and the Azure SDKs for Python,
//! JavaScript and Rust, each with the printed exports alone.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::*;

const PASSWORD: &str = "correct horse battery staple";
const TELEPORT_AZURE: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure";

fn az_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("AZ_CLI") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/az-venv/bin/az");
    assert!(
        p.exists(),
        "the az CLI is missing: cargo xtask test installs it ({})",
        p.display()
    );
    p
}

/// The Azure SDK for JavaScript (`AZURE_JS_SDK`, set by cargo xtask, or the
/// folder `cargo xtask deps` installs): its `node_modules`.
fn js_sdk() -> PathBuf {
    let p = std::env::var_os("AZURE_JS_SDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/azure-js/node_modules")
        });
    assert!(
        p.join("@azure/identity").exists(),
        "the Azure SDK for JavaScript is missing: cargo xtask deps installs it ({})",
        p.display()
    );
    p
}

/// Variables of the test machine that would hand a client other proxies, CAs or
/// identity endpoints: removed, so that a client has only what tsh prints.
const INHERITED: &[&str] = msi_proxy::CLIENT_SETTINGS;

/// `cmd` with the printed exports as its only proxy, CA and identity settings.
fn with_exports(mut cmd: Command, env: &[(String, String)]) -> Command {
    for k in INHERITED {
        cmd.env_remove(k);
    }
    cmd.env("AZURE_CORE_COLLECT_TELEMETRY", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Sends raw bytes to `addr` and returns the status line's code and the whole answer.
fn raw_http(addr: &str, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the head and the body (both answers here carry Content-Length or close).
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The app service agent, with the emulator's environment (it runs on the
/// emulator's default VM).
fn start_agent(dir: &Path, node: &Node, token: &str, env: Vec<(String, String)>) -> Agent {
    e2e::azure::start_azure_agent(dir, node, token, env).unwrap()
}

/// `tsh apps login azure-cli --azure-identity identity`.
fn apps_login(home: &Path, identity: &str) -> std::process::Output {
    tsh_az(
        home,
        &["apps", "login", "azure-cli", "--azure-identity", identity],
    )
}

fn tsh_az(home: &Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(bin("tsh").unwrap());
    c.env("TELEPORT_HOME", home)
        .env("TELEPORT_AZ_CLI", az_cli())
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY")
        .args(args);
    output(c, None).unwrap()
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn json(out: std::process::Output) -> serde_json::Value {
    let text = ok(out).unwrap();
    let start = text.find(['[', '{']).unwrap_or(0);
    let end = text.rfind([']', '}']).map(|i| i + 1).unwrap_or(text.len());
    serde_json::from_str(&text[start..end]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn azure_cli_through_teleport() {
    let (tmp, node) = sqlite_node("azure.example").unwrap();
    let (rt, emulator) = start_emulator().unwrap();
    let token = join_token(&node, "app").unwrap();
    let agent_dir = tmp.path().join("agent");
    let agent = start_agent(&agent_dir, &node, token.trim(), emulator.env(None));
    let agent_log = || agent.log();

    // The guide's static role.
    let role =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/azure-cli-access-static.yaml");
    ok(node.tctl(&["create", role.to_str().unwrap()]).unwrap()).unwrap();
    add_user(&node, "teleport-user", "azure-cli-access", PASSWORD).unwrap();
    let home = tmp.path().join("home");
    ok(tsh_login(&node, &home, "teleport-user", PASSWORD).unwrap()).unwrap();

    poll(Duration::from_secs(60), "azure-cli in tsh apps ls", || {
        ok(tsh(&home, &["apps", "ls"], None).unwrap())
            .unwrap()
            .contains("azure-cli")
            .then_some(())
    })
    .map_err(|e| format!("{e}\n{}", agent_log()))
    .unwrap();
    poll(Duration::from_secs(30), "the agent's tunnel", || {
        let out = ok(node.tctl(&["inventory", "ls", "--format=json"]).unwrap()).unwrap();
        (out.trim() != "[]").then_some(())
    })
    .unwrap();

    // Wrong names give Teleport's errors.
    let err = fails(apps_login(&home, "nope")).unwrap();
    assert!(
        err.contains("failed to find the identity matching \"nope\""),
        "{err}"
    );

    // The login: az's own output, then ours.
    let out = apps_login(&home, "TELEPORT-AZURE");
    let text = ok(out)
        .map_err(|e| format!("{e}\n{}", agent_log()))
        .unwrap();
    assert!(
        text.contains("Logged into Azure app \"azure-cli\"."),
        "{text}"
    );
    assert!(
        text.contains(&format!("Your identity: {TELEPORT_AZURE}")),
        "{text}"
    );
    assert!(
        text.contains("Example Azure CLI command: tsh az vm list"),
        "{text}"
    );
    assert!(
        text.contains("\"assignedIdentityInfo\": \"MSIResource-"),
        "{text}"
    );

    // tsh az: az runs through the local proxy, Teleport and the agent's identity.
    let vms = json(tsh_az(&home, &["az", "vm", "list"]));
    let names: Vec<&str> = vms
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"teleport-vm"), "{names:?}");
    assert!(
        !names.contains(&"other-vm"),
        "the identity may only read its group: {names:?}"
    );
    // az's exit code is tsh's.
    let bad = tsh_az(&home, &["az", "no-such-command"]);
    assert!(!bad.status.success());

    // The agent refuses what the local proxy would never send.
    let app_dir = home.join("keys/127.0.0.1/teleport-user-app/azure.example");
    let creds = client::Credentials {
        key_pem: std::fs::read_to_string(app_dir.join("azure-cli.key")).unwrap(),
        cert_pem: std::fs::read_to_string(app_dir.join("azure-cli.crt")).unwrap(),
        ca_pems: vec![],
    };
    let upstream = msi_proxy::AppUpstream::new(&node.web_addr, &creds, true).unwrap();
    let send = |host: &str, token: &str| {
        e2e::azure::get_subscriptions(&rt, &upstream, host, token).unwrap()
    };
    let (status, body) = send("169.254.169.254", "x");
    assert_eq!(status, 403, "{body}");
    let msg: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        msg["error"]["message"],
        "\"169.254.169.254\" is not an Azure endpoint"
    );
    let (status, body) = send("evil.example.com", "x");
    assert_eq!(status, 403, "{body}");
    let (status, body) = send("management.azure.com", "forged.jwt.token");
    assert_eq!(status, 401, "{body}");

    // The same with an identity file made by tctl auth sign.
    let id_file = tmp.path().join("bot.pem");
    sign_identity(&node, "teleport-user", &id_file, "1h").unwrap();
    let bot_home = tmp.path().join("bot-home");
    let id = id_file.to_str().unwrap();
    // tsh with the identity file.
    let as_bot = |args: &[&str]| {
        let mut all = vec!["-i", id, "--proxy", &node.web_addr, "--insecure"];
        all.extend_from_slice(args);
        tsh_az(&bot_home, &all)
    };
    let login = as_bot(&["apps", "login", "azure-cli"]);
    let text = ok(login).unwrap();
    assert!(
        text.contains("Logged into Azure app \"azure-cli\"."),
        "{text}"
    );
    let vms = json(as_bot(&["az", "vm", "list"]));
    assert!(!vms.as_array().unwrap().is_empty(), "{vms}");

    // tsh proxy azure: any client with the printed environment.
    let mut child = Command::new(bin("tsh").unwrap());
    child
        .env("TELEPORT_HOME", &home)
        .args(["proxy", "azure", "--format=text"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut proxy = Proc(child.spawn().unwrap());
    let mut reader = BufReader::new(proxy.0.stdout.take().unwrap());
    let mut env: Vec<(String, String)> = Vec::new();
    let mut started = String::new();
    let mut line = String::new();
    // The exports end with an empty line.
    while reader.read_line(&mut line).unwrap() > 0 {
        let l = line.trim().to_string();
        line.clear();
        if l.starts_with("Started Azure proxy on http://127.0.0.1:") {
            started = l;
            continue;
        }
        if l.is_empty() && !env.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once('=') {
            if k.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_lowercase() || c == '_')
                && !k.is_empty()
            {
                env.push((k.to_string(), v.trim_matches('"').to_string()));
            }
        }
    }
    assert!(!started.is_empty(), "no start line");
    let var = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} missing from {env:?}"))
    };
    for k in [
        "HTTPS_PROXY",
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "MSI_ENDPOINT",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "AZURE_CONFIG_DIR",
    ] {
        var(k);
    }
    // The proxy URL carries the session's secret.
    let secret = var("IDENTITY_HEADER");
    let proxy_addr = started
        .trim_start_matches("Started Azure proxy on http://")
        .trim_end_matches('.')
        .to_string();
    assert_eq!(
        var("HTTPS_PROXY"),
        format!("http://teleport:{secret}@{proxy_addr}")
    );

    // A local process without the secret gets no token: the IMDS path asked
    // directly (401), IMDS through the proxy (407), a tunnel to Azure (407).
    let imds = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F";
    let (code, text) = raw_http(
        &proxy_addr,
        &format!("GET {imds} HTTP/1.1\r\nHost: {proxy_addr}\r\nMetadata: true\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("needs this session's secret"), "{text}");
    assert!(!text.contains("access_token"), "{text}");
    let (code, text) = raw_http(
        &proxy_addr,
        &format!("GET http://169.254.169.254{imds} HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code, 407, "{text}");
    assert!(!text.contains("access_token"), "{text}");
    let (code, text) = raw_http(
        &proxy_addr,
        "CONNECT management.azure.com:443 HTTP/1.1\r\nHost: management.azure.com:443\r\n\r\n",
    );
    assert_eq!(code, 407, "{text}");
    // az with the proxy URL stripped of its credentials (and no endpoint
    // variables, so it falls back to IMDS): refused.
    let stripped: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !k.starts_with("IDENTITY_") && !k.starts_with("MSI_"))
        .map(|(k, v)| (k.clone(), v.replace(&format!("teleport:{secret}@"), "")))
        .collect();
    let mut c = with_exports(Command::new(az_cli()), &stripped);
    c.args(["vm", "list"]);
    let err = fails(output(c, None).unwrap()).unwrap();
    assert!(!err.contains("teleport-vm"), "{err}");
    // With the secret, the same IMDS request through the proxy is served.
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("teleport:{secret}"));
    let (code, text) = raw_http(
        &proxy_addr,
        &format!("GET http://169.254.169.254{imds} HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nProxy-Authorization: Basic {basic}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("access_token"), "{text}");

    let mut c = with_exports(Command::new(az_cli()), &env);
    c.args(["account", "show"]);
    let account = json(output(c, None).unwrap());
    assert_eq!(
        account["id"], "00000000-0000-0000-0000-000000000000",
        "{account}"
    );
    let mut c = with_exports(Command::new(az_cli()), &env);
    c.args([
        "identity",
        "show",
        "-g",
        "my-resource-group",
        "-n",
        "teleport-azure",
    ]);
    let ident = json(output(c, None).unwrap());
    assert_eq!(ident["name"], "teleport-azure", "{ident}");
    // A second client: the Azure SDK for Python, with the same environment.
    let python = az_cli().parent().unwrap().join("python");
    let script = "import sys\nfrom azure.identity import ManagedIdentityCredential\nfrom azure.mgmt.compute import ComputeManagementClient\ncred = ManagedIdentityCredential()\nclient = ComputeManagementClient(cred, '00000000-0000-0000-0000-000000000000')\nprint(','.join(sorted(vm.name for vm in client.virtual_machines.list_all())))\n";
    let mut c = with_exports(Command::new(&python), &env);
    c.args(["-c", script]);
    let sdk = ok(output(c, None).unwrap()).unwrap();
    assert!(sdk.trim().split(',').any(|n| n == "teleport-vm"), "{sdk}");
    assert!(!sdk.contains("other-vm"), "{sdk}");
    // The Azure SDK for JavaScript (it reads NODE_EXTRA_CA_CERTS, not SSL_CERT_FILE).
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/azure_sdk.js");
    let mut c = with_exports(Command::new("node"), &env);
    c.arg(&script)
        .arg("00000000-0000-0000-0000-000000000000")
        .env("NODE_PATH", js_sdk());
    let js = ok(output(c, None).unwrap()).unwrap();
    assert!(js.trim().split(',').any(|n| n == "teleport-vm"), "{js}");
    assert!(!js.contains("other-vm"), "{js}");
    // The Azure SDK for Rust: this test binary again, running rust_sdk_client
    // with the exports; once with the App Service endpoint, once through IMDS
    // over HTTP_PROXY (only the proxy's credentials prove the secret).
    let imds_only: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !k.starts_with("IDENTITY_") && !k.starts_with("MSI_"))
        .cloned()
        .collect();
    for (mode, vars) in [("app service", &env), ("imds", &imds_only)] {
        let mut c = with_exports(Command::new(std::env::current_exe().unwrap()), vars);
        c.args(["rust_sdk_client", "--exact", "--ignored", "--nocapture"])
            .env(
                RUST_SDK_SUBSCRIPTION,
                "00000000-0000-0000-0000-000000000000",
            );
        let out = ok(output(c, None).unwrap())
            .map_err(|e| format!("{mode}: {e}"))
            .unwrap();
        let vms = out
            .lines()
            .find_map(|l| l.strip_prefix("VMS="))
            .unwrap_or_else(|| panic!("{mode}: no VMS= line in {out}"));
        assert!(vms.split(',').any(|n| n == "teleport-vm"), "{mode}: {vms}");
        assert!(!vms.contains("other-vm"), "{mode}: {vms}");
    }
    drop(proxy);

    // Every request was audited (off the request path, so poll).
    let list = poll(Duration::from_secs(20), "app request events", || {
        let events = ok(node
            .tctl(&[
                "events",
                "ls",
                "--type=app.session.request",
                "--format=json",
            ])
            .unwrap())
        .unwrap();
        let events: serde_json::Value = serde_json::from_str(&events).unwrap();
        let list = events.as_array().cloned().unwrap_or_default();
        list.iter()
            .any(|e| {
                e["path"].as_str().unwrap_or("").contains("virtualMachines")
                    && e["status_code"] == 200
            })
            .then_some(list)
    })
    .unwrap();
    assert!(list.iter().all(|e| e["user"] == "teleport-user"));

    // An identity the app service's VM does not hold: a clear error.
    let other = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/other-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other-identity";
    let role2 = tmp.path().join("other.yaml");
    std::fs::write(&role2, format!("kind: role\nversion: v7\nmetadata:\n  name: other-access\nspec:\n  allow:\n    app_labels:\n      '*': '*'\n    azure_identities:\n      - {other}\n")).unwrap();
    ok(node.tctl(&["create", role2.to_str().unwrap()]).unwrap()).unwrap();
    ok(node
        .tctl(&[
            "users",
            "update",
            "teleport-user",
            "--set-roles",
            "azure-cli-access,other-access",
        ])
        .unwrap())
    .unwrap();
    ok(tsh(
        &home,
        &["login", "--insecure"],
        Some(&format!("{PASSWORD}\n")),
    )
    .unwrap())
    .unwrap();
    let out = apps_login(&home, "other-identity");
    let both = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{both}");
    assert!(
        both.contains("minting a token for") && both.contains("other-identity"),
        "{both}"
    );

    // An expired session is refused: an app certificate valid for a few seconds.
    let short = tmp.path().join("short.pem");
    sign_identity(&node, "teleport-user", &short, "5s").unwrap();
    let short_creds = client::Credentials::load_identity_file(&short).unwrap();
    let key = pki::generate_key().unwrap();
    let app_cert: serde_json::Value = rt
        .block_on(async {
            let api = client::ApiClient::new(&node.web_addr, Some(&short_creds), true).unwrap();
            api.post(
                "/v1/auth/certs/app",
                &serde_json::json!({"app": "azure-cli", "azure_identity": TELEPORT_AZURE,
                    "public_key": base64_encode(&key.public_key_der)}),
            )
            .await
        })
        .unwrap();
    let expiring = client::Credentials {
        key_pem: key.private_key_pem,
        cert_pem: app_cert["tls_cert"].as_str().unwrap().to_string(),
        ca_pems: vec![],
    };
    let up = msi_proxy::AppUpstream::new(&node.web_addr, &expiring, true).unwrap();
    let send_with = |token: &str| {
        use msi_proxy::Upstream;
        let req = http::Request::builder()
            .uri("https://management.azure.com/subscriptions?api-version=2022-12-01")
            .header("host", "management.azure.com")
            .header("authorization", format!("Bearer {token}"))
            .body(bytes::Bytes::new())
            .unwrap();
        rt.block_on(up.forward(req))
    };
    // While valid, the agent answers (401: the token is not a session token).
    assert_eq!(send_with("x").unwrap().status(), 401);
    let refused = poll(
        Duration::from_secs(30),
        "the app certificate to expire",
        || match send_with("x") {
            Err(e) => Some(e.message),
            Ok(r) if r.status() != 401 => Some(format!("status {}", r.status())),
            Ok(_) => None,
        },
    )
    .unwrap();
    assert!(!refused.is_empty());

    // Deny wins: a deny-all role makes the next request fail at the agent.
    let deny = tmp.path().join("deny.yaml");
    std::fs::write(&deny, "kind: role\nversion: v7\nmetadata:\n  name: azure-cli-access\nspec:\n  allow:\n    app_labels:\n      '*': '*'\n    azure_identities:\n      - /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure\n  deny:\n    azure_identities: ['*']\n").unwrap();
    ok(node
        .tctl(&["create", "-f", deny.to_str().unwrap()])
        .unwrap())
    .unwrap();
    poll(Duration::from_secs(30), "the deny rule to apply", || {
        let out = tsh_az(&home, &["az", "vm", "list"]);
        (!out.status.success()).then_some(())
    })
    .unwrap();
    drop(emulator);
    drop(rt);
}

/// Names the subscription for [`rust_sdk_client`] when it runs as a child.
const RUST_SDK_SUBSCRIPTION: &str = "E2E_RUST_SDK_SUBSCRIPTION";

/// The Azure SDK for Rust as a client of `tsh proxy azure`: run by
/// azure_cli_through_teleport as a child process whose environment holds the
/// printed exports; a token from `ManagedIdentityCredential`, then the
/// subscription's VMs from ARM through HTTPS_PROXY. Prints `VMS=a,b`.
#[test]
#[ignore = "a child of azure_cli_through_teleport, with tsh proxy azure's exports"]
fn rust_sdk_client() {
    let Ok(subscription) = std::env::var(RUST_SDK_SUBSCRIPTION) else {
        eprintln!(
            "nothing to do: azure_cli_through_teleport runs this with {RUST_SDK_SUBSCRIPTION}"
        );
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let names = rt.block_on(async move {
        use azure_core::credentials::TokenCredential as _;
        let credential = azure_identity::ManagedIdentityCredential::new(None).unwrap();
        let token = credential
            .get_token(&["https://management.azure.com/.default"], None)
            .await
            .unwrap();
        let url = azure_core::http::Url::parse(&format!(
            "https://management.azure.com/subscriptions/{subscription}/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01"
        ))
        .unwrap();
        let mut request = azure_core::http::Request::new(url, azure_core::http::Method::Get);
        request.insert_header("authorization", format!("Bearer {}", token.token.secret()));
        let response = azure_core::http::new_http_client(None)
            .execute_request(&request)
            .await
            .unwrap();
        let (status, _, body) = response.deconstruct();
        let body = body.collect().await.unwrap();
        assert_eq!(
            status,
            azure_core::http::StatusCode::Ok,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut names: Vec<String> = v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|vm| vm["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    });
    println!("VMS={}", names.join(","));
}
