//! The local Azure proxy that `tsh az` and `tsh proxy azure` run on the user's machine.
//!
//! # Bird's-eye view
//!
//! [`MsiProxy::start`] listens on a loopback address and speaks HTTP/1.1 as a forward proxy.
//! Any local process of any user can reach that port, so every way to a token proves the
//! session's secret ([`MsiProxy::secret`], compared in constant time): proxy use (`CONNECT`,
//! absolute-form requests, IMDS at 169.254.169.254) needs it as the password of
//! `Proxy-Authorization: Basic` (the exported `HTTPS_PROXY` is `http://teleport:SECRET@...`;
//! 407 with `Proxy-Authenticate` without it), and the token endpoints asked directly need it in
//! their own way (header, path, or proxy credentials).
//!
//! * `CONNECT host:port` to an Azure endpoint ([`azure_endpoints::cloud::is_azure_endpoint`]) or a
//!   Teleport token host: TLS is terminated with a leaf issued on the fly for the SNI name by a
//!   per-session local CA (its certificate written 0600 to [`MsiProxyConfig::local_ca_path`]).
//!   Each request inside must carry one of our local tokens as a bearer token; it is then handed,
//!   unchanged (method, `https://` URL, headers, body buffered up to 64 MiB), to [`Upstream`].
//! * `CONNECT` to any other host: tunnelled as plain TCP, through
//!   [`MsiProxyConfig::upstream_proxy`] when set.
//! * Managed-identity token endpoints, answered locally with a JWT (ES256) signed by the app
//!   session key ([`verify_local_token`] checks one): App Service (`IDENTITY_ENDPOINT`,
//!   `X-IDENTITY-HEADER`), legacy MSI (`MSI_ENDPOINT`, secret in the path, GET or form POST) and
//!   IMDS (`/metadata/identity/oauth2/token`, `Metadata: true`, as
//!   `GET http://169.254.169.254/...` through `HTTP_PROXY` with its credentials, or asked
//!   directly with `X-IDENTITY-HEADER`).
//! * Other absolute-form `http://` requests are forwarded as a plain HTTP proxy would.
//!
//! A client can never crash the proxy: every connection runs in its own task and every parse
//! failure becomes an error response.

mod localca;
mod server;
mod token;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use token::{verify_local_token, Claims, TokenError, ISSUER, ZERO_TENANT};
pub use upstream::AppUpstream;

/// Largest request or response body forwarded (bytes); larger requests get 413.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// The variables by which clients find an identity endpoint, a proxy or trusted CAs: those
/// [`MsiProxy::env`] may set, and `AZURE_POD_IDENTITY_AUTHORITY_HOST`, which would send IMDS
/// requests elsewhere. A client that must use only the proxy's settings inherits none of them.
pub const CLIENT_SETTINGS: &[&str] = &[
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "NO_PROXY",
    "no_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
];

/// Configuration of [`MsiProxy::start`].
#[derive(Clone)]
pub struct MsiProxyConfig {
    /// Listen address; `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// The Azure identity (resource ID) of the session.
    pub identity: String,
    /// The tenant, put in the tokens' `tid` (a zero GUID when unknown).
    pub tenant_id: Option<String>,
    /// The app session private key (PKCS#8 PEM, ECDSA P-256): signs the local tokens.
    pub signing_key_pem: String,
    /// The app certificate's expiry: no token outlives it.
    pub token_expiry: time::OffsetDateTime,
    /// Where the local CA certificate (PEM) is written, mode 0600; its key stays in memory.
    /// A bundle (local CA + system roots) is written beside it as `<stem>-<port>-bundle.pem`
    /// (one per running proxy, so concurrent sessions do not break each other's clients) and
    /// removed when the proxy stops.
    pub local_ca_path: PathBuf,
    /// The `IDENTITY_HEADER` / MSI secret; 20 random bytes (hex) when `None`.
    pub secret: Option<String>,
    /// Proxy for non-Azure hosts (the caller's `HTTPS_PROXY`/`HTTP_PROXY`), e.g. `http://proxy:3128`.
    pub upstream_proxy: Option<String>,
}

impl std::fmt::Debug for MsiProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsiProxyConfig")
            .field("listen", &self.listen)
            .field("identity", &self.identity)
            .field("tenant_id", &self.tenant_id)
            .field("signing_key_pem", &"[elided]")
            .field("token_expiry", &self.token_expiry)
            .field("local_ca_path", &self.local_ca_path)
            .field("secret", &self.secret.as_ref().map(|_| "[elided]"))
            .field("upstream_proxy", &self.upstream_proxy)
            .finish()
    }
}

