//! The Azure handler: serves an app session that reaches the agent through
//! the reverse tunnel.
//!
//! For each request: the session's certificate must be routed to this app
//! with an Azure identity; the bearer token must be the local token `tsh`
//! signed with the session key for that identity; the user's current roles
//! must still allow the app and the identity (re-checked here, roles fetched
//! from the auth service); the `Host` header must parse as `host[:port]` (no
//! userinfo, no `/?#@`, a valid port, a DNS name) whose host is on the Azure
//! allow-list, and the request target must be a path (origin-form). The
//! upstream URL is built from those parsed values only
//! ([`azure_mint::authority::AzureEndpoint::url`]), so the host checked is the
//! host dialled. Then a real token for (identity, resource) is minted on this
//! VM, swapped into `Authorization`, the request is forwarded to Azure, and it
//! is audited. Errors the handler answers itself carry an [`ErrorCode`] in
//! ARM's error shape.

use std::sync::Arc;
use std::time::Duration;

use agent::{AuditSink, Cluster, ClusterError};
use api::audit::{AppSession, AppSessionEnd, AppSessionRequest, AuditEvent};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use pki::Identity;
use resources::{App, Role};

/// Largest request body forwarded to Azure.
pub const MAX_BODY: usize = 64 << 20;

/// Serves Azure app sessions for one app.
pub struct AzureHandler {
    app: App,
    cluster: Arc<dyn Cluster>,
    audit: AuditSink,
    tokens: Arc<azure_mint::TokenCache>,
    http: reqwest::Client,
}

/// The `code` of an error the handler answers itself, in ARM's error shape
/// (`{"error":{"code","message"}}`, which az prints as `(Code) message`): each
/// says what happened, so a refusal is never mistaken for an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// RBAC, or a session certificate that does not grant this request.
    AccessDenied,
    /// The request's bearer token is not the session's local token.
    InvalidToken,
    /// The request names no valid `host[:port]`, or its target is not a path.
    BadRequest,
    /// The request names a host that is not an Azure endpoint.
    EndpointNotAllowed,
    /// The user's current roles could not be read.
    AccessCheckUnavailable,
    /// No Azure token could be minted for the identity on this agent.
    TokenMintFailed,
    /// The request body is larger than [`MAX_BODY`].
    RequestTooLarge,
    /// Azure could not be reached (DNS, connect, TLS handshake, proxy).
    UpstreamUnreachable,
    /// Azure did not answer in time.
    UpstreamTimeout,
    /// The exchange with Azure broke after it was reached.
    UpstreamFailed,
}

impl ErrorCode {
    /// The code as it appears in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AccessDenied => "TeleportAccessDenied",
            ErrorCode::InvalidToken => "TeleportInvalidToken",
            ErrorCode::BadRequest => "TeleportBadRequest",
            ErrorCode::EndpointNotAllowed => "TeleportEndpointNotAllowed",
            ErrorCode::AccessCheckUnavailable => "TeleportAccessCheckUnavailable",
            ErrorCode::TokenMintFailed => "TeleportTokenMintFailed",
            ErrorCode::RequestTooLarge => "TeleportRequestTooLarge",
            ErrorCode::UpstreamUnreachable => "TeleportUpstreamUnreachable",
            ErrorCode::UpstreamTimeout => "TeleportUpstreamTimeout",
            ErrorCode::UpstreamFailed => "TeleportUpstreamFailed",
        }
    }

    /// The HTTP status answered with the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::AccessDenied | ErrorCode::EndpointNotAllowed => StatusCode::FORBIDDEN,
            ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::AccessCheckUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::TokenMintFailed
            | ErrorCode::UpstreamUnreachable
            | ErrorCode::UpstreamFailed => StatusCode::BAD_GATEWAY,
            ErrorCode::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

fn error(code: ErrorCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "error": {"code": code.as_str(), "message": message}
    })
    .to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code.status();
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Where a request goes: parsed from its `Host` header and request target,
/// which must be `host[:port]` of an Azure endpoint and an origin-form path.
/// The upstream URL is built from this and nothing else.
fn upstream_of(parts: &hyper::http::request::Parts) -> Result<url::Url, (ErrorCode, String)> {
    if parts.method == hyper::Method::CONNECT {
        return Err((
            ErrorCode::BadRequest,
            "CONNECT is not forwarded to Azure: send requests with a path".into(),
        ));
    }
    // Absolute-form (`GET https://other.host/ HTTP/1.1`) would name a host
    // besides the Host header; authority-form and `*` name no path.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        return Err((
            ErrorCode::BadRequest,
            "the request target must be a path starting with '/', not a URL".into(),
        ));
    }
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_default();
    let target = azure_mint::authority::OriginForm::parse(target)
        .map_err(|e| (ErrorCode::BadRequest, e.to_string()))?;
    let mut hosts = parts.headers.get_all(hyper::header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return Err((
            ErrorCode::BadRequest,
            "the request must carry exactly one Host header naming an Azure endpoint".into(),
        ));
    };
    let host = host.to_str().map_err(|_| {
        (
            ErrorCode::BadRequest,
            "the Host header is not visible ASCII".to_string(),
        )
    })?;
    let endpoint = azure_mint::authority::AzureEndpoint::parse(host).map_err(|e| match e {
        azure_mint::authority::AddressError::NotAzure(_) => {
            (ErrorCode::EndpointNotAllowed, e.to_string())
        }
        e => (ErrorCode::BadRequest, format!("Host header: {e}")),
    })?;
    endpoint
        .url(&target)
        .map_err(|e| (ErrorCode::BadRequest, e.to_string()))
}

