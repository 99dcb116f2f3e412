//! ARM's `regenerateKey` for Azure Cache for Redis and Redis Enterprise databases, with a real
//! redis-server behind the cache whose passwords follow the keys as Azure's cache does.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use azure_emulator::local_redis::LocalRedis as Redis;
use azure_emulator::{Emulator, EmulatorHandle};
use serde_json::{json, Value};

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const PRIMARY: &str = "cHJpbWFyeS1rZXktb2YtbXktcmVkaXM=";
const SECONDARY: &str = "c2Vjb25kYXJ5LWtleS1vZi1teS1yZWRpcw==";
const ENTERPRISE_PRIMARY: &str = "ZW50ZXJwcmlzZS1wcmltYXJ5";
const ENTERPRISE_SECONDARY: &str = "ZW50ZXJwcmlzZS1zZWNvbmRhcnk=";
const TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/";

fn my_redis_url(action: &str) -> String {
    format!("https://management.azure.com/subscriptions/{SUB}/resourceGroups/my-resource-group/providers/Microsoft.Cache/redis/my-redis/{action}?api-version=2024-11-01")
}

/// Raw connections to a test's redis-server.
trait Connect {
    fn conn(&self) -> Conn;
    /// Whether the server takes `password`.
    fn accepts(&self, password: &str) -> bool;
}

impl Connect for Redis {
    fn conn(&self) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn(s)
    }

    fn accepts(&self, password: &str) -> bool {
        self.conn().call(&["AUTH", password]) == "+OK"
    }
}

/// A raw connection reading one-line replies.
struct Conn(TcpStream);

impl Conn {
    fn call(&mut self, args: &[&str]) -> String {
        let mut b = format!("*{}\r\n", args.len());
        for a in args {
            b.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.write_all(b.as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while !out.ends_with(b"\r\n") {
            assert_eq!(self.0.read(&mut byte).unwrap(), 1, "connection closed");
            out.push(byte[0]);
        }
        String::from_utf8_lossy(&out).trim_end().to_string()
    }
}

/// The guide's world with my-redis backed by `redis`, and my-enterprise's database by the nodes
/// `nodes`.
async fn start(redis: &Redis, nodes: &[&Redis]) -> EmulatorHandle {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml");
    let mut text = std::fs::read_to_string(path).unwrap();
    let line = format!("            secondary_key: {SECONDARY}\n");
    assert!(text.contains(&line));
    text = text.replace(
        &line,
        &format!(
            "{line}            server: {{ host: 127.0.0.1, ports: [{}] }}\n",
            redis.port
        ),
    );
    if !nodes.is_empty() {
        let line = format!("                secondary_key: {ENTERPRISE_SECONDARY}\n");
        assert!(text.contains(&line));
        let ports: Vec<String> = nodes.iter().map(|n| n.port.to_string()).collect();
        text = text.replace(
            &line,
            &format!(
                "{line}                server: {{ host: 127.0.0.1, ports: [{}] }}\n",
                ports.join(", ")
            ),
        );
    }
    Emulator::start(azure_emulator::World::from_yaml(&text).unwrap())
        .await
        .unwrap()
}

struct Arm {
    c: reqwest::Client,
    bearer: String,
}

impl Arm {
    async fn new(emu: &EmulatorHandle) -> Arm {
        let c = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(emu.proxy_url(None)).unwrap())
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(emu.ca_pem().as_bytes()).unwrap())
            .build()
            .unwrap();
        let tok: Value = c
            .get(TOKEN_URL)
            .header("Metadata", "true")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let bearer = format!("Bearer {}", tok["access_token"].as_str().unwrap());
        Arm { c, bearer }
    }