/// Errors of [`MsiProxy::start`] and [`format_exports`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MsiProxyError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The signing key is not a usable ECDSA P-256 key.
    #[error("app session key: {0}")]
    Key(#[from] TokenError),
    /// Local CA or certificate generation failed.
    #[error("local CA: {0}")]
    Pki(String),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// An error of [`Upstream::forward`]: answered to the client with `status` and an ARM-style
/// JSON error body carrying `message`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    /// Status sent to the client (e.g. 502 when the cluster is unreachable).
    pub status: http::StatusCode,
    /// What failed, shown to the user.
    pub message: String,
}

impl UpstreamError {
    /// An error answered with `status`.
    pub fn new(status: http::StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A 502 Bad Gateway.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(http::StatusCode::BAD_GATEWAY, message)
    }
}

/// Where intercepted Azure requests go (the lead's implementation: the Teleport proxy with the
/// app certificate).
///
/// The request's URI is absolute (`https://management.azure.com/subscriptions?...`), headers
/// are those the client sent (including `Host` and `Authorization: Bearer <local token>`).
#[async_trait::async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// Forwards one request and returns the response to send to the client.
    async fn forward(
        &self,
        req: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, UpstreamError>;
}

/// A running proxy. Dropping it without [`MsiProxy::shutdown`] also stops it.
pub struct MsiProxy {
    addr: SocketAddr,
    secret: String,
    local_ca_pem: String,
    local_ca_path: PathBuf,
    bundle_path: PathBuf,
    bundle_has_system_roots: bool,
    public_key_der: Vec<u8>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for MsiProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsiProxy")
            .field("addr", &self.addr)
            .field("local_ca_path", &self.local_ca_path)
            .finish_non_exhaustive()
    }
}

