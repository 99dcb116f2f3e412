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
        self.client_with(reqwest::redirect::Policy::default())
    }

    /// A client that follows no redirect: for forwarding a user's requests
    /// (the app service's Azure handler), where a 3xx goes back to the
    /// client as Azure sent it instead of being followed by the agent with
    /// the identity's token.
    pub fn forwarding_client(&self) -> Result<reqwest::Client, Error> {
        self.client_with(reqwest::redirect::Policy::none())
    }

    fn client_with(&self, redirects: reqwest::redirect::Policy) -> Result<reqwest::Client, Error> {
        let mut builder = reqwest::Client::builder()
            .redirect(redirects)
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
            cloud: Some(Arc::new(cloud_configuration(cloud))),
            ..Default::default()
        })
    }
}

/// The `azure_core` cloud configuration of `cloud` (the SDK-free [`crate::Cloud`] lives in
/// `azure-endpoints`, which cannot name the SDK's type).
pub fn cloud_configuration(cloud: crate::Cloud) -> azure_core::cloud::CloudConfiguration {
    match cloud {
        crate::Cloud::AzureCloud => azure_core::cloud::CloudConfiguration::AzurePublic,
        crate::Cloud::AzureChinaCloud => azure_core::cloud::CloudConfiguration::AzureChina,
        crate::Cloud::AzureUSGovernment => azure_core::cloud::CloudConfiguration::AzureGovernment,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A 3xx from "Azure" reaches the forwarding client's caller as sent; the
    /// place it points at is never asked (with the identity's token).
    #[tokio::test]
    async fn the_forwarding_client_follows_no_redirect() {
        let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!("http://{}/stolen", elsewhere.local_addr().unwrap());
        let azure = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let azure_addr = azure.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = azure.accept().await.unwrap();
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 302 Found\r\nlocation: {target}\r\ncontent-length: 0\r\n\r\n"
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        let config = HttpConfig::default();
        let url = format!("http://{azure_addr}/subscriptions");
        let resp = config
            .forwarding_client()
            .unwrap()
            .get(&url)
            .bearer_auth("token")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302);
        let dialled =
            tokio::time::timeout(std::time::Duration::from_millis(200), elsewhere.accept()).await;
        assert!(dialled.is_err(), "the redirect was followed");
        // The ordinary client (Azure's own APIs) still follows redirects.
        let followed = tokio::spawn(config.client().unwrap().get(&url).send());
        let accepted =
            tokio::time::timeout(std::time::Duration::from_secs(10), elsewhere.accept()).await;
        assert!(accepted.is_ok(), "the ordinary client did not follow");
        followed.abort();
    }
}