/// Longest token audience (resource) accepted.
const MAX_AUDIENCE: usize = 512;

/// Whether a local token's audience names one resource to mint a token for:
/// the client chooses it, and it becomes the scope asked of the identity
/// endpoint, so several space-separated scopes, queries or fragments are refused.
fn is_one_resource(aud: &str) -> bool {
    !aud.is_empty()
        && aud.len() <= MAX_AUDIENCE
        && aud
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}

/// The error answered when sending to Azure failed.
fn send_error(url: &url::Url, e: &reqwest::Error) -> Response<Full<Bytes>> {
    let host = url.host_str().unwrap_or_default();
    if e.is_timeout() {
        error(
            ErrorCode::UpstreamTimeout,
            &format!("{host} did not answer in time: {e}"),
        )
    } else if e.is_connect() {
        error(
            ErrorCode::UpstreamUnreachable,
            &format!(
                "cannot reach {host} from the app service agent: {}; check the agent's network, DNS and HTTPS_PROXY",
                error_chain(e)
            ),
        )
    } else {
        error(
            ErrorCode::UpstreamFailed,
            &format!("the request to {host} failed: {}", error_chain(e)),
        )
    }
}

/// An error with its causes, which reqwest keeps apart.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A request body the handler reads: any hyper body whose errors can be told.
trait RequestBody: hyper::body::Body<Error: std::error::Error + Send + Sync + 'static> {}

impl<B> RequestBody for B
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
}

impl AzureHandler {
    /// A handler checking sessions with `cluster`'s roles, auditing to
    /// `audit`, minting tokens with `tokens` and forwarding with `http`.
    pub fn new(
        app: App,
        cluster: Arc<dyn Cluster>,
        audit: AuditSink,
        tokens: Arc<azure_mint::TokenCache>,
        http: reqwest::Client,
    ) -> AzureHandler {
        AzureHandler {
            app,
            cluster,
            audit,
            tokens,
            http,
        }
    }

    /// The app served.
    pub fn app(&self) -> &App {
        &self.app
    }

    async fn roles_of(&self, names: &[String]) -> Result<Vec<Role>, ClusterError> {
        self.cluster.roles(names).await
    }