impl MsiProxy {
    /// Binds, creates the local CA, writes its certificate (0600) and the CA bundle, and starts
    /// serving in background tasks.
    pub async fn start(
        cfg: MsiProxyConfig,
        upstream: Arc<dyn Upstream>,
    ) -> Result<MsiProxy, MsiProxyError> {
        if cfg.identity.trim().is_empty() {
            return Err(MsiProxyError::Config("empty Azure identity".into()));
        }
        let secret = match cfg.secret.clone() {
            Some(s) if !s.is_empty() => {
                if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(MsiProxyError::Config(
                        "the secret may only hold letters, digits and '-'".into(),
                    ));
                }
                s
            }
            _ => hex::encode(rand::random::<[u8; 20]>()),
        };
        let signer = token::TokenSigner::from_pem(&cfg.signing_key_pem)?;
        let public_key_der = signer.public_key_der().to_vec();
        let upstream_proxy = match cfg.upstream_proxy.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => Some(server::ProxyTarget::parse(p)?),
            _ => None,
        };
        let ca = localca::LocalCa::generate()?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| MsiProxyError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| MsiProxyError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_ca_pem = ca.cert_pem().to_owned();
        let bundle_path = localca::bundle_path(&cfg.local_ca_path, addr.port());
        localca::write_private(&cfg.local_ca_path, &local_ca_pem)?;
        let system = localca::system_roots_pem(&[&cfg.local_ca_path, &bundle_path]);
        let mut bundle = local_ca_pem.clone();
        if let Some(roots) = &system {
            bundle.push('\n');
            bundle.push_str(roots);
        }
        localca::write_private(&bundle_path, &bundle)?;

        let (tx, closing) = tokio::sync::watch::channel(false);
        let shared = Arc::new(server::Shared {
            addr,
            identity: cfg.identity.trim().to_owned(),
            tenant_id: cfg.tenant_id.clone(),
            token_expiry: cfg.token_expiry,
            secret: secret.clone(),
            signer,
            ca,
            upstream,
            upstream_proxy,
            closing,
        });
        let task = tokio::spawn(server::serve(listener, shared));
        tracing::debug!(%addr, "Azure local proxy started");
        Ok(MsiProxy {
            addr,
            secret,
            local_ca_pem,
            local_ca_path: cfg.local_ca_path,
            bundle_path,
            bundle_has_system_roots: system.is_some(),
            public_key_der,
            shutdown: tx,
            task: Some(task),
        })
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The secret of the token endpoints (`IDENTITY_HEADER`, `MSI_SECRET`, `MSI_ENDPOINT` path).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The local CA certificate, PEM.
    pub fn local_ca_pem(&self) -> &str {
        &self.local_ca_pem
    }

    /// Where the local CA certificate was written.
    pub fn local_ca_path(&self) -> &std::path::Path {
        &self.local_ca_path
    }

    /// The bundle (local CA + system roots) `REQUESTS_CA_BUNDLE` points at.
    pub fn ca_bundle_path(&self) -> &std::path::Path {
        &self.bundle_path
    }

    /// The public key (DER SubjectPublicKeyInfo) verifying this proxy's tokens.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    /// The environment a client needs, in a stable order:
    ///
    /// * `HTTPS_PROXY`, `https_proxy`, `HTTP_PROXY`, `http_proxy` =
    ///   `http://teleport:SECRET@127.0.0.1:PORT` (lowercase too: Python prefers the lowercase
    ///   names when both exist); clients send the secret as `Proxy-Authorization: Basic`, without
    ///   which the proxy answers 407;
    /// * `NO_PROXY`, `no_proxy` = `localhost,127.0.0.1,::1` (replaces any inherited list that
    ///   could route Azure hosts around the proxy);
    /// * `IDENTITY_ENDPOINT` = `http://127.0.0.1:PORT/identity`, `IDENTITY_HEADER` = secret
    ///   (App Service protocol: az >= 2.73 / MSAL, Azure SDKs);
    /// * `MSI_ENDPOINT` = `http://127.0.0.1:PORT/<secret>/msi/token`, `MSI_SECRET` = secret
    ///   (older clients; ignored by clients that see `IDENTITY_*`);
    /// * `REQUESTS_CA_BUNDLE` = the bundle (local CA + system roots);
    /// * `NODE_EXTRA_CA_CERTS` = the bundle (Node reads this, not `SSL_CERT_FILE`, and adds it
    ///   to its own roots);
    /// * `SSL_CERT_FILE` = the bundle, only when system roots were found (otherwise it would
    ///   cut the client off from every other HTTPS site).
    pub fn env(&self) -> Vec<(String, String)> {
        let proxy = format!(
            "http://{}:{}@{}",
            server::PROXY_USER,
            self.secret,
            self.addr
        );
        let base = format!("http://{}", self.addr);
        let mut env = Vec::new();
        let mut put = |k: &str, v: String| env.push((k.to_owned(), v));
        put("HTTPS_PROXY", proxy.clone());
        put("https_proxy", proxy.clone());
        put("HTTP_PROXY", proxy.clone());
        put("http_proxy", proxy);
        put("NO_PROXY", "localhost,127.0.0.1,::1".into());
        put("no_proxy", "localhost,127.0.0.1,::1".into());
        put("IDENTITY_ENDPOINT", format!("{base}/identity"));
        put("IDENTITY_HEADER", self.secret.clone());
        put("MSI_ENDPOINT", format!("{base}/{}/msi/token", self.secret));
        put("MSI_SECRET", self.secret.clone());
        let bundle = self.bundle_path.to_string_lossy().into_owned();
        put("REQUESTS_CA_BUNDLE", bundle.clone());
        put("NODE_EXTRA_CA_CERTS", bundle.clone());
        if self.bundle_has_system_roots {
            put("SSL_CERT_FILE", bundle);
        }
        env
    }

    /// Stops accepting, closes open connections and waits for the serving task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let _ = std::fs::remove_file(&self.bundle_path);
    }
}

impl Drop for MsiProxy {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.bundle_path);
    }
}

/// The upstream proxy named by an environment (`https_proxy`, `HTTPS_PROXY`, `http_proxy`,
/// `HTTP_PROXY`, first non-empty; lowercase first as Python and curl do), for
/// [`MsiProxyConfig::upstream_proxy`]. `get` reads one variable, e.g. `|k| std::env::var(k).ok()`.
pub fn upstream_proxy_from_env(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    ["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"]
        .iter()
        .filter_map(|k| get(k))
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
}

