//! Connection handling: the forward proxy, TLS interception and the token endpoints.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::localca::LocalCa;
use crate::token::{self, TokenSigner};
use crate::{MsiProxyError, Upstream, MAX_BODY};

type Body = Full<Bytes>;

/// Hosts answered locally when reached through `CONNECT` (Teleport's token host names).
const TOKEN_HOSTS: &[&str] = &["azure-identity.teleport.dev", "azure-msi.teleport.dev"];
/// The IMDS address clients reach through `HTTP_PROXY`.
const IMDS_HOST: &str = "169.254.169.254";
/// The IMDS token path.
const IMDS_TOKEN_PATH: &str = "/metadata/identity/oauth2/token";
/// Query/form parameters naming the identity; each must match the session's when given.
const IDENTITY_PARAMS: &[&str] = &[
    "mi_res_id",
    "msi_res_id",
    "client_id",
    "clientid",
    "object_id",
    "principal_id",
];
/// Header bytes buffered per request (larger headers get 431).
const MAX_HEADER_BUF: usize = 64 * 1024;
/// Largest token request body.
const MAX_TOKEN_REQUEST_BODY: usize = 64 * 1024;
/// Time allowed for a request's headers, a TLS handshake, or dialling a host.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for a plain HTTP request forwarded to another host.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);
/// The user name in the exported proxy URL (`http://teleport:SECRET@127.0.0.1:PORT`); only the
/// password (the secret) is checked.
pub(crate) const PROXY_USER: &str = "teleport";
/// The realm of the `Proxy-Authenticate` challenge.
const PROXY_REALM: &str = "Basic realm=\"Teleport Azure proxy\"";
/// Longest `Proxy-Authorization` value looked at (a Basic user:secret is far shorter).
const MAX_PROXY_AUTH: usize = 1024;

pub(crate) struct Shared {
    pub(crate) addr: SocketAddr,
    pub(crate) identity: String,
    pub(crate) tenant_id: Option<String>,
    pub(crate) token_expiry: OffsetDateTime,
    pub(crate) secret: String,
    pub(crate) signer: TokenSigner,
    pub(crate) ca: LocalCa,
    pub(crate) upstream: Arc<dyn Upstream>,
    pub(crate) upstream_proxy: Option<ProxyTarget>,
    pub(crate) closing: watch::Receiver<bool>,
}

/// An upstream HTTP proxy for non-Azure hosts.
#[derive(Debug, Clone)]
pub(crate) struct ProxyTarget {
    host: String,
    port: u16,
    /// `Proxy-Authorization` value when the URL carries credentials.
    auth: Option<String>,
}

