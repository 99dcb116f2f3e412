//! The outbound HTTP client: proxies and CA bundle from the environment or given explicitly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;

/// How outbound HTTP is made.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// A proxy for every request (`http://user:pass@host:port`); when `None`, `HTTPS_PROXY`,
    /// `HTTP_PROXY` and `NO_PROXY` from the environment apply.
    pub proxy: Option<String>,
    /// Extra trusted CA certificates (PEM bundle), added to the platform's roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// A PEM file of extra trusted CAs (what `SSL_CERT_FILE` names).
    pub extra_ca_file: Option<PathBuf>,
    /// Per-request timeout (30 s when `None`).
    pub timeout: Option<Duration>,
}

impl HttpConfig {
    /// Proxies from the environment, plus the CAs of `SSL_CERT_FILE` when it is set.
    pub fn from_env() -> Self {
        Self {
            extra_ca_file: std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
            ..Self::default()
        }
    }

    /// Everything through `proxy_url`, trusting the extra CA `ca_pem`.
    pub fn with_proxy(proxy_url: impl Into<String>, ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            proxy: Some(proxy_url.into()),
            extra_ca_pem: Some(ca_pem.into()),
            ..Self::default()
        }
    }

    /// Builds a `reqwest` client.
    pub fn client(&self) -> Result<reqwest::Client, Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout.unwrap_or(Duration::from_secs(30)))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("azure-mint/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = &self.proxy {
            let proxy = reqwest::Proxy::all(proxy.as_str())
                .map_err(|e| Error::Config(format!("proxy URL: {e}")))?;
            builder = builder.proxy(proxy);
        }
        let mut pems: Vec<Vec<u8>> = Vec::new();
        if let Some(pem) = &self.extra_ca_pem {
            pems.push(pem.clone());
        }
        if let Some(path) = &self.extra_ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Config(format!("CA file {}: {e}", path.display())))?;
            pems.push(pem);
        }
        for pem in pems {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Config(format!("CA bundle: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        builder
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))
    }

    /// `azure_core` client options using this configuration's transport.
    pub fn client_options(
        &self,
        cloud: crate::Cloud,
    ) -> Result<azure_core::http::ClientOptions, Error> {
        let client = self.client()?;
        Ok(azure_core::http::ClientOptions {
            transport: Some(azure_core::http::Transport::new(Arc::new(client))),
            cloud: Some(Arc::new(cloud.configuration())),
            ..Default::default()
        })
    }
}
