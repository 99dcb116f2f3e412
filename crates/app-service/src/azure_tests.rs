//! The Azure handler's refusals and forwarding, against a local TLS server
//! standing in for Azure and a listener standing in for another host, both
//! reached through the handler's own HTTP client (names resolved to them).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use pki::RouteToApp;

use super::*;

const ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure";
const OTHER_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other";
const REAL_TOKEN: &str = "the-real-azure-token-minted-on-the-agent";
const ARM_AUDIENCE: &str = "https://management.core.windows.net/";

fn role_yaml(identity: &str) -> String {
    format!(
        "kind: role\nversion: v7\nmetadata:\n  name: azure-cli-access\nspec:\n  allow:\n    app_labels:\n      '*': '*'\n    azure_identities:\n      - {identity}\n"
    )
}

fn roles(yaml: &str) -> Vec<Role> {
    resources::parse_resources(yaml)
        .unwrap()
        .into_iter()
        .map(|r| match r {
            resources::Resource::Role(r) => r,
            other => panic!("not a role: {other:?}"),
        })
        .collect()
}

/// Why the fake auth service gives no roles: it answered with this status,
/// or (no status) it could not be reached.
type RolesDown = (Option<u16>, String);

struct FakeCluster {
    roles: Result<Vec<Role>, RolesDown>,
    events: Mutex<Vec<serde_json::Value>>,
}

#[async_trait::async_trait]
impl Cluster for FakeCluster {
    async fn roles(&self, _names: &[String]) -> Result<Vec<Role>, ClusterError> {
        self.roles
            .clone()
            .map_err(|(status, message)| match status {
                Some(status) => ClusterError::Http { status, message },
                None => ClusterError::Transport(message),
            })
    }
    async fn audit_batch(&self, body: Vec<u8>) -> Result<(), ClusterError> {
        let events: Vec<serde_json::Value> =
            serde_json::from_slice(&body).map_err(|e| ClusterError::Local(e.to_string()))?;
        self.events.lock().unwrap().extend(events);
        Ok(())
    }
}

/// Mints [`REAL_TOKEN`], or fails; counts its calls.
struct Minter {
    fail: bool,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl azure_mint::FetchToken for Minter {
    async fn fetch(
        &self,
        _identity: &str,
        _scope: &str,
    ) -> Result<azure_mint::Token, azure_mint::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(azure_mint::Error::Credential(
                "IMDS: identity not found".into(),
            ));
        }
        Ok(azure_mint::Token::new(
            REAL_TOKEN,
            SystemTime::now() + Duration::from_secs(3600),
        ))
    }
}

/// What the stand-in for Azure received: (Host, Authorization, target).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A TLS server for `management.azure.com` answering 200 to everything.
async fn fake_azure() -> (SocketAddr, String, Seen) {
    let (cert, key) = pki::self_signed_server_cert(&["management.azure.com".to_string()]).unwrap();
    let config =
        pki::tls::server_config(&cert, &key, &[], pki::tls::ClientAuth::None, &[b"http/1.1"])
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let header = |name| {
                        req.headers()
                            .get(name)
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .unwrap_or_default()
                    };
                    record.lock().unwrap().push((
                        header(hyper::header::HOST),
                        header(hyper::header::AUTHORIZATION),
                        req.uri().to_string(),
                    ));
                    async move {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            "{\"value\":[]}",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, cert, seen)
}

/// A listener that counts connections (another host the token must never reach).
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            // Held open and silent, so a client waits for its TLS handshake.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(tcp);
            });
        }
    });
    (addr, count)
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

struct Setup {
    handler: AzureHandler,
    cluster: Arc<FakeCluster>,
    minter: Arc<Minter>,
    seen: Seen,
    other: Arc<AtomicUsize>,
    other_port: u16,
    key: EcdsaKeyPair,
    identity: Identity,
}

struct Options {
    roles: Result<Vec<Role>, RolesDown>,
    mint_fails: bool,
    /// Where `management.azure.com` resolves (the fake Azure when `None`).
    azure_at: Option<SocketAddr>,
    timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            roles: Ok(roles(&role_yaml(ID))),
            mint_fails: false,
            azure_at: None,
            timeout: Duration::from_secs(10),
        }
    }
}