impl ProxyTarget {
    pub(crate) fn parse(s: &str) -> Result<Self, MsiProxyError> {
        let with_scheme;
        let s = if s.contains("://") {
            s
        } else {
            with_scheme = format!("http://{s}");
            &with_scheme
        };
        let url = url::Url::parse(s)
            .map_err(|e| MsiProxyError::Config(format!("upstream proxy {s:?}: {e}")))?;
        if url.scheme() != "http" {
            return Err(MsiProxyError::Config(format!(
                "upstream proxy {:?}: only http:// proxies are supported",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| MsiProxyError::Config("upstream proxy has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let auth = if url.username().is_empty() {
            None
        } else {
            let decode = |v: &str| {
                url::form_urlencoded::parse(format!("v={v}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            let user = decode(url.username());
            let pass = decode(url.password().unwrap_or(""));
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            ))
        };
        Ok(Self { host, port, auth })
    }
}

/// Resolves once the proxy shuts down (or is dropped).
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// Runs `f` until it ends or the proxy shuts down (or is dropped).
async fn guarded<F: Future<Output = ()>>(mut closing: watch::Receiver<bool>, f: F) {
    tokio::select! {
        _ = f => {}
        _ = closed(&mut closing) => {}
    }
}

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut closing = shared.closing.clone();
    loop {
        tokio::select! {
            _ = closed(&mut closing) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let sh = shared.clone();
                    tokio::spawn(guarded(shared.closing.clone(), async move {
                        sh.serve_connection(tcp, peer).await;
                    }));
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "Azure local proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

fn http1_server() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(IO_TIMEOUT)
        .max_buf_size(MAX_HEADER_BUF);
    b
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// An IMDS-style error (`{"error","error_description"}`).
fn token_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// An ARM-style error (`{"error":{"code","message"}}`), which `az` prints.
fn arm_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// 407: the proxy needs the session's secret as Basic credentials.
fn proxy_auth_required() -> Response<Body> {
    let mut r = arm_error(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "ProxyAuthenticationRequired",
        "the Teleport Azure proxy needs this session's secret: use the HTTPS_PROXY / HTTP_PROXY \
         printed by tsh proxy azure (http://teleport:SECRET@127.0.0.1:PORT), which clients send \
         as Proxy-Authorization",
    );
    r.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static(PROXY_REALM),
    );
    r
}

/// The password of a `Basic` credential (`user:password`, base64), when the value is one.
fn basic_password(value: &[u8]) -> Option<Vec<u8>> {
    if value.len() > MAX_PROXY_AUTH {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    decoded.get(colon + 1..).map(<[u8]>::to_vec)
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// Why a CONNECT target could not be reached (the client gets 502 with the
/// text).
#[derive(Debug, thiserror::Error)]
enum DialError {
    /// Connecting to the target itself failed.
    #[error("{0}")]
    Connect(#[source] std::io::Error),
    /// Connecting to the upstream proxy failed.
    #[error("upstream proxy {host}:{port}: {source}")]
    UpstreamConnect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    /// Writing to or reading from the upstream proxy failed.
    #[error("{0}")]
    UpstreamIo(#[source] std::io::Error),
    /// The upstream proxy closed the connection before its answer ended.
    #[error("upstream proxy closed the connection")]
    UpstreamClosed,
    /// The upstream proxy's answer head is longer than we read.
    #[error("upstream proxy response head too large")]
    HeadTooLarge,
    /// The upstream proxy's status line has no status code.
    #[error("bad upstream proxy response {0:?}")]
    BadResponse(String),
    /// The upstream proxy refused the CONNECT.
    #[error("upstream proxy answered {0} to CONNECT")]
    Refused(u16),
    /// Nothing within [`IO_TIMEOUT`].
    #[error("timed out")]
    TimedOut,
}

enum BodyError {
    TooLarge,
    Read(String),
}

async fn read_body(headers: &HeaderMap, body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge)
        }
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

fn body_error_response(e: BodyError, limit: usize) -> Response<Body> {
    match e {
        BodyError::TooLarge => arm_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLarge",
            &format!("the request body exceeds {limit} bytes"),
        ),
        BodyError::Read(e) => arm_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("cannot read the request body: {e}"),
        ),
    }
}

fn strip_brackets(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = header_str(headers, "authorization")?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Which token protocol a local request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    AppService,
    LegacyMsi,
    Imds,
}

impl Shared {
    fn secret_matches(&self, candidate: &str) -> bool {
        self.secret_bytes_match(candidate.as_bytes())
    }

    /// Constant-time comparison with the session's secret (the length is not secret).
    fn secret_bytes_match(&self, candidate: &[u8]) -> bool {
        bool::from(candidate.ct_eq(self.secret.as_bytes()))
    }

    /// Whether a `Proxy-Authorization` header carries the session's secret as the password of
    /// Basic credentials (any user name).
    fn proxy_authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::PROXY_AUTHORIZATION)
            .iter()
            .filter_map(|v| basic_password(v.as_bytes()))
            .any(|p| self.secret_bytes_match(&p))
    }

    fn intercepts(host: &str) -> bool {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        TOKEN_HOSTS.contains(&h.as_str()) || azure_endpoints::cloud::is_azure_endpoint(&h)
    }

    fn is_self(&self, host: &str, port: u16) -> bool {
        let host = strip_brackets(host);
        port == self.addr.port()
            && (host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback() || ip == self.addr.ip()))
    }

    async fn serve_connection(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        let sh = self.clone();
        let svc = service_fn(move |req| {
            let sh = sh.clone();
            async move { Ok::<_, Infallible>(sh.outer(req).await) }
        });
        if let Err(e) = http1_server()
            .serve_connection(TokioIo::new(tcp), svc)
            .with_upgrades()
            .await
        {
            tracing::debug!(%peer, error = %e, "Azure local proxy: connection ended with an error");
        }
    }

    /// A request on the proxy port itself.
    ///
    /// Everything used as a proxy (`CONNECT`, absolute-form requests to other hosts, IMDS at
    /// 169.254.169.254) needs the session's secret in `Proxy-Authorization` (407 otherwise);
    /// requests to the proxy itself go to the token endpoints, which check the secret their own
    /// way.
    async fn outer(self: &Arc<Self>, mut req: Request<Incoming>) -> Response<Body> {
        let authorized = self.proxy_authorized(req.headers());
        if req.method() == Method::CONNECT {
            if !authorized {
                return proxy_auth_required();
            }
            return self.connect(&mut req).await;
        }
        if let Some(host) = req.uri().host().map(str::to_owned) {
            // absolute-form: a proxied plain-HTTP request
            let port = req.uri().port_u16().unwrap_or(80);
            if self.is_self(&host, port) {
                return self.local(req, authorized).await;
            }
            if !authorized {
                return proxy_auth_required();
            }
            if req.uri().scheme_str() != Some("http") {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "only http:// URLs can be proxied without CONNECT",
                );
            }
            if host == IMDS_HOST {
                return self.local(req, true).await;
            }
            return self.forward_plain(req, &host, port).await;
        }
        self.local(req, authorized).await
    }

    async fn connect(self: &Arc<Self>, req: &mut Request<Incoming>) -> Response<Body> {
        let Some(authority) = req.uri().authority().cloned() else {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "CONNECT needs host:port",
            );
        };
        let host = strip_brackets(authority.host()).to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(443);
        let on_upgrade = hyper::upgrade::on(req);
        if Self::intercepts(&host) {
            let sh = self.clone();
            tokio::spawn(guarded(self.closing.clone(), async move {
                match on_upgrade.await {
                    Ok(up) => sh.intercept(up, host, port).await,
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            }));
            return empty(StatusCode::OK);
        }
        let mut target = match self.dial(&host, port).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(%host, port, error = %e, "CONNECT: dial failed");
                return arm_error(
                    StatusCode::BAD_GATEWAY,
                    "BadGateway",
                    &format!("cannot connect to {host}:{port}: {e}"),
                );
            }
        };
        tokio::spawn(guarded(self.closing.clone(), async move {
            match on_upgrade.await {
                Ok(up) => {
                    let mut client = TokioIo::new(up);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut target).await;
                }
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        }));
        empty(StatusCode::OK)
    }

    /// Opens a TCP stream to `host:port`, through the upstream proxy when configured.
    async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, DialError> {
        let work = async {
            match &self.upstream_proxy {
                None => TcpStream::connect((host, port))
                    .await
                    .map_err(DialError::Connect),
                Some(p) => {
                    let mut s = TcpStream::connect((p.host.as_str(), p.port))
                        .await
                        .map_err(|source| DialError::UpstreamConnect {
                            host: p.host.clone(),
                            port: p.port,
                            source,
                        })?;
                    let target = if host.contains(':') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    };
                    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
                    if let Some(a) = &p.auth {
                        head.push_str(&format!("Proxy-Authorization: {a}\r\n"));
                    }
                    head.push_str("\r\n");
                    s.write_all(head.as_bytes())
                        .await
                        .map_err(DialError::UpstreamIo)?;
                    let status = read_response_head(&mut s).await?;
                    if !(200..300).contains(&status) {
                        return Err(DialError::Refused(status));
                    }
                    Ok(s)
                }
            }
        };
        tokio::time::timeout(IO_TIMEOUT, work)
            .await
            .map_err(|_| DialError::TimedOut)?
    }