/// Formats `env` for `tsh proxy azure --format`: `unix` (`export K=V`), `command-prompt`
/// (`set K=V`), `powershell` (`$Env:K="V"`) or `text` (`K=V`). Unix values are single-quoted
/// when they hold characters a shell would interpret.
///
/// The output is meant to be evaluated, and values carry names from the cluster (the cluster and
/// app names in `AZURE_CONFIG_DIR`): nothing in a value may run. No format takes a control
/// character (a newline would start a command); PowerShell escapes `` ` ``, `"` and `$` (and
/// the typographic double quotes it also reads as quotes); `command-prompt` quotes values with
/// characters `cmd` interprets (`set "K=V"`) and refuses `"`, `%` and `!`, which it expands
/// even inside quotes.
pub fn format_exports(env: &[(String, String)], format: &str) -> Result<String, MsiProxyError> {
    let mut out = String::new();
    for (k, v) in env {
        if v.chars().any(char::is_control) {
            return Err(MsiProxyError::Config(format!(
                "{k} holds a control character and cannot be printed as a command: {v:?}"
            )));
        }
        let line = match format {
            "unix" => format!("export {k}={}", shell_quote(v)),
            "command-prompt" => cmd_set(k, v)?,
            "powershell" => format!("$Env:{k}=\"{}\"", powershell_escape(v)),
            "text" => format!("{k}={v}"),
            other => {
                return Err(MsiProxyError::Config(format!(
                    "unknown format {other:?} (expected unix, command-prompt, powershell or text)"
                )))
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// `set K=V` for plain values, `set "K=V"` for values with characters `cmd` interprets; values
/// with `"`, `%` or `!` (expanded or closing the quotes even there) are refused.
fn cmd_set(k: &str, v: &str) -> Result<String, MsiProxyError> {
    if let Some(c) = v.chars().find(|c| matches!(c, '"' | '%' | '!')) {
        return Err(MsiProxyError::Config(format!(
            "{k} holds {c:?}, which the command prompt would interpret: use --format powershell or unix ({v:?})"
        )));
    }
    let plain = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:,@+=\\ '".contains(&b));
    Ok(if plain {
        format!("set {k}={v}")
    } else {
        format!("set \"{k}={v}\"")
    })
}

/// Inside a PowerShell double-quoted string: `` ` ``, `$` and every character PowerShell reads
/// as a double quote are escaped with a backtick.
fn powershell_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '`' | '$' | '"' | '\u{201C}' | '\u{201D}' | '\u{201E}') {
            out.push('`');
        }
        out.push(c);
    }
    out
}

fn shell_quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,@%+=".contains(&b));
    if plain {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proxy_from_env() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(upstream_proxy_from_env(env(&[])), None);
        assert_eq!(
            upstream_proxy_from_env(env(&[("HTTP_PROXY", "http://a:1"), ("https_proxy", " ")])),
            Some("http://a:1".into())
        );
        assert_eq!(
            upstream_proxy_from_env(env(&[
                ("HTTPS_PROXY", "http://b:2"),
                ("https_proxy", "http://c:3")
            ])),
            Some("http://c:3".into())
        );
    }

    #[test]
    fn exports() {
        let env = vec![
            ("A".to_string(), "http://127.0.0.1:1".to_string()),
            ("B".to_string(), "/x y/it's".to_string()),
        ];
        for (format, want) in [
            (
                "unix",
                "export A=http://127.0.0.1:1\nexport B='/x y/it'\\''s'\n",
            ),
            (
                "command-prompt",
                "set A=http://127.0.0.1:1\nset B=/x y/it's\n",
            ),
            (
                "powershell",
                "$Env:A=\"http://127.0.0.1:1\"\n$Env:B=\"/x y/it's\"\n",
            ),
            ("text", "A=http://127.0.0.1:1\nB=/x y/it's\n"),
        ] {
            assert_eq!(format_exports(&env, format).unwrap(), want, "{format}");
        }
        assert!(format_exports(&env, "json").is_err());
    }

    /// Values carry names a hostile proxy chose (its cluster name is part of AZURE_CONFIG_DIR):
    /// evaluating the output runs nothing, in any format.
    #[test]
    fn exports_run_nothing_from_a_value() {
        let one =
            |v: &str, format: &str| format_exports(&[("D".to_string(), v.to_string())], format);
        assert_eq!(
            one(r#"/h/azure/x$(Remove-Item ~)`"y/app"#, "powershell").unwrap(),
            "$Env:D=\"/h/azure/x`$(Remove-Item ~)```\"y/app\"\n"
        );
        assert_eq!(
            one("a\u{201C}; calc; \u{201D}$x", "powershell").unwrap(),
            "$Env:D=\"a`\u{201C}; calc; `\u{201D}`$x\"\n"
        );
        assert_eq!(
            one("/h/azure/a&calc|x", "command-prompt").unwrap(),
            "set \"D=/h/azure/a&calc|x\"\n"
        );
        for v in ["a%PATH%", "a\"&calc&\"", "a!x!"] {
            assert!(one(v, "command-prompt").is_err(), "{v}");
        }
        assert_eq!(
            one("/h/x$(id)'q", "unix").unwrap(),
            r#"export D='/h/x$(id)'\''q'"#.to_string() + "\n"
        );
        for format in ["unix", "command-prompt", "powershell", "text"] {
            for v in ["a\nexport X=1", "a\rb", "a\0b"] {
                assert!(one(v, format).is_err(), "{format} {v:?}");
            }
        }
    }
}