async fn setup(o: Options) -> Setup {
    let (azure_addr, azure_cert, seen) = fake_azure().await;
    let (other_addr, other) = counting_listener().await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(o.timeout)
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(azure_cert.as_bytes()).unwrap())
        .resolve("management.azure.com", o.azure_at.unwrap_or(azure_addr))
        .resolve("other.host", other_addr)
        .build()
        .unwrap();
    let cluster = Arc::new(FakeCluster {
        roles: o.roles,
        events: Mutex::default(),
    });
    let minter = Arc::new(Minter {
        fail: o.mint_fails,
        calls: AtomicUsize::new(0),
    });
    let tokens = Arc::new(azure_mint::TokenCache::new(minter.clone()));
    let handler = AzureHandler::new(
        App::new("azure-cli".to_string(), "cloud://Azure".to_string()),
        cluster.clone(),
        agent::AuditSink::start(cluster.clone()),
        tokens,
        http,
    );
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let identity = Identity {
        username: "alice".into(),
        groups: vec!["azure-cli-access".into()],
        expires: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        route_to_app: Some(RouteToApp {
            session_id: "sid-1".into(),
            name: "azure-cli".into(),
            azure_identity: ID.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Setup {
        handler,
        cluster,
        minter,
        seen,
        other,
        other_port: other_addr.port(),
        key,
        identity,
    }
}

/// A setup with `o` whose `GET /subscriptions` is answered with `status` and the error `code`:
/// the setup and the answer's body.
async fn answered(o: Options, status: StatusCode, code: &str) -> (Setup, String) {
    let s = setup(o).await;
    let body = s.expect(s.arm(), status, code, "").await;
    (s, body)
}

/// A local token as tsh signs it with the session key.
fn local_token(key: &EcdsaKeyPair, identity: &str, aud: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "aud": aud, "exp": now + 600, "iat": now, "nbf": now, "iss": "teleport",
        "sub": identity, "xms_mirid": identity,
        "tid": "00000000-0000-0000-0000-000000000000",
    });
    let mut jwt = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = key.sign(&SystemRandom::new(), jwt.as_bytes()).unwrap();
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
    jwt
}

impl Setup {
    fn token(&self) -> String {
        local_token(&self.key, ID, ARM_AUDIENCE)
    }

    fn get(&self, host: &str, target: &str) -> Request<Full<Bytes>> {
        Request::builder()
            .method("GET")
            .uri(target)
            .header("host", host)
            .header("authorization", format!("Bearer {}", self.token()))
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    /// `GET /subscriptions` of `management.azure.com` with the session's token.
    fn arm(&self) -> Request<Full<Bytes>> {
        self.get("management.azure.com", "/subscriptions")
    }

    /// [`Setup::arm`] with the `Authorization` header `authorization`.
    fn authorized(&self, authorization: &str) -> Request<Full<Bytes>> {
        let mut req = self.arm();
        let value = hyper::header::HeaderValue::from_str(authorization).unwrap();
        req.headers_mut().insert("authorization", value);
        req
    }

    /// Sends `req`, which is answered with `status` and the error `code` (`what` says
    /// which case); returns the body.
    async fn expect(
        &self,
        req: Request<Full<Bytes>>,
        status: StatusCode,
        code: &str,
        what: &str,
    ) -> String {
        self.expect_as(&self.identity, req, status, code, what)
            .await
    }

    /// [`Setup::expect`] for a request with the certificate `identity`.
    async fn expect_as(
        &self,
        identity: &Identity,
        req: Request<Full<Bytes>>,
        status: StatusCode,
        code: &str,
        what: &str,
    ) -> String {
        let (got, got_code, body) = self.send_as(identity, req).await;
        assert_eq!((got, got_code.as_str()), (status, code), "{what}: {body}");
        body
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, String, String) {
        self.send_as(&self.identity, req).await
    }

    async fn send_as(
        &self,
        identity: &Identity,
        req: Request<Full<Bytes>>,
    ) -> (StatusCode, String, String) {
        let resp = self
            .handler
            .handle(identity, self.key.public_key().as_ref(), req)
            .await;
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        let code = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        (status, code, text)
    }

    /// Nothing reached Azure nor the other host, and no token was minted.
    fn nothing_left(&self, what: &str) {
        assert!(
            self.seen.lock().unwrap().is_empty(),
            "{what}: Azure was called"
        );
        assert_eq!(
            self.other.load(Ordering::SeqCst),
            0,
            "{what}: the other host was dialled"
        );
        assert_eq!(
            self.minter.calls.load(Ordering::SeqCst),
            0,
            "{what}: a token was minted"
        );
    }
}

#[tokio::test]
async fn a_valid_request_reaches_azure_with_the_minted_token_only() {
    let s = setup(Options::default()).await;
    let (status, _, body) = s
        .send(s.get(
            "management.azure.com",
            "/subscriptions?api-version=2022-12-01",
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "{\"value\":[]}");
    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(
            "management.azure.com".to_string(),
            format!("Bearer {REAL_TOKEN}"),
            "/subscriptions?api-version=2022-12-01".to_string()
        )]
    );
    assert_eq!(s.other.load(Ordering::SeqCst), 0);
    // The explicit default port names the same endpoint.
    let (status, _, body) = s.send(s.get("management.azure.com:443", "/x")).await;
    assert!(
        status != StatusCode::BAD_REQUEST && status != StatusCode::FORBIDDEN,
        "{body}"
    );
}