    async fn send(&self, method: reqwest::Method, url: &str, body: Option<&str>) -> (u16, Value) {
        let mut req = self
            .c
            .request(method, url)
            .header("Authorization", &self.bearer);
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `regenerateKey` of `url` (a cache's or a database's, without the action) for the key
    /// `key_type`.
    async fn regenerate(&self, url: &str, key_type: &str) -> (u16, Value) {
        self.post(url, &json!({ "keyType": key_type })).await
    }

    async fn post(&self, url: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, url, Some(&body.to_string()))
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerating_a_key_changes_arm_and_the_server() {
    let redis = Redis::start(PRIMARY).unwrap();
    let emu = start(&redis, &[]).await;
    let arm = Arm::new(&emu).await;
    // A connection authenticated before the rotation.
    let mut open = redis.conn();
    assert_eq!(open.call(&["AUTH", PRIMARY]), "+OK");

    let (status, keys) = arm
        .regenerate(&my_redis_url("regenerateKey"), "Primary")
        .await;
    assert_eq!(status, 200, "{keys}");
    let new_primary = keys["primaryKey"].as_str().unwrap().to_string();
    assert_ne!(new_primary, PRIMARY);
    assert_eq!(keys["secondaryKey"], SECONDARY);
    let (status, listed) = arm.post(&my_redis_url("listKeys"), &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(listed, keys);
    // The server, like the cache, takes either key now, and not the old one; the open connection
    // stays authenticated.
    assert!(redis.accepts(&new_primary));
    assert!(redis.accepts(SECONDARY));
    assert!(!redis.accepts(PRIMARY));
    assert_eq!(open.call(&["PING"]), "+PONG");

    // keyType is read in any case, as ARM's enums are.
    let (status, keys) = arm
        .regenerate(&my_redis_url("regenerateKey"), "secondary")
        .await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["primaryKey"], new_primary.as_str());
    let new_secondary = keys["secondaryKey"].as_str().unwrap().to_string();
    assert_ne!(new_secondary, SECONDARY);
    assert!(redis.accepts(&new_secondary));
    assert!(!redis.accepts(SECONDARY));
    assert!(redis.accepts(&new_primary));

    // A server that takes none of the keys: a 500 saying so, and the keys are unchanged.
    assert_eq!(
        open.call(&["CONFIG", "SET", "requirepass", "known-to-nobody"]),
        "+OK"
    );
    let (status, body) = arm
        .regenerate(&my_redis_url("regenerateKey"), "Primary")
        .await;
    assert_eq!(status, 500, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("127.0.0.1:{}", redis.port)) && msg.contains("--requirepass"),
        "{msg}"
    );
    let (_, listed) = arm.post(&my_redis_url("listKeys"), &json!({})).await;
    assert_eq!(listed["primaryKey"], new_primary.as_str());
    assert_eq!(listed["secondaryKey"], new_secondary.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerate_key_refusals_and_redis_enterprise() {
    let redis = Redis::start(PRIMARY).unwrap();
    // The shards of the Redis Enterprise database: every node gets the new keys.
    let nodes = [
        Redis::start(ENTERPRISE_PRIMARY).unwrap(),
        Redis::start(ENTERPRISE_PRIMARY).unwrap(),
    ];
    let emu = start(&redis, &[&nodes[0], &nodes[1]]).await;
    let arm = Arm::new(&emu).await;
    let url = my_redis_url("regenerateKey");

    let (status, body) = arm.regenerate(&url, "Tertiary").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "InvalidRequestBody");
    let (status, _) = arm.post(&url, &json!({})).await;
    assert_eq!(status, 400);
    let (status, body) = arm
        .regenerate(&url.replace("?api-version=2024-11-01", ""), "Primary")
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "MissingApiVersionParameter");
    let (status, _) = arm.send(reqwest::Method::GET, &url, None).await;
    assert_eq!(status, 405);
    let (status, body) = arm
        .regenerate(&url.replace("/my-redis/", "/no-such-cache/"), "Primary")
        .await;
    assert_eq!(status, 404, "{body}");
    // teleport-azure holds no role in other-resource-group.
    let other = format!("https://management.azure.com/subscriptions/{SUB}/resourceGroups/other-resource-group/providers/Microsoft.Cache/redis/other-redis/regenerateKey?api-version=2024-11-01");
    let (status, body) = arm.regenerate(&other, "Primary").await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "AuthorizationFailed");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("microsoft.cache/redis/regeneratekey/action"));
    // None of these changed anything.
    assert!(redis.accepts(PRIMARY));
    let (_, listed) = arm.post(&my_redis_url("listKeys"), &json!({})).await;
    assert_eq!(listed["primaryKey"], PRIMARY);

    // A Redis Enterprise database.
    let db = format!("https://management.azure.com/subscriptions/{SUB}/resourceGroups/my-resource-group/providers/Microsoft.Cache/redisEnterprise/my-enterprise/databases/default");
    let (status, keys) = arm
        .regenerate(
            &format!("{db}/regenerateKey?api-version=2025-04-01"),
            "Secondary",
        )
        .await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["primaryKey"], ENTERPRISE_PRIMARY);
    assert_ne!(keys["secondaryKey"], ENTERPRISE_SECONDARY);
    let (_, listed) = arm
        .post(&format!("{db}/listKeys?api-version=2025-04-01"), &json!({}))
        .await;
    assert_eq!(listed, keys);
    for node in &nodes {
        assert!(node.accepts(ENTERPRISE_PRIMARY));
        assert!(node.accepts(keys["secondaryKey"].as_str().unwrap()));
        assert!(!node.accepts(ENTERPRISE_SECONDARY));
    }
}
