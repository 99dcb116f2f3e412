//! Attacks on a running app service's Azure handler, as a logged-in user
//! holding a valid app session (its certificate and key) would make them:
//! a crafted `Host` must never send the identity's real Azure token to
//! another host, and an unreachable Azure is reported as such, not as a
//! refusal.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::*;

const TELEPORT_AZURE: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure";
const ARM_AUDIENCE: &str = "https://management.core.windows.net/";

/// The app service agent on the emulator's default VM, serving `azure-cli`.
fn start_azure_agent(dir: &Path, node: &Node, env: Vec<(String, String)>) -> Agent {
    let token = join_token(node, "app").unwrap();
    e2e::azure::start_azure_agent(dir, node, token.trim(), env).unwrap()
}

/// A local token as tsh signs it with the app session key (ES256).
fn local_token(key_pem: &str, identity: &str) -> String {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let b64: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(b64).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({
        "aud": ARM_AUDIENCE, "exp": now + 600, "iat": now, "nbf": now, "iss": "teleport",
        "sub": identity, "xms_mirid": identity,
        "tid": "00000000-0000-0000-0000-000000000000",
    });
    let mut jwt = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), jwt.as_bytes())
        .unwrap();
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
    jwt
}

/// A listener standing in for another host: it counts connections and the
/// bytes they sent, then closes them.
struct Bystander {
    port: u16,
    connections: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

impl Bystander {
    fn start() -> Bystander {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(AtomicUsize::new(0));
        let (c, b) = (connections.clone(), bytes.clone());
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 4096];
                if let Ok(n) = stream.read(&mut buf) {
                    b.fetch_add(n, Ordering::SeqCst);
                }
            }
        });
        Bystander {
            port,
            connections,
            bytes,
        }
    }
}

#[test]
fn crafted_hosts_never_take_the_azure_token_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (emulator_rt, emulator) = start_emulator().unwrap();
    // The client side on a runtime of its own, so that dropping the
    // emulator's runtime ends every connection to it.
    let rt = runtime().unwrap();
    let node = Node::start(&tmp.path().join("node"), "azure.example", &Storage::Sqlite).unwrap();
    let agent = start_azure_agent(&tmp.path().join("agent"), &node, emulator.env(None));
    let role = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/azure-cli-access-static.yaml");
    ok(node.tctl(&["create", role.to_str().unwrap()]).unwrap()).unwrap();
    let user = tmp.path().join("user");
    std::fs::create_dir_all(&user).unwrap();
    ok(node
        .tctl(&["users", "add", "teleport-user", "--roles=azure-cli-access"])
        .unwrap())
    .unwrap();
    poll(Duration::from_secs(30), "the agent's tunnel", || {
        let out = ok(node.tctl(&["inventory", "ls", "--format=json"]).unwrap()).unwrap();
        (out.trim() != "[]").then_some(())
    })
    .map_err(|e| format!("{e}\n{}", agent.log()))
    .unwrap();

    // The user's app session: an identity file, then an app certificate for
    // the identity with a key of the user's own (what tsh apps login does).
    let id_file = tmp.path().join("user.pem");
    sign_identity(&node, "teleport-user", &id_file, "1h").unwrap();
    let creds = client::Credentials::load_identity_file(&id_file).unwrap();
    let key = pki::generate_key().unwrap();
    let app_cert: serde_json::Value = poll(Duration::from_secs(60), "an app certificate", || {
        rt.block_on(async {
            let api = client::ApiClient::new(&node.web_addr, Some(&creds), true).ok()?;
            use base64::Engine as _;
            api.post::<serde_json::Value, _>(
                "/v1/auth/certs/app",
                &serde_json::json!({"app": "azure-cli", "azure_identity": TELEPORT_AZURE,
                    "public_key": base64::engine::general_purpose::STANDARD.encode(&key.public_key_der)}),
            )
            .await
            .ok()
        })
    })
    .unwrap();
    let session = client::Credentials {
        key_pem: key.private_key_pem.clone(),
        cert_pem: app_cert["tls_cert"].as_str().unwrap().to_string(),
        ca_pems: vec![],
    };
    let upstream = msi_proxy::AppUpstream::new(&node.web_addr, &session, true).unwrap();
    let token = local_token(&key.private_key_pem, TELEPORT_AZURE);
    let send = |authority: &str| {
        let (status, body) =
            e2e::azure::get_subscriptions(&rt, &upstream, authority, &token).unwrap();
        let code = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        (status, code, body)
    };

    // The session and its token are good: Azure answers them.
    let (status, _, body) = send("management.azure.com");
    assert_eq!(status, 200, "{body}\n{}", agent.log());
    assert!(
        body.contains("00000000-0000-0000-0000-000000000000"),
        "{body}"
    );

    // Crafted hosts: allow-listed text, another host dialled.
    let bystander = Bystander::start();
    let p = bystander.port;
    for (authority, status, code) in [
        (
            format!("management.azure.com:443@127.0.0.1:{p}"),
            400,
            "TeleportBadRequest",
        ),
        (
            format!("management.azure.com@127.0.0.1:{p}"),
            400,
            "TeleportBadRequest",
        ),
        (format!("127.0.0.1:{p}"), 403, "TeleportEndpointNotAllowed"),
        (
            "management.azure.com:0".to_string(),
            400,
            "TeleportBadRequest",
        ),
    ] {
        let (got, got_code, body) = send(&authority);
        // The answer came back after the agent decided: had it dialled the
        // other host, the connection would be counted by now.
        assert_eq!(
            (
                bystander.connections.load(Ordering::SeqCst),
                bystander.bytes.load(Ordering::SeqCst)
            ),
            (0, 0),
            "Host {authority:?}: the agent dialled the other host ({got} {body})"
        );
        assert_eq!(
            (got, got_code.as_str()),
            (status, code),
            "{authority}: {body}"
        );
        assert!(
            !body.contains("eyJ"),
            "{authority}: a token in the answer: {body}"
        );
    }

    // Azure unreachable (the emulator, its proxy and their connections
    // gone): said as such.
    drop(emulator);
    drop(emulator_rt);
    let (status, code, body) = send("management.azure.com");
    assert_eq!(
        (status, code.as_str()),
        (502, "TeleportUpstreamUnreachable"),
        "{body}"
    );
    assert!(body.contains("cannot reach management.azure.com"), "{body}");
    drop(rt);
}
