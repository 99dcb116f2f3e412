//! Whole-proxy tests: real sockets, a real TLS client trusting only the local CA, a fake
//! `Upstream` recording what it is handed.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{IDENTITY, SUB, TENANT};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use msi_proxy::{
    format_exports, verify_local_token, MsiProxy, MsiProxyConfig, Upstream, UpstreamError,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const ARM_RESOURCE: &str = "https://management.core.windows.net/";

#[derive(Default)]
struct Recorder {
    reqs: Mutex<Vec<Request<Bytes>>>,
}

#[async_trait::async_trait]
impl Upstream for Recorder {
    async fn forward(&self, req: Request<Bytes>) -> Result<Response<Bytes>, UpstreamError> {
        let path = req.uri().path().to_owned();
        self.reqs.lock().unwrap().push(req);
        if path == "/fail" {
            return Err(UpstreamError::bad_gateway("cluster unreachable"));
        }
        let mut r = common::json_response(&common::arm_body(&path));
        r.headers_mut().insert("x-upstream", "yes".parse().unwrap());
        Ok(r)
    }
}

struct Fixture {
    proxy: MsiProxy,
    rec: Arc<Recorder>,
    key: pki::KeyPair,
    dir: tempfile::TempDir,
}

fn config(dir: &tempfile::TempDir, key: &pki::KeyPair) -> MsiProxyConfig {
    let ca = dir
        .path()
        .join("keys/proxy/alice-app/cluster/azure-cli-localca.pem");
    common::config(key, 8, ca)
}

async fn fixture_with(edit: impl FnOnce(&mut MsiProxyConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = pki::generate_key().unwrap();
    let mut cfg = config(&dir, &key);
    edit(&mut cfg);
    let rec = Arc::new(Recorder::default());
    let proxy = MsiProxy::start(cfg, rec.clone()).await.unwrap();
    Fixture {
        proxy,
        rec,
        key,
        dir,
    }
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

/// Sends one request on `io` with hyper's client; returns status, headers, body.
async fn send<IO>(io: IO, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (p, b) = resp.into_parts();
    (p.status, p.headers, b.collect().await.unwrap().to_bytes())
}

/// Sends `GET uri` with `headers` on a new connection to `addr`.
async fn get_from(
    addr: SocketAddr,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    send(TcpStream::connect(addr).await.unwrap(), get(uri, headers)).await
}

/// Sends an IMDS token request (`GET uri`, `Metadata: true`) for `host` to `addr`, authenticated
/// by the header `auth` (name, value).
async fn imds_get(
    addr: SocketAddr,
    uri: &str,
    host: &str,
    auth: (&str, &str),
) -> (StatusCode, HeaderMap, Bytes) {
    get_from(addr, uri, &[("host", host), ("metadata", "true"), auth]).await
}

fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method("GET").uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn json(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// The `Proxy-Authorization` value a client sends for a proxy URL `http://teleport:SECRET@...`.
fn proxy_auth(secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("teleport:{secret}"))
    )
}

/// Sends `CONNECT authority` (with `Proxy-Authorization` for `secret` when given) and reads the
/// response head; returns the stream, the status code and the head.
async fn connect_as(
    proxy: SocketAddr,
    authority: &str,
    secret: Option<&str>,
) -> (TcpStream, u16, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let auth = secret
        .map(|s| format!("Proxy-Authorization: {}\r\n", proxy_auth(s)))
        .unwrap_or_default();
    s.write_all(
        format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "closed: {head:?}");
        head.push(b[0]);
    }
    let text = String::from_utf8(head).unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (s, code, text)
}

/// `CONNECT` with the session's secret.
async fn connect(f: &Fixture, authority: &str) -> (TcpStream, u16) {
    let (s, code, _) = connect_as(f.proxy.addr(), authority, Some(f.proxy.secret())).await;
    (s, code)
}

async fn tls_to(
    f: &Fixture,
    host: &str,
    ca_pem: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let (s, code) = connect(f, &format!("{host}:443")).await;
    assert_eq!(code, 200);
    let cfg =
        pki::tls::client_config(None, None, &[ca_pem.to_owned()], false, &[b"http/1.1"]).unwrap();
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, s)
        .await
        .unwrap()
}

