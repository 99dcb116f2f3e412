//! What tsh and tctl share: the profile store under `~/.tsh`, identity
//! files, and the API client.

pub mod apps;
pub mod cli;
pub mod db;
pub mod discover;
pub mod format;
pub mod profile;
pub mod query;
pub mod term;

use std::time::Duration;

use base64::Engine;
use pki::Identity;
use serde::de::DeserializeOwned;

pub use profile::{Credentials, Profile, ProfileStore};

/// Errors of the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached or spoke garbage.
    #[error("{0}")]
    Transport(String),
    /// Local state (profile, keys, identity file) is missing or broken.
    #[error("{0}")]
    Local(String),
    /// The server's certificate does not chain to a trusted authority: a
    /// self-signed proxy (or one signed by a CA this computer does not know)
    /// reached without `--insecure`.
    #[error(
        "the proxy at {addr} presented a certificate that is not trusted: it is self-signed or \
         signed by an authority this computer does not know ({detail}).\n\
         If this is a test cluster with a self-signed certificate and you trust the network, \
         add --insecure to skip the check (tsh login --proxy={addr} --insecure); otherwise set \
         SSL_CERT_FILE to a bundle holding the CA that signed the proxy's certificate, or ask \
         your Teleport administrator"
    )]
    UntrustedProxy {
        /// `host:port` of the proxy.
        addr: String,
        /// What the TLS library said.
        detail: String,
    },
    /// The address given as the proxy is the cluster's auth service: it
    /// answers TLS with the auth server's certificate but serves no web API.
    #[error(
        "{addr} is the auth service; tsh logs in through the proxy \
         (proxy_service.web_listen_addr, usually port 3080 or 443)"
    )]
    AuthServiceNotProxy {
        /// `host:port` that was dialled.
        addr: String,
    },
    /// The user's session certificate has expired: found locally before
    /// dialing, or refused by the cluster with the TLS alert
    /// `certificate_expired`.
    #[error("{}", session_expired_text(*.expired_at, .login.as_deref()))]
    SessionExpired {
        /// When the certificate expired, when known.
        expired_at: Option<time::OffsetDateTime>,
        /// The command that logs in again (`tsh login --proxy=... --user=...`).
        login: Option<String>,
    },
}

/// The message of [`ClientError::SessionExpired`].
fn session_expired_text(expired_at: Option<time::OffsetDateTime>, login: Option<&str>) -> String {
    let when = expired_at
        .and_then(|t| {
            t.to_offset(time::UtcOffset::UTC)
                .format(&time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
                ))
                .ok()
        })
        .map(|t| format!(" (it was valid until {t})"))
        .unwrap_or_default();
    let login = login.unwrap_or("tsh login --proxy=PROXY --user=USER");
    format!("your session has expired{when}: log in again with `{login}`")
}

/// A TLS failure that says something the user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate chains to no trusted authority (self-signed).
    UntrustedServer,
    /// The server refused our certificate because it has expired.
    CertificateExpired,
}

/// The [`TlsFailure`] somewhere in `err`'s chain of sources, if any. rustls'
/// error is found as itself or inside the `std::io::Error` that carries it
/// through hyper and tokio-rustls (whose `source()` skips it).
pub fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    find_tls_failure(err).map(|(f, _)| f)
}

/// [`tls_failure`], with what rustls said.
pub(crate) fn find_tls_failure(
    err: &(dyn std::error::Error + 'static),
) -> Option<(TlsFailure, String)> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        // hyper wraps tokio-rustls' io::Error in another io::Error.
        let mut inner: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(i) = inner {
            if let Some(tls) = i.downcast_ref::<rustls::Error>() {
                if let Some(found) = classify_rustls(tls) {
                    return Some((found, tls.to_string()));
                }
            }
            inner = i
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|x| x as &(dyn std::error::Error + 'static));
        }
        cur = e.source();
    }
    None
}

fn classify_rustls(e: &rustls::Error) -> Option<TlsFailure> {
    use rustls::{AlertDescription, CertificateError};
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            Some(TlsFailure::UntrustedServer)
        }
        // A self-signed certificate that is its own CA.
        rustls::Error::InvalidCertificate(CertificateError::Other(other))
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            Some(TlsFailure::UntrustedServer)
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateExpired) => {
            Some(TlsFailure::CertificateExpired)
        }
        _ => None,
    }
}

/// `Err(SessionExpired)` when `creds`' certificate is no longer valid at
/// `now` (or within `margin` of it), naming `login` as the way back.
pub fn check_session(
    creds: &Credentials,
    login: &str,
    margin: std::time::Duration,
) -> Result<pki::Identity> {
    let id = identity_of(creds)?;
    let margin = time::Duration::try_from(margin).unwrap_or(time::Duration::ZERO);
    if id.expires <= time::OffsetDateTime::now_utc() + margin {
        return Err(ClientError::SessionExpired {
            expired_at: Some(id.expires),
            login: Some(login.to_string()),
        });
    }
    Ok(id)
}