#[tokio::test]
async fn crafted_hosts_are_refused_before_anything_is_dialled() {
    let s = setup(Options::default()).await;
    let p = s.other_port;
    let cases: Vec<(String, StatusCode, &str)> = vec![
        // The finding: allow-listed text before ':', the real host after '@'.
        (
            format!("management.azure.com:443@other.host:{p}"),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            format!("other.host:{p}@management.azure.com"),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        // A path in the Host header that ends like an Azure name.
        (
            format!("other.host:{p}/.management.azure.com"),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            format!("other.host:{p}?.management.azure.com"),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            format!("other.host:{p}#.management.azure.com"),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            format!("other.host:{p}\\.management.azure.com"),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            "management.azure.com:99999".into(),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            "management.azure.com:0".into(),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            "management.azure.com:".into(),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            "management.azure.com:443:443".into(),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            "management.azure.com :443".into(),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            "management.azure.com\t".into(),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            "management.azure.com.".into(),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        (
            "management%2eazure.com".into(),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
        ),
        ("".into(), StatusCode::BAD_REQUEST, "TeleportBadRequest"),
        // Well-formed, not Azure.
        (
            format!("other.host:{p}"),
            StatusCode::FORBIDDEN,
            "TeleportEndpointNotAllowed",
        ),
        (
            "169.254.169.254".into(),
            StatusCode::FORBIDDEN,
            "TeleportEndpointNotAllowed",
        ),
        (
            "[::1]:443".into(),
            StatusCode::FORBIDDEN,
            "TeleportEndpointNotAllowed",
        ),
        (
            "management.azure.com.other.host".into(),
            StatusCode::FORBIDDEN,
            "TeleportEndpointNotAllowed",
        ),
    ];
    for (host, status, code) in cases {
        let (got, got_code, body) = s.send(s.get(&host, "/subscriptions")).await;
        assert_eq!(
            (got, got_code.as_str()),
            (status, code),
            "Host {host:?}: {body}"
        );
        assert!(!body.contains(REAL_TOKEN));
        s.nothing_left(&host);
    }
    let (_, _, body) = s.send(s.get("169.254.169.254", "/")).await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["error"]["message"],
        "\"169.254.169.254\" is not an Azure endpoint"
    );
    let (_, _, body) = s
        .send(s.get(&format!("management.azure.com:443@other.host:{p}"), "/"))
        .await;
    assert!(body.contains("userinfo"), "{body}");
}

#[tokio::test]
async fn the_host_header_is_required_once() {
    let s = setup(Options::default()).await;
    let mut missing = s.arm();
    missing.headers_mut().remove("host");
    let mut twice = s.arm();
    let other = format!("other.host:{}", s.other_port);
    let other = hyper::header::HeaderValue::from_str(&other).unwrap();
    twice.headers_mut().append("host", other);
    let mut not_text = s.arm();
    let bytes = hyper::header::HeaderValue::from_bytes(b"management.azure.com\xff").unwrap();
    not_text.headers_mut().insert("host", bytes);
    for (what, req) in [
        ("missing", missing),
        ("twice", twice),
        ("not text", not_text),
    ] {
        s.expect(req, StatusCode::BAD_REQUEST, "TeleportBadRequest", what)
            .await;
    }
    s.nothing_left("Host headers");
}

#[tokio::test]
async fn request_targets_must_be_paths() {
    let s = setup(Options::default()).await;
    let p = s.other_port;
    for target in [
        // Absolute-form naming another host than the Host header.
        format!("https://other.host:{p}/subscriptions"),
        "https://management.azure.com/subscriptions".to_string(),
        // Asterisk-form.
        "*".to_string(),
    ] {
        s.expect(
            s.get("management.azure.com", &target),
            StatusCode::BAD_REQUEST,
            "TeleportBadRequest",
            &target,
        )
        .await;
    }
    // Authority-form with CONNECT.
    let mut req = s.get("management.azure.com", &format!("other.host:{p}"));
    *req.method_mut() = hyper::Method::CONNECT;
    s.expect(req, StatusCode::BAD_REQUEST, "TeleportBadRequest", "")
        .await;
    s.nothing_left("targets");
}

#[tokio::test]
async fn the_local_token_must_be_the_sessions() {
    let s = setup(Options::default()).await;
    let mut req = s.arm();
    req.headers_mut().remove("authorization");
    s.expect(req, StatusCode::UNAUTHORIZED, "TeleportInvalidToken", "")
        .await;
    for bearer in [
        "Bearer forged.jwt.token".to_string(),
        "Basic dXNlcjpwdw==".to_string(),
        // Signed by another key than the session's.
        format!(
            "Bearer {}",
            local_token(
                &EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
                ID,
                ARM_AUDIENCE
            )
        ),
    ] {
        s.expect(
            s.authorized(&bearer),
            StatusCode::UNAUTHORIZED,
            "TeleportInvalidToken",
            &bearer,
        )
        .await;
    }
    // Signed by the session key, for several resources or odd ones.
    for aud in [
        "",
        "https://management.azure.com/.default https://graph.microsoft.com/.default",
        "https://management.azure.com/?x=1",
        "https://management.azure.com/#x",
        "https://management.azure.com/\n",
    ] {
        let bearer = format!("Bearer {}", local_token(&s.key, ID, aud));
        s.expect(
            s.authorized(&bearer),
            StatusCode::UNAUTHORIZED,
            "TeleportInvalidToken",
            &format!("audience {aud:?}"),
        )
        .await;
    }
    // Signed by the session key, for another identity.
    let bearer = format!("Bearer {}", local_token(&s.key, OTHER_ID, ARM_AUDIENCE));
    s.expect(
        s.authorized(&bearer),
        StatusCode::FORBIDDEN,
        "TeleportAccessDenied",
        "",
    )
    .await;
    s.nothing_left("tokens");
}

#[tokio::test]
async fn the_certificate_must_route_to_this_app_with_an_identity() {
    let s = setup(Options::default()).await;
    let mut no_route = s.identity.clone();
    no_route.route_to_app = None;
    let mut other_app = s.identity.clone();
    if let Some(r) = other_app.route_to_app.as_mut() {
        r.name = "other-app".into();
    }
    let mut expired = s.identity.clone();
    expired.expires = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let mut no_identity = s.identity.clone();
    if let Some(r) = no_identity.route_to_app.as_mut() {
        r.azure_identity.clear();
    }
    for (what, identity) in [
        ("no route", no_route),
        ("other app", other_app),
        ("expired", expired),
        ("no identity", no_identity),
    ] {
        s.expect_as(
            &identity,
            s.arm(),
            StatusCode::FORBIDDEN,
            "TeleportAccessDenied",
            what,
        )
        .await;
    }
    s.nothing_left("certificates");
}

#[tokio::test]
async fn current_roles_decide() {
    let cases = [
        (
            "RBAC",
            Ok(roles(&role_yaml(OTHER_ID))),
            StatusCode::FORBIDDEN,
            "TeleportAccessDenied",
        ),
        (
            "roles unavailable",
            Err((None, "auth service unreachable".into())),
            StatusCode::SERVICE_UNAVAILABLE,
            "TeleportAccessCheckUnavailable",
        ),
        // A role of the session deleted since: the auth service answers 404,
        // which is a refusal, not an outage.
        (
            "role deleted",
            Err((Some(404), "role \"azure-cli-access\" is not found".into())),
            StatusCode::FORBIDDEN,
            "TeleportAccessDenied",
        ),
    ];
    for (what, roles, status, code) in cases {
        let deleted = matches!(roles, Err((Some(404), _)));
        let o = Options {
            roles,
            ..Options::default()
        };
        let (s, body) = answered(o, status, code).await;
        if deleted {
            assert!(body.contains("is not found"), "{body}");
        }
        s.nothing_left(what);
    }
}

#[tokio::test]
async fn a_failed_mint_says_so() {
    let (s, body) = answered(
        Options {
            mint_fails: true,
            ..Options::default()
        },
        StatusCode::BAD_GATEWAY,
        "TeleportTokenMintFailed",
    )
    .await;
    assert!(body.contains("minting a token for"), "{body}");
    assert!(s.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unreachable_azure_is_not_access_denied() {
    let (_, body) = answered(
        Options {
            azure_at: Some(closed_port().await),
            ..Options::default()
        },
        StatusCode::BAD_GATEWAY,
        "TeleportUpstreamUnreachable",
    )
    .await;
    let message = serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("cannot reach management.azure.com"),
        "{message}"
    );
    assert!(!message.contains(REAL_TOKEN));
}

#[tokio::test]
async fn a_silent_azure_times_out() {
    let (silent, _) = counting_listener().await;
    answered(
        Options {
            azure_at: Some(silent),
            timeout: Duration::from_millis(300),
            ..Options::default()
        },
        StatusCode::GATEWAY_TIMEOUT,
        "TeleportUpstreamTimeout",
    )
    .await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let s = setup(Options::default()).await;
    let mut req = s.arm();
    *req.method_mut() = hyper::Method::PUT;
    *req.body_mut() = Full::new(Bytes::from(vec![b'x'; MAX_BODY + 1]));
    s.expect(
        req,
        StatusCode::PAYLOAD_TOO_LARGE,
        "TeleportRequestTooLarge",
        "",
    )
    .await;
    assert!(s.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn requests_are_audited_with_what_the_client_sent() {
    let s = setup(Options::default()).await;
    let host = format!("management.azure.com:443@other.host:{}", s.other_port);
    let (status, _, _) = s.send(s.get(&host, "/subscriptions")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let event = poll_event(&s.cluster).await;
    assert_eq!(event["event"], "app.session.request");
    assert_eq!(event["host"], host);
    assert_eq!(event["status_code"], 400);
    assert_eq!(event["user"], "alice");
}

async fn poll_event(cluster: &FakeCluster) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = cluster.events.lock().unwrap().first() {
            return e.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no audit event");
        tokio::task::yield_now().await;
    }
}

#[test]
fn every_code_has_its_status() {
    for (code, status, name) in [
        (ErrorCode::AccessDenied, 403, "TeleportAccessDenied"),
        (ErrorCode::InvalidToken, 401, "TeleportInvalidToken"),
        (ErrorCode::BadRequest, 400, "TeleportBadRequest"),
        (
            ErrorCode::EndpointNotAllowed,
            403,
            "TeleportEndpointNotAllowed",
        ),
        (
            ErrorCode::AccessCheckUnavailable,
            503,
            "TeleportAccessCheckUnavailable",
        ),
        (ErrorCode::TokenMintFailed, 502, "TeleportTokenMintFailed"),
        (ErrorCode::RequestTooLarge, 413, "TeleportRequestTooLarge"),
        (
            ErrorCode::UpstreamUnreachable,
            502,
            "TeleportUpstreamUnreachable",
        ),
        (ErrorCode::UpstreamTimeout, 504, "TeleportUpstreamTimeout"),
        (ErrorCode::UpstreamFailed, 502, "TeleportUpstreamFailed"),
    ] {
        assert_eq!(code.status().as_u16(), status);
        assert_eq!(code.as_str(), name);
    }
}
