//! The forward proxy (HTTP CONNECT with TLS interception for Azure hosts, plain HTTP for IMDS),
//! request dispatch, fault knobs and shared state.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::fixture::{World, DEFAULT_TOKEN_LIFETIME_SECS};
use crate::jwt::Signer;
use crate::pki::{self, Ca};
use crate::Error;

/// The IMDS address.
pub const IMDS_HOST: &str = "169.254.169.254";
/// ARM.
pub const ARM_HOST: &str = "management.azure.com";
/// Entra ID.
pub const LOGIN_HOST: &str = "login.microsoftonline.com";
/// Where the attestation AIA URLs point.
pub const PKI_HOST: &str = "www.microsoft.com";

const MAX_BODY: usize = 1 << 20;

/// A response as the emulator builds it.
pub type Resp = Response<Full<Bytes>>;

/// A fault to inject.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Substring of `host + path` the fault applies to.
    pub pattern: String,
    /// How many more requests it applies to.
    pub remaining: u32,
    /// Status to answer with (0: do not fail, only delay).
    pub status: u16,
    /// Body to answer with.
    pub body: Option<String>,
    /// Delay before answering.
    pub delay: Option<Duration>,
}

/// Shared state of a running emulator.
pub struct State {
    world: World,
    ca: Arc<Ca>,
    tls: Arc<rustls::ServerConfig>,
    signer: Signer,
    token_lifetime_secs: AtomicU64,
    faults: Mutex<Vec<Fault>>,
    keys: RwLock<HashMap<String, (String, String)>>,
    counts: Mutex<HashMap<String, usize>>,
    identity_header: String,
    revoked_before: std::sync::atomic::AtomicI64,
    attest: std::sync::OnceLock<Result<Arc<crate::imds::AttestPki>, String>>,
    /// Held while a key is regenerated (its server's passwords changed, then the keys stored).
    regenerating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl State {
    /// Builds the state: CA, token key.
    pub fn new(world: World) -> Result<Self, Error> {
        let ca = Arc::new(Ca::generate("Azure Emulator Root CA")?);
        let tls = pki::server_config(ca.clone())?;
        let lifetime = world
            .fixture
            .token_lifetime_secs
            .unwrap_or(DEFAULT_TOKEN_LIFETIME_SECS);
        Ok(Self {
            world,
            ca,
            tls,
            signer: Signer::generate()?,
            token_lifetime_secs: AtomicU64::new(lifetime),
            faults: Mutex::new(Vec::new()),
            keys: RwLock::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            revoked_before: std::sync::atomic::AtomicI64::new(i64::MIN),
            identity_header: {
                let bytes: [u8; 10] = rand::random();
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            },
            attest: std::sync::OnceLock::new(),
            regenerating: tokio::sync::Mutex::new(()),
        })
    }

    /// The world.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// CA PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    /// The attestation chain, generated on first use.
    pub fn attest_pki(&self) -> Result<Arc<crate::imds::AttestPki>, String> {
        self.attest
            .get_or_init(|| {
                crate::imds::AttestPki::generate()
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }

    /// Tokens issued before this second (`iat`) are treated as expired.
    pub fn revoked_before(&self) -> i64 {
        self.revoked_before.load(Ordering::Relaxed)
    }

    pub(crate) fn expire_issued_tokens(&self) {
        // Tokens minted in this very second are covered too.
        self.revoked_before.store(now() + 1, Ordering::Relaxed);
    }

    /// The secret of the App Service endpoint (`IDENTITY_HEADER`).
    pub fn identity_header(&self) -> &str {
        &self.identity_header
    }

    /// The token signer.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Lifetime of new tokens.
    pub fn token_lifetime(&self) -> u64 {
        self.token_lifetime_secs.load(Ordering::Relaxed)
    }

    pub(crate) fn set_token_lifetime(&self, d: Duration) {
        self.token_lifetime_secs
            .store(d.as_secs(), Ordering::Relaxed);
    }

    pub(crate) fn add_fault(&self, fault: Fault) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.push(fault);
        }
    }

    fn take_fault(&self, target: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().ok()?;
        let idx = faults
            .iter()
            .position(|f| f.remaining > 0 && target.contains(&f.pattern))?;
        let fault = faults.get_mut(idx)?;
        fault.remaining -= 1;
        let taken = fault.clone();
        if fault.remaining == 0 {
            faults.remove(idx);
        }
        Some(taken)
    }

    fn count(&self, target: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(target.to_string()).or_default() += 1;
        }
    }

    pub(crate) fn request_count(&self, pattern: &str) -> usize {
        match self.counts.lock() {
            Ok(counts) => counts
                .iter()
                .filter(|(k, _)| k.contains(pattern))
                .map(|(_, v)| *v)
                .sum(),
            Err(_) => 0,
        }
    }

    /// Current keys of a Redis resource (by lower-cased resource ID), with rotation applied.
    pub fn keys_for(&self, id: &str, fixture_keys: (&str, &str)) -> (String, String) {
        if let Ok(keys) = self.keys.read() {
            if let Some(k) = keys.get(&id.to_ascii_lowercase()) {
                return k.clone();
            }
        }
        (fixture_keys.0.to_string(), fixture_keys.1.to_string())
    }

    /// Stores the keys of a Redis resource (by resource ID).
    pub(crate) fn store_keys(&self, id: &str, pair: (String, String)) {
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(id.to_ascii_lowercase(), pair);
        }
    }

    /// Serializes key regenerations.
    pub(crate) async fn regenerating(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.regenerating.lock().await
    }

    pub(crate) fn rotate_keys(&self, name: &str) -> Option<(String, String)> {
        let suffix = format!("/{}", name.to_ascii_lowercase());
        let id = crate::arm::all_key_holders(&self.world)
            .into_iter()
            .find(|id| id.to_ascii_lowercase().ends_with(&suffix))?;
        let pair = (fresh_key(), fresh_key());
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(id.to_ascii_lowercase(), pair.clone());
        }
        Some(pair)
    }
}