    /// TLS interception of an Azure (or token) host.
    async fn intercept(self: Arc<Self>, up: hyper::upgrade::Upgraded, host: String, port: u16) {
        let acceptor = tokio_rustls::LazyConfigAcceptor::new(
            rustls::server::Acceptor::default(),
            TokioIo::new(up),
        );
        let start = match tokio::time::timeout(IO_TIMEOUT, acceptor).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%host, error = %e, "TLS ClientHello refused");
                return;
            }
            Err(_) => return,
        };
        let sni = start
            .client_hello()
            .server_name()
            .map(|s| s.trim_end_matches('.').to_ascii_lowercase());
        let name = match sni {
            Some(s) if Self::intercepts(&s) => s,
            _ => host.trim_end_matches('.').to_owned(),
        };
        let config = match self.ca.server_config(&name) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(host = %name, error = %e, "cannot issue a local certificate");
                return;
            }
        };
        let tls = match tokio::time::timeout(IO_TIMEOUT, start.into_stream(config)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::debug!(host = %name, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        };
        let sh = self.clone();
        let name = Arc::new(name);
        let svc = service_fn(move |req| {
            let sh = sh.clone();
            let name = name.clone();
            async move { Ok::<_, Infallible>(sh.inner(req, &name, port).await) }
        });
        if let Err(e) = http1_server()
            .serve_connection(TokioIo::new(tls), svc)
            .await
        {
            tracing::debug!(%host, error = %e, "intercepted connection ended with an error");
        }
    }

    /// A request inside an intercepted TLS connection to `host:port`.
    async fn inner(&self, req: Request<Incoming>, host: &str, port: u16) -> Response<Body> {
        if TOKEN_HOSTS.contains(&host) {
            // the CONNECT that opened this tunnel proved the secret
            return self.local(req, true).await;
        }
        let (parts, body) = req.into_parts();
        let body = match read_body(&parts.headers, body, MAX_BODY).await {
            Ok(b) => b,
            Err(e) => return body_error_response(e, MAX_BODY),
        };
        let Some(jwt) = bearer(&parts.headers) else {
            return arm_error(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "missing bearer token: get one from the managed identity endpoint (IDENTITY_ENDPOINT) of this proxy",
            );
        };
        if let Err(e) = token::verify_local_token(jwt, self.signer.public_point()) {
            return arm_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                &format!("the bearer token was not issued by this Teleport proxy: {e}"),
            );
        }
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let authority = if port == 443 {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };
        let uri: Uri = match format!("https://{authority}{pq}").parse() {
            Ok(u) => u,
            Err(e) => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("invalid URL: {e}"),
                )
            }
        };
        let method = parts.method.clone();
        tracing::debug!(%method, %host, path = uri.path(), "forwarding Azure request");
        let mut out = Request::new(body);
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.headers_mut() = parts.headers;
        match self.upstream.forward(out).await {
            Ok(resp) => {
                let (mut p, b) = resp.into_parts();
                for h in api::http::HOP_BY_HOP {
                    p.headers.remove(*h);
                }
                let declared = p
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok());
                if method != Method::HEAD && declared.is_some_and(|n| n != b.len()) {
                    p.headers.remove(header::CONTENT_LENGTH);
                }
                Response::from_parts(p, Full::new(b))
            }
            Err(e) => arm_error(e.status, "TeleportProxyError", &e.message),
        }
    }

    /// A plain-HTTP request to another host, forwarded (through the upstream proxy if any).
    async fn forward_plain(&self, req: Request<Incoming>, host: &str, port: u16) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = match read_body(&parts.headers, body, MAX_BODY).await {
            Ok(b) => b,
            Err(e) => return body_error_response(e, MAX_BODY),
        };
        let work = async {
            let (stream, via_proxy) = match &self.upstream_proxy {
                Some(p) => (
                    TcpStream::connect((p.host.as_str(), p.port))
                        .await
                        .map_err(|e| format!("upstream proxy: {e}"))?,
                    Some(p),
                ),
                None => (
                    TcpStream::connect((strip_brackets(host), port))
                        .await
                        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?,
                    None,
                ),
            };
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let mut headers = parts.headers.clone();
            for h in api::http::HOP_BY_HOP {
                headers.remove(*h);
            }
            let uri = match via_proxy {
                Some(p) => {
                    if let Some(a) = p
                        .auth
                        .as_deref()
                        .and_then(|a| HeaderValue::from_str(a).ok())
                    {
                        headers.insert(header::PROXY_AUTHORIZATION, a);
                    }
                    parts.uri.clone()
                }
                None => parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
                    .parse::<Uri>()
                    .map_err(|e| e.to_string())?,
            };
            let mut out = Request::new(Full::new(body));
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri;
            *out.headers_mut() = headers;
            let resp = sender.send_request(out).await.map_err(|e| e.to_string())?;
            let (mut p, b) = resp.into_parts();
            let b = Limited::new(b, MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("response body: {e}"))?
                .to_bytes();
            for h in api::http::HOP_BY_HOP {
                p.headers.remove(*h);
            }
            p.headers.remove(header::CONTENT_LENGTH);
            Ok::<_, String>(Response::from_parts(p, Full::new(b)))
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, work).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => arm_error(StatusCode::BAD_GATEWAY, "BadGateway", &e),
            Err(_) => arm_error(
                StatusCode::GATEWAY_TIMEOUT,
                "GatewayTimeout",
                &format!("{host}:{port} did not answer in time"),
            ),
        }
    }

    /// The token endpoints. `proxy_authorized`: the request (or the tunnel it came through)
    /// proved the secret as proxy credentials.
    async fn local(&self, req: Request<Incoming>, proxy_authorized: bool) -> Response<Body> {
        let (parts, body) = req.into_parts();
        if parts.method != Method::GET && parts.method != Method::POST {
            return token_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "only GET and POST are supported",
            );
        }
        let body = match read_body(&parts.headers, body, MAX_TOKEN_REQUEST_BODY).await {
            Ok(b) => b,
            Err(e) => return body_error_response(e, MAX_TOKEN_REQUEST_BODY),
        };
        let path = parts.uri.path();
        let style = match self.classify(path, &parts.headers, proxy_authorized) {
            Ok(s) => s,
            Err(r) => return r,
        };
        let mut params: Vec<(String, String)> =
            url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let is_form = header_str(&parts.headers, "content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if parts.method == Method::POST && is_form {
            params.extend(url::form_urlencoded::parse(&body).into_owned());
        }
        self.issue(style, &params)
    }

    #[allow(clippy::result_large_err)]
    fn classify(
        &self,
        path: &str,
        headers: &HeaderMap,
        proxy_authorized: bool,
    ) -> Result<Style, Response<Body>> {
        let trimmed = path.trim_end_matches('/');
        if trimmed == IMDS_TOKEN_PATH {
            // IMDS itself needs no secret (only the VM reaches it); here any local process
            // could, so the secret is proved through the proxy URL or the App Service header.
            let proved = proxy_authorized
                || header_str(headers, "x-identity-header").is_some_and(|s| self.secret_matches(s));
            if !proved {
                return Err(token_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized_client",
                    "the IMDS endpoint of the Teleport Azure proxy needs this session's secret: \
                     reach http://169.254.169.254 through the HTTP_PROXY printed by tsh proxy \
                     azure (it carries the secret), or use IDENTITY_ENDPOINT with the \
                     X-IDENTITY-HEADER it prints",
                ));
            }
            let ok =
                header_str(headers, "metadata").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            if !ok {
                return Err(token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Required metadata header not specified",
                ));
            }
            return Ok(Style::Imds);
        }
        if trimmed.is_empty() || trimmed == "/identity" {
            let given = header_str(headers, "x-identity-header").or(header_str(headers, "secret"));
            return match given {
                None => Err(token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "missing X-IDENTITY-HEADER: set IDENTITY_HEADER as printed by tsh",
                )),
                Some(s) if self.secret_matches(s) => Ok(Style::AppService),
                Some(_) => Err(token_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized_client",
                    "invalid secret",
                )),
            };
        }
        let rest = trimmed.trim_start_matches('/');
        let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if matches!(tail, "" | "msi/token" | "oauth2/token") {
            if self.secret_matches(first) {
                return Ok(Style::LegacyMsi);
            }
            return Err(token_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized_client",
                "invalid secret",
            ));
        }
        Err(token_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint on the Teleport Azure proxy",
        ))
    }

    fn issue(&self, style: Style, params: &[(String, String)]) -> Response<Body> {
        let param = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let Some(resource) = param("resource") else {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "missing value for parameter 'resource'",
            );
        };
        for key in IDENTITY_PARAMS {
            if let Some(v) = param(key) {
                if !v.eq_ignore_ascii_case(&self.identity) {
                    return token_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        &format!(
                            "unexpected value for parameter '{key}': this session's identity is {}",
                            self.identity
                        ),
                    );
                }
            }
        }
        let now = OffsetDateTime::now_utc();
        if self.token_expiry <= now + time::Duration::seconds(10) {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_grant",
                "the app session has expired: log in again with tsh apps login",
            );
        }
        let claims = token::claims_for(
            resource,
            &self.identity,
            self.tenant_id.as_deref(),
            self.token_expiry,
            now,
        );
        let jwt = match self.signer.sign(&claims) {
            Ok(j) => j,
            Err(e) => {
                return token_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    &e.to_string(),
                )
            }
        };
        tracing::debug!(?style, %resource, "issued a local managed-identity token");
        let expires_in = (claims.exp - claims.iat).to_string();
        json_response(
            StatusCode::OK,
            &json!({
                "access_token": jwt,
                "client_id": self.identity,
                "expires_in": expires_in,
                "expires_on": claims.exp.to_string(),
                "ext_expires_in": expires_in,
                "not_before": claims.nbf.to_string(),
                "resource": resource,
                "token_type": "Bearer",
            }),
        )
    }
}