    /// Serve HTTP/1.1 on one session stream whose client certificate is
    /// `cert_der`.
    pub async fn serve<S>(self: Arc<Self>, cert_der: Vec<u8>, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let identity = match Identity::from_cert_der(&cert_der) {
            Ok(i) => Arc::new(i),
            Err(e) => {
                tracing::warn!(error = %e, "app session with an unreadable certificate");
                return;
            }
        };
        let key = match public_key_of(&cert_der) {
            Some(k) => Arc::new(k),
            None => return,
        };
        let end_identity = identity.clone();
        let audit = self.audit.clone();
        let app_name = self.app.metadata.name.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let this = self.clone();
            let identity = identity.clone();
            let key = key.clone();
            async move { Ok::<_, std::convert::Infallible>(this.handle(&identity, &key, req).await) }
        });
        let (user, route) = (
            end_identity.username.clone(),
            end_identity.route_to_app.clone().unwrap_or_default(),
        );
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(300))
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
            .await
        {
            tracing::debug!(error = %e, "app session connection ended");
        }
        audit.emit(&AuditEvent::AppSessionEnd(AppSessionEnd {
            session: AppSession {
                user,
                sid: route.session_id,
                app_name,
                azure_identity: route.azure_identity,
                server_id: String::new(),
            },
        }));
    }

    // Answer one request of the session whose certificate holds `identity`
    // and whose key is `public_key` (DER SubjectPublicKeyInfo), and audit it.
    async fn handle<B: RequestBody>(
        &self,
        identity: &Identity,
        public_key: &[u8],
        req: Request<B>,
    ) -> Response<Full<Bytes>> {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default();
        let route = identity.route_to_app.clone().unwrap_or_default();
        let resp = self.check_and_forward(identity, public_key, req).await;
        let status = resp.status().as_u16();
        // Audited off the request path: the answer does not wait for it.
        self.audit
            .emit(&AuditEvent::AppSessionRequest(AppSessionRequest {
                session: AppSession {
                    user: identity.username.clone(),
                    sid: route.session_id,
                    app_name: self.app.metadata.name.clone(),
                    azure_identity: route.azure_identity,
                    server_id: String::new(),
                },
                method,
                host,
                path,
                status_code: status,
            }));
        resp
    }

    async fn check_and_forward<B: RequestBody>(
        &self,
        identity: &Identity,
        public_key: &[u8],
        req: Request<B>,
    ) -> Response<Full<Bytes>> {
        let Some(route) = identity.route_to_app.as_ref() else {
            return error(
                ErrorCode::AccessDenied,
                "the certificate is not for an app session",
            );
        };
        if route.name != self.app.metadata.name {
            return error(
                ErrorCode::AccessDenied,
                "the certificate is for another app",
            );
        }
        if identity.expires <= time::OffsetDateTime::now_utc() {
            return error(
                ErrorCode::AccessDenied,
                "the app session expired: run tsh apps login again",
            );
        }
        let azure_identity = route.azure_identity.clone();
        if azure_identity.is_empty() {
            return error(
                ErrorCode::AccessDenied,
                "the app session has no Azure identity",
            );
        }
        let (parts, body) = req.into_parts();
        // The only thing the upstream URL is made of.
        let url = match upstream_of(&parts) {
            Ok(u) => u,
            Err((code, message)) => return error(code, &message),
        };
        // The local token tsh signed with the session key.
        let bearer = parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        let claims = match pki::local_token::verify_local_token(bearer, public_key) {
            Ok(c) => c,
            Err(e) => {
                return error(
                    ErrorCode::InvalidToken,
                    &format!("the request's token is not valid for this session: {e}"),
                )
            }
        };
        if !is_one_resource(&claims.aud) {
            return error(
                ErrorCode::InvalidToken,
                &format!(
                    "the request's token asks for {:?}, which is not one resource (a URL or an app ID without spaces, '?' or '#')",
                    claims.aud.chars().take(100).collect::<String>()
                ),
            );
        }
        if !claims.xms_mirid.eq_ignore_ascii_case(&azure_identity) {
            return error(
                ErrorCode::AccessDenied,
                "the request's token names another identity than the session",
            );
        }
        // Access may have changed since the certificate was issued.
        let roles = match self.roles_of(&identity.groups).await {
            Ok(r) => r,
            // The auth service answered: a role of the session no longer
            // exists (404) or the agent may not read it (403). That is a
            // refusal, not an outage.
            Err(ClusterError::Http {
                status: 403 | 404,
                message,
            }) => {
                return error(
                    ErrorCode::AccessDenied,
                    &format!("access denied: {message}"),
                )
            }
            Err(e) => {
                return error(
                    ErrorCode::AccessCheckUnavailable,
                    &format!("cannot check access: {e}"),
                )
            }
        };
        let checker = match rbac::AccessChecker::new(roles, &identity.traits) {
            Ok(c) => c,
            Err(e) => return error(ErrorCode::AccessDenied, &e.to_string()),
        };
        if let Err(e) = checker.check_app_azure_identity(&self.app.all_labels(), &azure_identity) {
            return error(ErrorCode::AccessDenied, &e.to_string());
        }
        let scope = azure_mint::credential::to_scope(&claims.aud);
        let token = match self.tokens.get(&azure_identity, &scope).await {
            Ok(t) => t,
            Err(e) => {
                return error(
                    ErrorCode::TokenMintFailed,
                    &format!("minting a token for {azure_identity}: {e}"),
                )
            }
        };
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return error(
                    ErrorCode::RequestTooLarge,
                    &format!("the request body is larger than {MAX_BODY} bytes"),
                )
            }
            Err(e) => {
                return error(
                    ErrorCode::BadRequest,
                    &format!("reading the request body: {e}"),
                )
            }
        };
        let method = match reqwest::Method::from_bytes(parts.method.as_str().as_bytes()) {
            Ok(m) => m,
            Err(_) => return error(ErrorCode::BadRequest, "bad method"),
        };
        let mut out = self.http.request(method, url.clone());
        for (name, value) in parts.headers.iter() {
            let n = name.as_str();
            // Host comes from the URL; the body is sent whole with its own length.
            if api::http::is_hop_by_hop(n)
                || matches!(n, "authorization" | "host" | "content-length")
            {
                continue;
            }
            out = out.header(n, value.as_bytes());
        }
        out = out
            .header("authorization", format!("Bearer {}", token.secret))
            .body(body);
        let upstream = match out.send().await {
            Ok(r) => r,
            Err(e) => return send_error(&url, &e),
        };
        let status = upstream.status();
        let headers = upstream.headers().clone();
        let bytes = match upstream.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => return send_error(&url, &e),
            Err(e) => {
                return error(
                    ErrorCode::UpstreamFailed,
                    &format!(
                        "reading the answer of {}: {}",
                        url.host_str().unwrap_or_default(),
                        error_chain(&e)
                    ),
                )
            }
        };
        let mut resp = Response::new(Full::new(bytes));
        *resp.status_mut() =
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        for (name, value) in headers.iter() {
            let n = name.as_str();
            if api::http::is_hop_by_hop(n) || n == "content-length" {
                continue;
            }
            if let (Ok(hn), Ok(hv)) = (
                hyper::header::HeaderName::from_bytes(n.as_bytes()),
                hyper::header::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                resp.headers_mut().append(hn, hv);
            }
        }
        resp
    }
}

/// SubjectPublicKeyInfo DER of a certificate.
fn public_key_of(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(cert.tbs_certificate.subject_pki.raw.to_vec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "azure_tests.rs"]
mod tests;