/// Writes raw bytes and reads whatever comes back until the peer closes (or 10 s).
async fn raw(proxy: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn app_service_token(f: &Fixture, resource: &str) -> String {
    let env: std::collections::HashMap<_, _> = f.proxy.env().into_iter().collect();
    let endpoint = &env["IDENTITY_ENDPOINT"];
    let path = endpoint
        .strip_prefix(&format!("http://{}", f.proxy.addr()))
        .unwrap();
    let uri = format!(
        "{path}?api-version=2019-08-01&resource={}&mi_res_id={}",
        urlencode(resource),
        urlencode(&IDENTITY.to_uppercase())
    );
    let s = TcpStream::connect(f.proxy.addr()).await.unwrap();
    let (st, _, body) = send(
        s,
        get(
            &uri,
            &[
                ("host", "127.0.0.1"),
                ("x-identity-header", &env["IDENTITY_HEADER"]),
                ("metadata", "true"),
            ],
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body:?}");
    let v = json(&body);
    for k in [
        "access_token",
        "expires_on",
        "resource",
        "token_type",
        "client_id",
    ] {
        assert!(v[k].is_string(), "{k} in {v}");
    }
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["resource"], resource);
    v["access_token"].as_str().unwrap().to_owned()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn arm_request_is_intercepted_and_forwarded_with_a_local_token() {
    let f = fixture().await;
    let jwt = app_service_token(&f, ARM_RESOURCE).await;
    let claims = verify_local_token(&jwt, &f.key.public_key_der).unwrap();
    assert_eq!(claims.aud, ARM_RESOURCE);
    assert_eq!(claims.sub, IDENTITY);
    assert_eq!(claims.xms_mirid, IDENTITY);
    assert_eq!(claims.tid, TENANT);
    assert_eq!(claims.iss, "teleport");
    assert!(claims.exp - claims.iat <= 3600);
    // another key does not verify it
    let other = pki::generate_key().unwrap();
    assert!(verify_local_token(&jwt, &other.public_key_der).is_err());

    // the CA the client trusts is the file the proxy wrote
    let ca_pem = std::fs::read_to_string(f.proxy.local_ca_path()).unwrap();
    let tls = tls_to(&f, "management.azure.com", &ca_pem).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let auth = format!("Bearer {jwt}");
    let req = get(
        "/subscriptions?api-version=2022-12-01",
        &[
            ("host", "management.azure.com"),
            ("authorization", &auth),
            ("x-ms-client-request-id", "abc"),
        ],
    );
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&body)["value"][0]["subscriptionId"], SUB);

    {
        let reqs = f.rec.reqs.lock().unwrap();
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert_eq!(r.method(), http::Method::GET);
        assert_eq!(
            r.uri().to_string(),
            "https://management.azure.com/subscriptions?api-version=2022-12-01"
        );
        assert_eq!(r.headers()["x-ms-client-request-id"], "abc");
        assert_eq!(r.headers()["host"], "management.azure.com");
        let bearer = r.headers()["authorization"].to_str().unwrap();
        let token = bearer.strip_prefix("Bearer ").unwrap();
        assert_eq!(
            verify_local_token(token, &f.key.public_key_der)
                .unwrap()
                .aud,
            ARM_RESOURCE
        );
    }

    // same connection: a POST with a body is forwarded unchanged
    let req = Request::builder()
        .method("POST")
        .uri("/subscriptions/s/resourceGroups/G/providers/Microsoft.Cache/redis/N/listKeys?api-version=2024-11-01")
        .header("host", "management.azure.com")
        .header("authorization", &auth)
        .body(Full::new(Bytes::from_static(b"{\"k\":1}")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    {
        let reqs = f.rec.reqs.lock().unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].method(), http::Method::POST);
        assert_eq!(reqs[1].body().as_ref(), b"{\"k\":1}");
    }

    // no token, a forged token, a token of another session: refused locally
    for bad in [
        None,
        Some("Bearer not.a.jwt".to_string()),
        Some(format!("Bearer {}x", jwt)),
    ] {
        let mut h = vec![("host", "management.azure.com")];
        if let Some(b) = &bad {
            h.push(("authorization", b));
        }
        let resp = sender
            .send_request(get("/subscriptions?api-version=2022-12-01", &h))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(json(&body)["error"]["message"].is_string());
    }
    let other_fixture = fixture().await;
    let foreign = app_service_token(&other_fixture, ARM_RESOURCE).await;
    let foreign = format!("Bearer {foreign}");
    let resp = sender
        .send_request(get(
            "/subscriptions",
            &[
                ("host", "management.azure.com"),
                ("authorization", &foreign),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(f.rec.reqs.lock().unwrap().len(), 2);

    // upstream errors become ARM-style errors with their status
    let resp = sender
        .send_request(get(
            "/fail",
            &[("host", "management.azure.com"), ("authorization", &auth)],
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&body)["error"]["message"], "cluster unreachable");
}

#[tokio::test]
async fn other_azure_hosts_keep_their_host_and_port() {
    let f = fixture().await;
    let jwt = app_service_token(&f, "https://vault.azure.net").await;
    let ca = f.proxy.local_ca_pem().to_owned();
    let tls = tls_to(&f, "myvault.vault.azure.net", &ca).await;
    let auth = format!("Bearer {jwt}");
    let (st, _, _) = send(
        tls,
        get(
            "/secrets/x?api-version=7.4",
            &[
                ("host", "myvault.vault.azure.net"),
                ("authorization", &auth),
            ],
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let reqs = f.rec.reqs.lock().unwrap();
    assert_eq!(
        reqs[0].uri().to_string(),
        "https://myvault.vault.azure.net/secrets/x?api-version=7.4"
    );
}

#[tokio::test]
async fn token_endpoints_of_every_style() {
    let f = fixture().await;
    let addr = f.proxy.addr();
    let secret = f.proxy.secret().to_owned();
    let env: std::collections::HashMap<_, _> = f.proxy.env().into_iter().collect();
    assert_eq!(env["IDENTITY_HEADER"], secret);
    assert_eq!(env["MSI_SECRET"], secret);
    assert_eq!(
        env["MSI_ENDPOINT"],
        format!("http://{addr}/{secret}/msi/token")
    );
    let r = urlencode(ARM_RESOURCE);
    let id = urlencode(IDENTITY);
    let id_lower = urlencode(&IDENTITY.to_lowercase());

    let check_ok = |st: StatusCode, body: &Bytes, keys: &[&str]| {
        assert_eq!(st, StatusCode::OK, "{body:?}");
        let v = json(body);
        for k in keys {
            assert!(v[k].is_string(), "{k} must be a string in {v}");
        }
        let jwt = v["access_token"].as_str().unwrap();
        let c = verify_local_token(jwt, &f.key.public_key_der).unwrap();
        assert_eq!(c.aud, ARM_RESOURCE);
        assert_eq!(v["expires_on"].as_str().unwrap(), c.exp.to_string());
    };
    let legacy_keys = ["access_token", "expires_on", "resource", "token_type"];
    let imds_keys = [
        "access_token",
        "expires_on",
        "expires_in",
        "resource",
        "token_type",
        "not_before",
    ];

    // legacy MSI: secret in the path, GET ...
    let uri =
        format!("/{secret}/msi/token?resource={r}&msi_res_id={id_lower}&api-version=2017-09-01");
    let (st, _, body) = get_from(addr, &uri, &[("host", "x")]).await;
    check_ok(st, &body, &legacy_keys);
    // ... or a form POST (msrestazure's Cloud Shell style)
    let req = Request::builder()
        .method("POST")
        .uri(format!("/{secret}/msi/token"))
        .header("host", "x")
        .header("metadata", "true")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!(
            "resource={r}&msi_res_id={id}"
        ))))
        .unwrap();
    let (st, _, body) = send(TcpStream::connect(addr).await.unwrap(), req).await;
    check_ok(st, &body, &legacy_keys);
    // wrong secret in the path
    let uri = format!("/nope/msi/token?resource={r}&api-version=2017-09-01");
    let (st, _, body) = get_from(addr, &uri, &[("host", "x")]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(json(&body).get("access_token").is_none());

    // IMDS style, origin-form, and absolute-form through the proxy
    let path = format!(
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource={r}&msi_res_id={id}"
    );
    let (st, _, body) = imds_get(addr, &path, "x", ("x-identity-header", &secret)).await;
    check_ok(st, &body, &imds_keys);
    let abs = format!("http://169.254.169.254{path}");
    let auth = proxy_auth(&secret);
    let (st, _, body) = imds_get(
        addr,
        &abs,
        "169.254.169.254",
        ("proxy-authorization", &auth),
    )
    .await;
    check_ok(st, &body, &imds_keys);
    let v = json(&body);
    let exp_in: i64 = v["expires_in"].as_str().unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&exp_in), "{exp_in}");
    // IMDS without the Metadata header
    let (st, _, body) = get_from(
        addr,
        &abs,
        &[("host", "169.254.169.254"), ("proxy-authorization", &auth)],
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(json(&body)["error"], "invalid_request");

    // App Service through the proxy (absolute-form to the proxy itself)
    let abs = format!(
        "{}?api-version=2019-08-01&resource={r}",
        env["IDENTITY_ENDPOINT"]
    );
    let (st, _, body) =
        get_from(addr, &abs, &[("host", "x"), ("x-identity-header", &secret)]).await;
    check_ok(
        st,
        &body,
        &[
            "access_token",
            "expires_on",
            "resource",
            "token_type",
            "client_id",
        ],
    );
    // missing / wrong secret header
    let (st, _, body) = get_from(addr, &abs, &[("host", "x")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(json(&body).get("access_token").is_none());
    let (st, _, body) =
        get_from(addr, &abs, &[("host", "x"), ("x-identity-header", "wrong")]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(json(&body).get("access_token").is_none());

    // wrong identity (each parameter name), missing resource
    let other = urlencode("/subscriptions/x/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other");
    for q in [
        format!("mi_res_id={other}"),
        format!("msi_res_id={other}"),
        "client_id=33333333-3333-3333-3333-333333333333".to_string(),
        "object_id=33333333-3333-3333-3333-333333333333".to_string(),
        "principal_id=33333333-3333-3333-3333-333333333333".to_string(),
    ] {
        let uri = format!(
            "{}?api-version=2019-08-01&resource={r}&{q}",
            env["IDENTITY_ENDPOINT"]
        );
        let (st, _, body) =
            get_from(addr, &uri, &[("host", "x"), ("x-identity-header", &secret)]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}");
        let v = json(&body);
        assert_eq!(v["error"], "invalid_request");
        assert!(v["error_description"]
            .as_str()
            .unwrap()
            .contains("unexpected value"));
        let imds =
            format!("/metadata/identity/oauth2/token?api-version=2018-02-01&resource={r}&{q}");
        let (st, _, _) = imds_get(addr, &imds, "x", ("x-identity-header", &secret)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}");
    }
    let uri = format!("{}?api-version=2019-08-01", env["IDENTITY_ENDPOINT"]);
    let (st, _, body) =
        get_from(addr, &uri, &[("host", "x"), ("x-identity-header", &secret)]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        json(&body)["error_description"],
        "missing value for parameter 'resource'"
    );

    // Teleport's token host names, through CONNECT + TLS
    let tls = tls_to(&f, "azure-identity.teleport.dev", f.proxy.local_ca_pem()).await;
    let uri = format!("/?api-version=2019-08-01&resource={r}&mi_res_id={id}");
    let (st, _, body) = send(
        tls,
        get(
            &uri,
            &[
                ("host", "azure-identity.teleport.dev"),
                ("x-identity-header", &secret),
            ],
        ),
    )
    .await;
    check_ok(st, &body, &["access_token", "expires_on", "client_id"]);
    // nothing of this reached the upstream
    assert!(f.rec.reqs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn expired_session_gets_no_token() {
    let f = fixture_with(|c| {
        c.token_expiry = time::OffsetDateTime::now_utc() - time::Duration::minutes(1)
    })
    .await;
    let uri = format!(
        "/identity?api-version=2019-08-01&resource={}",
        urlencode(ARM_RESOURCE)
    );
    let (st, _, body) = send(
        TcpStream::connect(f.proxy.addr()).await.unwrap(),
        get(
            &uri,
            &[("host", "x"), ("x-identity-header", f.proxy.secret())],
        ),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(json(&body).get("access_token").is_none());
}

#[tokio::test]
async fn token_lifetime_is_capped_by_the_certificate() {
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    let f = fixture_with(|c| c.token_expiry = expiry).await;
    let jwt = app_service_token(&f, ARM_RESOURCE).await;
    let c = verify_local_token(&jwt, &f.key.public_key_der).unwrap();
    assert_eq!(c.exp, expiry.unix_timestamp());
}

async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn other_hosts_are_tunnelled() {
    let f = fixture().await;
    let echo = echo_server().await;
    let (mut s, code) = connect(&f, &echo.to_string()).await;
    assert_eq!(code, 200);
    s.write_all(b"hello through the tunnel").await.unwrap();
    let mut buf = [0u8; 24];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello through the tunnel");
    assert!(f.rec.reqs.lock().unwrap().is_empty());
}

/// A minimal upstream HTTP proxy: answers CONNECT with 200 and then echoes; records the
/// request heads.
async fn fake_upstream_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn other_hosts_go_through_the_upstream_proxy() {
    let (up, seen) = fake_upstream_proxy().await;
    let f = fixture_with(|c| c.upstream_proxy = Some(format!("http://user:pw@{up}"))).await;
    let (mut s, code) = connect(&f, "example.com:443").await;
    assert_eq!(code, 200);
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    let seen = seen.lock().unwrap();
    assert!(
        seen[0].starts_with("CONNECT example.com:443 HTTP/1.1\r\n"),
        "{seen:?}"
    );
    assert!(seen[0].contains("Proxy-Authorization: Basic dXNlcjpwdw=="));
}

#[tokio::test]
async fn misbehaving_clients_get_errors_and_never_crash_the_proxy() {
    let f = fixture().await;
    let addr = f.proxy.addr();

    let out = raw(addr, b"THIS IS NOT HTTP\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    let out = raw(
        addr,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");

    let mut big = b"GET /identity HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 200 * 1024));
    big.extend(b"\r\n\r\n");
    let out = raw(addr, &big).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");

    let (_, code) = connect(&f, "no-such-host.invalid:443").await;
    assert_eq!(code, 502);
    let (_, code) = connect(&f, "127.0.0.1:1").await;
    assert_eq!(code, 502);

    // garbage instead of a TLS ClientHello after CONNECT to an Azure host
    let (mut s, code) = connect(&f, "management.azure.com:443").await;
    assert_eq!(code, 200);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await;

    // a body over the cap on an intercepted connection: 413 without reading it
    let jwt = app_service_token(&f, ARM_RESOURCE).await;
    let mut tls = tls_to(&f, "management.azure.com", f.proxy.local_ca_pem()).await;
    let head = format!(
        "PUT /x HTTP/1.1\r\nHost: management.azure.com\r\nAuthorization: Bearer {jwt}\r\nContent-Length: {}\r\n\r\n",
        msi_proxy::MAX_BODY + 1
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 12];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 413");

    // a non-http absolute URL without CONNECT
    let out = raw(
        addr,
        format!(
            "GET https://management.azure.com/ HTTP/1.1\r\nHost: management.azure.com\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
            proxy_auth(f.proxy.secret())
        )
        .as_bytes(),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");

    // still serving
    app_service_token(&f, ARM_RESOURCE).await;
    assert!(f.rec.reqs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn local_ca_file_env_and_shutdown() {
    let f = fixture().await;
    let path = f.proxy.local_ca_path().to_owned();
    assert!(path.starts_with(f.dir.path()));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        f.proxy.local_ca_pem()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for p in [&path, &f.proxy.ca_bundle_path().to_owned()] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{p:?}");
        }
    }
    let bundle = std::fs::read_to_string(f.proxy.ca_bundle_path()).unwrap();
    assert!(bundle.starts_with(f.proxy.local_ca_pem()));

    let env = f.proxy.env();
    let map: std::collections::HashMap<_, _> = env.iter().cloned().collect();
    // the proxy URL carries the secret, which clients send as Proxy-Authorization
    let proxy_url = format!("http://teleport:{}@{}", f.proxy.secret(), f.proxy.addr());
    for k in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
        assert_eq!(map[k], proxy_url);
    }
    assert_eq!(
        map["IDENTITY_ENDPOINT"],
        format!("http://{}/identity", f.proxy.addr())
    );
    // Node reads NODE_EXTRA_CA_CERTS (not SSL_CERT_FILE): the same bundle
    assert_eq!(
        map["NODE_EXTRA_CA_CERTS"],
        f.proxy.ca_bundle_path().to_string_lossy()
    );
    assert_eq!(map["IDENTITY_HEADER"].len(), 40);
    assert_eq!(
        map["REQUESTS_CA_BUNDLE"],
        f.proxy.ca_bundle_path().to_string_lossy()
    );
    assert!(!map["NO_PROXY"].contains("azure"));
    let unix = format_exports(&env, "unix").unwrap();
    assert!(unix.contains(&format!("export HTTPS_PROXY={proxy_url}\n")));
    let ps = format_exports(&env, "powershell").unwrap();
    assert!(ps.contains(&format!("$Env:HTTPS_PROXY=\"{proxy_url}\"\n")));

    // a second session on the same path gets its own bundle; the first one's stays intact
    let key2 = pki::generate_key().unwrap();
    let mut c2 = config(&f.dir, &key2);
    c2.local_ca_path = path.clone();
    let second = MsiProxy::start(c2, Arc::new(Recorder::default()))
        .await
        .unwrap();
    assert_ne!(second.ca_bundle_path(), f.proxy.ca_bundle_path());
    assert!(std::fs::read_to_string(f.proxy.ca_bundle_path())
        .unwrap()
        .starts_with(f.proxy.local_ca_pem()));
    let second_bundle = second.ca_bundle_path().to_owned();
    drop(second);
    assert!(!second_bundle.exists());

    // shutdown closes the listener and removes the bundle
    let addr = f.proxy.addr();
    let bundle_path = f.proxy.ca_bundle_path().to_owned();
    f.proxy.shutdown().await;
    assert!(!bundle_path.exists());
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused);
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = pki::generate_key().unwrap();
    let rec: Arc<dyn Upstream> = Arc::new(Recorder::default());
    let mut c = config(&dir, &key);
    c.signing_key_pem = "nope".into();
    assert!(MsiProxy::start(c, rec.clone()).await.is_err());
    let mut c = config(&dir, &key);
    c.secret = Some("has space".into());
    assert!(MsiProxy::start(c, rec.clone()).await.is_err());
    let mut c = config(&dir, &key);
    c.secret = Some("fixed-secret".into());
    let p = MsiProxy::start(c, rec).await.unwrap();
    assert_eq!(p.secret(), "fixed-secret");
}

#[tokio::test]
async fn plain_http_requests_are_forwarded_in_origin_form() {
    let f = fixture().await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).await.unwrap() == 0 {
                return;
            }
            head.push(b[0]);
        }
        *seen2.lock().unwrap() = String::from_utf8_lossy(&head).into_owned();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Origin: 1\r\n\r\nhi")
            .await
            .unwrap();
    });
    let (st, h, body) = send(
        TcpStream::connect(f.proxy.addr()).await.unwrap(),
        get(
            &format!("http://{origin}/hello?x=1"),
            &[
                ("host", &origin.to_string()),
                ("proxy-connection", "keep-alive"),
                ("proxy-authorization", &proxy_auth(f.proxy.secret())),
            ],
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["x-origin"], "1");
    assert_eq!(body.as_ref(), b"hi");
    let seen = seen.lock().unwrap().to_lowercase();
    assert!(seen.starts_with("get /hello?x=1 http/1.1\r\n"), "{seen}");
    assert!(!seen.contains("proxy-connection"), "{seen}");
    assert!(!seen.contains("proxy-authorization"), "{seen}");

    // an unreachable origin: 502, not a hang or a crash
    let (st, _, _) = send(
        TcpStream::connect(f.proxy.addr()).await.unwrap(),
        get(
            "http://127.0.0.1:1/",
            &[
                ("host", "127.0.0.1:1"),
                ("proxy-authorization", &proxy_auth(f.proxy.secret())),
            ],
        ),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn random_bytes_never_crash_the_proxy() {
    let f = fixture().await;
    let addr = f.proxy.addr();
    let prefixes: [&[u8]; 5] = [
        b"",
        b"GET ",
        b"CONNECT management.azure.com:443 HTTP/1.1\r\n\r\n",
        b"CONNECT ",
        b"POST /identity HTTP/1.1\r\nContent-Length: 5\r\n",
    ];
    let mut tasks = Vec::new();
    for i in 0..100usize {
        let mut payload = prefixes[i % prefixes.len()].to_vec();
        let len = rand::random_range(1..4096usize);
        payload.extend((0..len).map(|_| rand::random::<u8>()));
        if i % 3 == 0 {
            payload.extend(b"\r\n\r\n");
        }
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return;
            };
            let _ = s.write_all(&payload).await;
            let _ = s.shutdown().await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    app_service_token(&f, ARM_RESOURCE).await;
    assert!(f.rec.reqs.lock().unwrap().is_empty());
}

/// Every way to a token needs the session's secret: any other local process (of any user) is
/// refused, whether it asks the IMDS path directly, goes through the proxy to 169.254.169.254, or
/// asks for a tunnel (intercepted or not).
#[tokio::test]
async fn a_local_process_without_the_secret_gets_no_token() {
    let f = fixture().await;
    let addr = f.proxy.addr();
    let secret = f.proxy.secret().to_owned();
    let r = urlencode(ARM_RESOURCE);
    let path = format!("/metadata/identity/oauth2/token?api-version=2018-02-01&resource={r}");
    let abs = format!("http://169.254.169.254{path}");
    let wrong = proxy_auth("0123456789abcdef0123456789abcdef01234567");
    let no_password = {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("teleport")
        )
    };
    let secret_as_user = {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{secret}:"))
        )
    };
    let bad_auth: [Option<&str>; 6] = [
        None,
        Some(wrong.as_str()),
        Some(no_password.as_str()),
        Some(secret_as_user.as_str()),
        Some("Basic %%%not-base64"),
        Some("Bearer whatever"),
    ];

    // The IMDS path asked directly: 401 with a message saying what to do.
    for auth in bad_auth {
        let mut h = vec![("host", "127.0.0.1"), ("metadata", "true")];
        if let Some(a) = auth {
            h.push(("proxy-authorization", a));
        }
        let (st, _, body) = get_from(addr, &path, &h).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{auth:?}: {body:?}");
        let v = json(&body);
        assert!(v.get("access_token").is_none(), "{v}");
        let msg = v["error_description"].as_str().unwrap();
        assert!(
            msg.contains("secret") && msg.contains("HTTP_PROXY"),
            "{msg}"
        );
    }
    let (st, _, _) = imds_get(addr, &path, "127.0.0.1", ("x-identity-header", "wrong")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Through the proxy to 169.254.169.254, and to any other plain-HTTP host: 407 asking for
    // Basic credentials.
    for uri in [abs.as_str(), "http://127.0.0.2:9/x"] {
        for auth in bad_auth {
            let mut h = vec![("host", "169.254.169.254"), ("metadata", "true")];
            if let Some(a) = auth {
                h.push(("proxy-authorization", a));
            }
            let (st, headers, body) = get_from(addr, uri, &h).await;
            assert_eq!(
                st,
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "{uri} {auth:?}: {body:?}"
            );
            let challenge = headers["proxy-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Basic realm="), "{challenge}");
            assert!(!String::from_utf8_lossy(&body).contains("access_token"));
        }
    }

    // CONNECT without the credentials: 407 for intercepted Azure hosts, Teleport's token hosts
    // and plain tunnels alike; nothing is dialled.
    let echo = echo_server().await.to_string();
    for authority in [
        "management.azure.com:443",
        "azure-identity.teleport.dev:443",
        echo.as_str(),
    ] {
        for secret in [None, Some("not-the-secret")] {
            let (_, code, head) = connect_as(addr, authority, secret).await;
            assert_eq!(code, 407, "{authority} {secret:?}: {head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("proxy-authenticate: basic realm="),
                "{head}"
            );
        }
    }
    assert!(f.rec.reqs.lock().unwrap().is_empty());

    // With the secret each way is served.
    let (st, _, body) = imds_get(
        addr,
        &abs,
        "169.254.169.254",
        ("proxy-authorization", &proxy_auth(&secret)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body:?}");
    let jwt = json(&body)["access_token"].as_str().unwrap().to_owned();
    verify_local_token(&jwt, &f.key.public_key_der).unwrap();
    let (st, _, body) = imds_get(addr, &path, "127.0.0.1", ("x-identity-header", &secret)).await;
    assert_eq!(st, StatusCode::OK, "{body:?}");
    // IMDS inside an authenticated tunnel to Teleport's token host
    let tls = tls_to(&f, "azure-identity.teleport.dev", f.proxy.local_ca_pem()).await;
    let (st, _, body) = send(
        tls,
        get(
            &path,
            &[
                ("host", "azure-identity.teleport.dev"),
                ("metadata", "true"),
            ],
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body:?}");
    let (mut s, code) = connect(&f, &echo).await;
    assert_eq!(code, 200);
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}