impl ClientError {
    /// HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Result alias.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The system's trusted roots: `SSL_CERT_FILE` if set, else Debian's bundle.
pub fn system_roots() -> Vec<String> {
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    match std::fs::read_to_string(&path) {
        Ok(text) => split_pem_certs(&text),
        Err(_) => Vec::new(),
    }
}

/// Split a PEM bundle into its certificates.
pub fn split_pem_certs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let tail = &rest[start..];
        let Some(end) = tail.find("-----END CERTIFICATE-----") else {
            break;
        };
        let end = end + "-----END CERTIFICATE-----".len();
        out.push(format!("{}\n", &tail[..end]));
        rest = &tail[end..];
    }
    out
}

/// A client of the cluster's HTTP APIs.
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    /// `host:port` as given, for messages.
    addr: String,
    /// The command that logs in again, named when the session has expired.
    login_hint: Option<String>,
}

/// Normalize `host[:port]` to a base URL, defaulting to port 3080 (a
/// profile always holds the port; `tsh login` finds it with
/// [`discover::find_proxy`], trying 443 first).
pub fn base_url(addr: &str) -> String {
    match discover::split_addr(addr) {
        (host, Some(port)) => format!("https://{host}:{port}"),
        (host, None) => format!("https://{host}:3080"),
    }
}

impl ApiClient {
    /// A client of the server at `addr` (`host:port`), presenting `creds`'
    /// certificate when given. Server certificates are checked against the
    /// system roots and the cluster's host CA, unless `insecure`.
    pub fn new(addr: &str, creds: Option<&Credentials>, insecure: bool) -> Result<ApiClient> {
        let mut roots = system_roots();
        if let Some(c) = creds {
            roots.extend(c.ca_pems.iter().cloned());
        }
        let tls = pki::tls::proxy_client_config(
            creds.map(|c| c.cert_pem.as_str()),
            creds.map(|c| c.key_pem.as_str()),
            &roots,
            insecure,
            &[b"http/1.1"],
        )
        .map_err(|e| ClientError::Local(format!("TLS setup failed: {e}")))?;
        Self::with_tls(addr, tls)
    }

