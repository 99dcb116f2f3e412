//! The Azure handler: serves an app session that reaches the agent through
//! the reverse tunnel.
//!
//! For each request: the session's certificate must be routed to this app
//! with an Azure identity; the bearer token must be the local token `tsh`
//! signed with the session key for that identity; the user's current roles
//! must still allow the app and the identity (re-checked here, roles fetched
//! from the auth service); the host must be on the Azure allow-list. Then a
//! real token for (identity, resource) is minted on this VM, swapped into
//! `Authorization`, the request is forwarded to Azure, and it is audited.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use pki::Identity;
use resources::{App, Role};

/// Largest request body forwarded to Azure.
pub const MAX_BODY: usize = 64 << 20;

/// Where the handler gets roles and sends audit events (the auth service).
#[async_trait::async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Current definitions of these roles.
    async fn roles(&self, names: &[String]) -> Result<Vec<Role>, String>;
    /// Record an audit event.
    async fn audit(&self, event: serde_json::Value);
}

/// Serves Azure app sessions for one app.
pub struct AzureHandler {
    app: App,
    cluster: Arc<dyn Cluster>,
    tokens: Arc<azure_mint::TokenCache>,
    http: reqwest::Client,
    roles: crate::roles::RoleCache,
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "error": {"code": "TeleportAccessDenied", "message": message}
    })
    .to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

impl AzureHandler {
    /// A handler minting tokens with `tokens` and forwarding with `http`.
    pub fn new(
        app: App,
        cluster: Arc<dyn Cluster>,
        tokens: Arc<azure_mint::TokenCache>,
        http: reqwest::Client,
    ) -> AzureHandler {
        AzureHandler {
            app,
            cluster,
            tokens,
            http,
            roles: crate::roles::RoleCache::default(),
        }
    }

    /// The app served.
    pub fn app(&self) -> &App {
        &self.app
    }

    async fn roles_of(&self, names: &[String]) -> Result<Vec<Role>, String> {
        self.roles.get(names, || self.cluster.roles(names)).await
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
        let cluster = self.cluster.clone();
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
        cluster
            .audit(serde_json::json!({
                "event": "app.session.end", "code": "T2011I", "user": user,
                "sid": route.session_id, "app_name": app_name,
                "azure_identity": route.azure_identity,
            }))
            .await;
    }

    async fn handle(
        &self,
        identity: &Identity,
        public_key: &[u8],
        req: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let route = identity.route_to_app.clone().unwrap_or_default();
        let resp = self.check_and_forward(identity, public_key, req).await;
        let status = resp.status().as_u16();
        // Audited off the request path: the answer does not wait for it.
        let cluster = self.cluster.clone();
        let event = serde_json::json!({
                "event": "app.session.request", "code": "T2009I",
                "user": identity.username, "sid": route.session_id,
                "app_name": self.app.metadata.name, "azure_identity": route.azure_identity,
                "method": method, "host": host, "path": path, "status_code": status,
        });
        tokio::spawn(async move { cluster.audit(event).await });
        resp
    }

    async fn check_and_forward(
        &self,
        identity: &Identity,
        public_key: &[u8],
        req: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let Some(route) = identity.route_to_app.as_ref() else {
            return error(
                StatusCode::FORBIDDEN,
                "the certificate is not for an app session",
            );
        };
        if route.name != self.app.metadata.name {
            return error(StatusCode::FORBIDDEN, "the certificate is for another app");
        }
        if identity.expires <= time::OffsetDateTime::now_utc() {
            return error(
                StatusCode::FORBIDDEN,
                "the app session expired: run tsh apps login again",
            );
        }
        let azure_identity = route.azure_identity.clone();
        if azure_identity.is_empty() {
            return error(
                StatusCode::FORBIDDEN,
                "the app session has no Azure identity",
            );
        }
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let host_only = host.split(':').next().unwrap_or_default().to_string();
        if !azure_mint::cloud::is_azure_endpoint(&host_only) {
            return error(
                StatusCode::FORBIDDEN,
                &format!("{host_only:?} is not an Azure endpoint"),
            );
        }
        // The local token tsh signed with the session key.
        let bearer = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        let claims = match msi_proxy::verify_local_token(&bearer, public_key) {
            Ok(c) => c,
            Err(e) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    &format!("the request's token is not valid for this session: {e}"),
                )
            }
        };
        if !claims.xms_mirid.eq_ignore_ascii_case(&azure_identity) {
            return error(
                StatusCode::FORBIDDEN,
                "the request's token names another identity than the session",
            );
        }
        // Access may have changed since the certificate was issued.
        let roles = match self.roles_of(&identity.groups).await {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("cannot check access: {e}"),
                )
            }
        };
        let checker = match rbac::AccessChecker::new(roles, &identity.traits) {
            Ok(c) => c,
            Err(e) => return error(StatusCode::FORBIDDEN, &e.to_string()),
        };
        if let Err(e) = checker.check_app_azure_identity(&self.app.all_labels(), &azure_identity) {
            return error(StatusCode::FORBIDDEN, &e.to_string());
        }
        let scope = azure_mint::credential::to_scope(&claims.aud);
        let token = match self.tokens.get(&azure_identity, &scope).await {
            Ok(t) => t,
            Err(e) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    &format!("minting a token for {azure_identity}: {e}"),
                )
            }
        };
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        };
        let path_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let url = format!("https://{host}{path_query}");
        let method = match reqwest::Method::from_bytes(parts.method.as_str().as_bytes()) {
            Ok(m) => m,
            Err(_) => return error(StatusCode::BAD_REQUEST, "bad method"),
        };
        let mut out = self.http.request(method, &url);
        for (name, value) in parts.headers.iter() {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n) || n == "authorization" || n == "host" {
                continue;
            }
            out = out.header(n, value.as_bytes());
        }
        out = out
            .header("authorization", format!("Bearer {}", token.secret))
            .body(body);
        let upstream = match out.send().await {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    &format!("Azure request failed: {e}"),
                )
            }
        };
        let status = upstream.status();
        let headers = upstream.headers().clone();
        let bytes = match upstream.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    &format!("reading Azure's answer: {e}"),
                )
            }
        };
        let mut resp = Response::new(Full::new(bytes));
        *resp.status_mut() =
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        for (name, value) in headers.iter() {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n) || n == "content-length" {
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