/// Reads an HTTP response head byte by byte (so nothing after it is consumed); returns the
/// status code.
async fn read_response_head(s: &mut TcpStream) -> Result<u16, DialError> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(DialError::HeadTooLarge);
        }
        let n = s.read(&mut byte).await.map_err(DialError::UpstreamIo)?;
        if n == 0 {
            return Err(DialError::UpstreamClosed);
        }
        head.push(byte[0]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| DialError::BadResponse(line.trim().to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proxy_target() {
        let p = ProxyTarget::parse("http://u:p%40ss@proxy.corp:3128").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
        let expected = base64::engine::general_purpose::STANDARD.encode("u:p@ss");
        assert_eq!(p.auth.unwrap(), format!("Basic {expected}"));
        let p = ProxyTarget::parse("proxy.corp:8080").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.auth),
            ("proxy.corp", 8080, None)
        );
        assert!(ProxyTarget::parse("https://proxy.corp").is_err());
    }

    #[test]
    fn basic_credentials_parsing() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let pw = |v: &str| basic_password(v.as_bytes());
        assert_eq!(
            pw(&format!("Basic {}", b64("teleport:s3cret"))),
            Some(b"s3cret".to_vec())
        );
        assert_eq!(
            pw(&format!("basic  {} ", b64("u:a:b"))),
            Some(b"a:b".to_vec())
        );
        assert_eq!(pw(&format!("Basic {}", b64("u:"))), Some(Vec::new()));
        assert_eq!(pw(&format!("Basic {}", b64("no-colon"))), None);
        assert_eq!(pw(&format!("Bearer {}", b64("u:p"))), None);
        assert_eq!(pw("Basic"), None);
        assert_eq!(pw("Basic ***"), None);
        assert_eq!(basic_password(b"Basic \xff\xfe"), None);
        let long = format!("Basic {}", b64(&format!("u:{}", "a".repeat(2000))));
        assert_eq!(pw(&long), None);
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert("authorization", HeaderValue::from_static("bearer "));
        assert_eq!(bearer(&h), None);
    }
}