    /// A client using a ready TLS configuration (agents use the cluster's
    /// host CA through `pki::tls::cluster_client_config`).
    pub fn with_tls(addr: &str, tls: rustls::ClientConfig) -> Result<ApiClient> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Local(format!("HTTP client setup failed: {e}")))?;
        Ok(ApiClient {
            base: base_url(addr),
            http,
            addr: base_url(addr).trim_start_matches("https://").to_string(),
            login_hint: None,
        })
    }

    /// Name `login` (`tsh login --proxy=... --user=...`) in the error of a
    /// session the cluster refuses as expired.
    pub fn with_login_hint(mut self, login: impl Into<String>) -> ApiClient {
        self.login_hint = Some(login.into());
        self
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(format!("reading the answer failed: {e}")))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<api::ErrorBody>(&bytes)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| {
                    format!(
                        "server answered {status}: {}",
                        String::from_utf8_lossy(&bytes)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    )
                });
            return Err(ClientError::Http {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Transport(format!("unexpected answer from the server: {e}")))
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        match find_tls_failure(&e) {
            Some((TlsFailure::UntrustedServer, detail)) => ClientError::UntrustedProxy {
                addr: self.addr.clone(),
                detail,
            },
            Some((TlsFailure::CertificateExpired, _)) => ClientError::SessionExpired {
                expired_at: None,
                login: self.login_hint.clone(),
            },
            None => ClientError::Transport(format!("cannot reach {}: {msg}", self.base)),
        }
    }

    /// `GET path`, decoding JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        Self::decode(resp).await
    }

    /// `POST path` with a JSON body, decoding JSON.
    pub async fn post<T: DeserializeOwned, B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// `POST path` with a body that is already JSON text, decoding JSON.
    pub async fn post_json_text<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        Self::decode(resp).await
    }

    async fn send_json<T: DeserializeOwned, B: serde::Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        Self::decode(resp).await
    }

    /// `GET /webapi/ping`.
    pub async fn ping(&self) -> Result<api::PingResponse> {
        self.get("/webapi/ping").await
    }

    /// Password login: certify `public_key_der` for `user`.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        public_key_der: &[u8],
        ttl: Duration,
    ) -> Result<api::CertsResponse> {
        let req = api::LoginRequest {
            user: user.into(),
            pass: password.into(),
            tls_pub_key: base64::engine::general_purpose::STANDARD.encode(public_key_der),
            ttl_seconds: ttl.as_secs(),
        };
        self.send_json(reqwest::Method::POST, "/v1/webapi/ssh/certs", &req)
            .await
    }

    /// Set a password from an invite token.
    pub async fn set_password(&self, token: &str, password: &str) -> Result<()> {
        let req = api::SetPasswordRequest {
            token: token.into(),
            password: password.into(),
        };
        let _: serde_json::Value = self
            .send_json(
                reqwest::Method::POST,
                "/v1/webapi/users/password/token",
                &req,
            )
            .await?;
        Ok(())
    }

    /// Cluster status.
    pub async fn status(&self) -> Result<api::StatusResponse> {
        self.get("/v1/auth/status").await
    }

    /// Create a user.
    pub async fn create_user(&self, user: &resources::User) -> Result<api::CreateUserResponse> {
        self.send_json(reqwest::Method::POST, "/v1/auth/users", user)
            .await
    }

    /// Replace a user.
    pub async fn update_user(&self, user: &resources::User) -> Result<()> {
        let _: serde_json::Value = self
            .send_json(
                reqwest::Method::PUT,
                &format!("/v1/auth/users/{}", encode_segment(&user.metadata.name)),
                user,
            )
            .await?;
        Ok(())
    }

    /// Resources of a kind, or one of them.
    pub async fn get_resources(
        &self,
        kind: &str,
        name: Option<&str>,
    ) -> Result<Vec<serde_json::Value>> {
        let path = match name {
            Some(n) => format!(
                "/v1/auth/resources/{}/{}",
                encode_segment(kind),
                encode_segment(n)
            ),
            None => format!("/v1/auth/resources/{}", encode_segment(kind)),
        };
        self.get(&path).await
    }

    /// One user.
    pub async fn get_user(&self, name: &str) -> Result<resources::User> {
        let mut list = self.get_resources("user", Some(name)).await?;
        let v = list
            .pop()
            .ok_or_else(|| ClientError::Local(format!("user {name:?} is not found")))?;
        serde_json::from_value(v)
            .map_err(|e| ClientError::Transport(format!("unexpected user from the server: {e}")))
    }

    /// Create (or with `force` overwrite) resources given as YAML/JSON text.
    pub async fn upsert_resources(
        &self,
        text: &str,
        force: bool,
    ) -> Result<Vec<serde_json::Value>> {
        let resp = self
            .http
            .post(format!("{}/v1/auth/resources?force={force}", self.base))
            .header("content-type", "application/yaml")
            .body(text.to_string())
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        Self::decode(resp).await
    }

    /// Delete a resource.
    pub async fn delete_resource(&self, kind: &str, name: &str) -> Result<()> {
        let resp = self
            .http
            .delete(format!(
                "{}/v1/auth/resources/{}/{}",
                self.base,
                encode_segment(kind),
                encode_segment(name)
            ))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let _: serde_json::Value = Self::decode(resp).await?;
        Ok(())
    }

    /// Create a provision token.
    pub async fn create_token(
        &self,
        roles: &str,
        ttl: Duration,
        value: Option<&str>,
    ) -> Result<resources::ProvisionToken> {
        self.send_json(
            reqwest::Method::POST,
            "/v1/auth/tokens",
            &api::certs::TokenRequest {
                roles: roles.to_string(),
                ttl_seconds: ttl.as_secs(),
                value: value.map(str::to_string),
            },
        )
        .await
    }

    /// Sign a certificate for a user (admin).
    pub async fn sign_user(
        &self,
        user: &str,
        public_key_der: &[u8],
        ttl: Duration,
    ) -> Result<api::CertsResponse> {
        let req = api::SignUserRequest {
            user: user.into(),
            tls_pub_key: base64::engine::general_purpose::STANDARD.encode(public_key_der),
            ttl_seconds: ttl.as_secs(),
        };
        self.send_json(reqwest::Method::POST, "/v1/auth/certs/user", &req)
            .await
    }

    /// Audit events.
    pub async fn events(&self, q: &api::EventsQuery) -> Result<Vec<serde_json::Value>> {
        let resp = self
            .http
            .get(format!("{}/v1/auth/events", self.base))
            .query(q)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        Self::decode(resp).await
    }
}

fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /webapi/ping` of the proxy at `proxy`, before asking for a password:
/// an untrusted proxy is refused here, with [`ClientError::UntrustedProxy`].
pub async fn ping_proxy(proxy: &str, insecure: bool) -> Result<api::PingResponse> {
    ApiClient::new(proxy, None, insecure)?.ping().await
}

/// Log in with a password: make a key, get it certified, return credentials.
pub async fn password_login(
    proxy: &str,
    user: &str,
    password: &str,
    insecure: bool,
    ttl: Duration,
) -> Result<(api::PingResponse, Credentials)> {
    let client = ApiClient::new(proxy, None, insecure)?;
    let ping = client.ping().await?;
    let key = pki::generate_key().map_err(|e| ClientError::Local(e.to_string()))?;
    let certs = client
        .login(user, password, &key.public_key_der, ttl)
        .await?;
    let creds = Credentials {
        key_pem: key.private_key_pem,
        cert_pem: certs.tls_cert,
        ca_pems: certs.host_ca_certs,
    };
    Ok((ping, creds))
}

/// Identity of a certificate, for display.
pub fn identity_of(creds: &Credentials) -> Result<Identity> {
    Identity::from_cert_pem(&creds.cert_pem)
        .map_err(|e| ClientError::Local(format!("the certificate cannot be read: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn creds_expiring(at: time::OffsetDateTime) -> Credentials {
        let ca = pki::CertAuthority::generate("c", pki::CaType::User).unwrap();
        let key = pki::generate_key().unwrap();
        let id = pki::Identity {
            username: "alice".into(),
            expires: at,
            ..Default::default()
        };
        Credentials {
            cert_pem: ca.sign_identity(&id, &key.public_key_der).unwrap(),
            key_pem: key.private_key_pem,
            ca_pems: vec![ca.cert_pem().to_string()],
        }
    }

    #[test]
    fn expired_sessions_are_found_before_dialing() {
        let login = "tsh login --proxy=p:3080 --user=alice --insecure";
        let now = time::OffsetDateTime::now_utc();
        let past = creds_expiring(now - time::Duration::minutes(1));
        let e = check_session(&past, login, Duration::ZERO).unwrap_err();
        assert!(matches!(e, ClientError::SessionExpired { .. }));
        let text = e.to_string();
        assert!(
            text.starts_with("your session has expired (it was valid until "),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("log in again with `{login}`")),
            "{text}"
        );

        let soon = creds_expiring(now + time::Duration::seconds(30));
        assert!(check_session(&soon, login, Duration::ZERO).is_ok());
        assert!(check_session(&soon, login, Duration::from_secs(60)).is_err());
    }

    #[test]
    fn tls_failures_are_told_apart() {
        let unknown = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(tls_failure(&unknown), Some(TlsFailure::UntrustedServer));
        let expired = std::io::Error::other(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateExpired,
        ));
        assert_eq!(tls_failure(&expired), Some(TlsFailure::CertificateExpired));
        let direct = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateExpired);
        assert_eq!(tls_failure(&direct), Some(TlsFailure::CertificateExpired));
        // hyper's io::Error around tokio-rustls' io::Error.
        let nested = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                std::sync::Arc::new(webpki::Error::CaUsedAsEndEntity),
            ))),
        ));
        assert_eq!(tls_failure(&nested), Some(TlsFailure::UntrustedServer));
        let other = std::io::Error::other(rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure,
        ));
        assert_eq!(tls_failure(&other), None);
        assert_eq!(tls_failure(&std::io::Error::other("plain")), None);
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = ClientError::UntrustedProxy {
            addr: "127.0.0.1:3080".into(),
            detail: "invalid peer certificate: UnknownIssuer".into(),
        }
        .to_string();
        assert!(e.contains("not trusted"), "{e}");
        assert!(e.contains("self-signed"), "{e}");
        assert!(
            e.contains("tsh login --proxy=127.0.0.1:3080 --insecure"),
            "{e}"
        );
        let e = ClientError::SessionExpired {
            expired_at: None,
            login: None,
        }
        .to_string();
        assert_eq!(
            e,
            "your session has expired: log in again with `tsh login --proxy=PROXY --user=USER`"
        );
        let p = Profile {
            web_proxy_addr: "p:3080".into(),
            user: "alice".into(),
            cluster: "c".into(),
            insecure: true,
        };
        assert_eq!(
            p.login_command(),
            "tsh login --proxy=p:3080 --user=alice --insecure"
        );
    }

    #[test]
    fn profile_for_a_proxy_is_found_even_when_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProfileStore::at(dir.path());
        let p = Profile {
            web_proxy_addr: "proxy.example.com:3080".into(),
            user: "alice".into(),
            cluster: "example".into(),
            insecure: true,
        };
        let past = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
        store.save(&p, &creds_expiring(past)).unwrap();
        assert_eq!(store.profile_for("proxy.example.com:3080"), Some(p.clone()));
        assert_eq!(
            store.profile_for("https://proxy.example.com:3080/"),
            Some(p)
        );
        assert_eq!(store.profile_for("proxy.example.com:443"), None);
        // `--proxy=host`: the profile of that host, whichever port it found.
        assert_eq!(
            store
                .profile_for("proxy.example.com")
                .map(|p| p.web_proxy_addr),
            Some("proxy.example.com:3080".to_string())
        );
        assert_eq!(store.profile_for("other.example.com:3080"), None);
        assert_eq!(store.profile_for("../x:3080"), None);
    }
}