/// A new access key as Azure makes them: 32 random bytes in base64.
pub(crate) fn fresh_key() -> String {
    let bytes: [u8; 32] = rand::random();
    STANDARD.encode(bytes)
}

/// A request as handlers see it.
#[derive(Debug)]
pub struct Req {
    /// Method.
    pub method: Method,
    /// Host the client believes it talks to.
    pub host: String,
    /// Path, not decoded.
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The calling VM (name).
    pub vm: String,
}

impl Req {
    /// A query parameter (case-insensitive name).
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Form-encoded body pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

/// A JSON response.
pub fn json_resp(status: u16, body: &Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// A response with raw bytes.
pub fn raw_resp(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

/// Accepts proxy connections until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _)) => {
                        let state = state.clone();
                        let stop = stop.clone();
                        tokio::spawn(run_until_stop(stop, proxy_conn(stream, state)));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
}

async fn run_until_stop<F: std::future::Future<Output = ()>>(
    mut stop: watch::Receiver<bool>,
    fut: F,
) {
    if *stop.borrow() {
        return;
    }
    tokio::select! {
        _ = fut => {}
        _ = stop.changed() => {}
    }
}

async fn proxy_conn(stream: TcpStream, state: Arc<State>) {
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(proxy_request(req, state).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades()
        .await
    {
        tracing::debug!(error = %e, "proxy connection ended");
    }
}

/// The VM named by `Proxy-Authorization: Basic base64(vm:anything)`, else the default VM.
fn caller_vm(headers: &HeaderMap, state: &State) -> Result<String, Box<Resp>> {
    let Some(value) = headers.get(http::header::PROXY_AUTHORIZATION) else {
        return Ok(state.world.default_vm.clone());
    };
    let name = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| s.split(':').next().unwrap_or_default().to_string());
    match name {
        Some(name) if state.world.find_vm(&name).is_some() => Ok(name),
        _ => {
            let mut resp = raw_resp(407, "text/plain", "unknown VM in proxy credentials\n");
            resp.headers_mut().insert(
                http::header::PROXY_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"azure-emulator\""),
            );
            Err(Box::new(resp))
        }
    }
}

fn tls_host(host: &str) -> bool {
    matches!(host, ARM_HOST | LOGIN_HOST | PKI_HOST)
}

async fn proxy_request(req: Request<Incoming>, state: Arc<State>) -> Resp {
    let vm = match caller_vm(req.headers(), &state) {
        Ok(vm) => vm,
        Err(resp) => return *resp,
    };
    if req.method() == Method::CONNECT {
        let Some(authority) = req.uri().authority().cloned() else {
            return raw_resp(400, "text/plain", "CONNECT needs host:port\n");
        };
        let host = authority.host().to_ascii_lowercase();
        if !tls_host(&host) {
            tracing::debug!(%host, "refusing CONNECT to a host the emulator does not serve");
            return raw_resp(502, "text/plain", "host not served by the azure emulator\n");
        }
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => tls_conn(TokioIo::new(upgraded), host, vm, state).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        return Response::new(Full::new(Bytes::new()));
    }
    // Plain HTTP through the proxy (absolute URI), or sent straight to us (IMDS only).
    let host = req
        .uri()
        .host()
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| IMDS_HOST.to_string());
    if host != IMDS_HOST && host != PKI_HOST {
        return raw_resp(502, "text/plain", "host not served by the azure emulator\n");
    }
    dispatch(req, host, vm, &state).await
}

async fn tls_conn<IO>(io: IO, host: String, vm: String, state: Arc<State>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(state.tls.clone());
    let tls = match acceptor.accept(io).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(%host, error = %e, "TLS handshake failed");
            return;
        }
    };
    let svc = service_fn(move |req| {
        let state = state.clone();
        let host = host.clone();
        let vm = vm.clone();
        async move { Ok::<_, Infallible>(dispatch(req, host, vm, &state).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), svc)
        .await
    {
        tracing::debug!(error = %e, "TLS connection ended");
    }
}

async fn dispatch(req: Request<Incoming>, host: String, vm: String, state: &State) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return raw_resp(413, "text/plain", "request body too large or broken\n"),
    };
    let path = parts.uri.path().to_string();
    let query = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let target = format!("{host}{path}");
    state.count(&target);
    if let Some(fault) = state.take_fault(&target) {
        if let Some(delay) = fault.delay {
            tokio::time::sleep(delay).await;
        }
        if fault.status != 0 {
            let mut resp = match fault.body {
                Some(body) => raw_resp(fault.status, "application/json", body),
                None => json_resp(
                    fault.status,
                    &json!({"error": {"code": "InjectedFault", "message": "fault injected by the azure emulator"}}),
                ),
            };
            if fault.status == 429 {
                resp.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
            }
            return resp;
        }
    }
    let req = Req {
        method: parts.method,
        host: host.clone(),
        path,
        query,
        headers: parts.headers,
        body,
        vm,
    };
    tracing::debug!(method = %req.method, %target, vm = %req.vm, "request");
    match host.as_str() {
        IMDS_HOST => crate::imds::handle(&req, state),
        ARM_HOST => crate::arm::handle_async(&req, state).await,
        LOGIN_HOST => crate::entra::handle(&req, state),
        PKI_HOST => crate::imds::handle_pki(&req, state),
        _ => raw_resp(404, "text/plain", "not found\n"),
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
