//! The proxy service: one TLS port for everything users and agents reach.
//!
//! Connections are routed by the ALPN protocol the client offers, read from
//! the ClientHello before the handshake completes (so each protocol can have
//! its own TLS settings): `http/1.1` and `h2` reach the web API and the
//! authenticated API; the protocols later services add (`teleport-reversetunnel`,
//! `teleport-redis`, ...) are refused with a log line until they exist.

pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use auth::AuthServer;
use tokio::net::TcpListener;

/// Errors starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// TLS material could not be used.
    #[error("proxy TLS setup failed: {0}")]
    Tls(String),
}

/// Settings of the proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Address users reach (host:port), for ping answers and links.
    pub public_addr: String,
    /// Web certificate chain (PEM).
    pub cert_pem: String,
    /// Web private key (PEM).
    pub key_pem: String,
}

/// ALPN protocols served as HTTP with the web certificate.
const HTTP_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// ALPN of agents' HTTP calls, served with the host-CA certificate that
/// agents verify through `teleport.ca_pin`.
pub const ALPN_CLUSTER: &[u8] = b"teleport-cluster";

/// Where a connection goes, by the ALPN protocols offered.
#[derive(Debug, PartialEq)]
enum Route {
    Http,
    Cluster,
    Unsupported(String),
}

fn route(alpn: Option<Vec<Vec<u8>>>) -> Route {
    let Some(list) = alpn else {
        return Route::Http;
    };
    if list.is_empty() {
        return Route::Http;
    }
    if list.iter().any(|p| p.as_slice() == ALPN_CLUSTER) {
        return Route::Cluster;
    }
    if list.iter().any(|p| HTTP_PROTOCOLS.contains(&p.as_slice())) {
        return Route::Http;
    }
    Route::Unsupported(String::from_utf8_lossy(&list[0]).to_string())
}

/// A running proxy's request handling, shared by its connections.
pub struct Proxy {
    http_tls: Arc<rustls::ServerConfig>,
    cluster_tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
}

impl Proxy {
    /// Build the proxy in front of `auth`.
    pub fn new(auth: Arc<AuthServer>, cfg: ProxyConfig) -> Result<Proxy, ProxyError> {
        let client_cas = vec![
            auth.user_ca().cert_pem().to_string(),
            auth.host_ca().cert_pem().to_string(),
        ];
        let http_tls = pki::tls::server_config(
            &cfg.cert_pem,
            &cfg.key_pem,
            &client_cas,
            pki::tls::ClientAuth::Optional,
            &HTTP_PROTOCOLS,
        )
        .map_err(|e| ProxyError::Tls(e.to_string()))?;
        let host = cfg
            .public_addr
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| cfg.public_addr.clone());
        let (cluster_cert, cluster_key) = auth
            .server_keypair("proxy", vec![host])
            .map_err(|e| ProxyError::Tls(e.to_string()))?;
        let cluster_tls = pki::tls::server_config(
            &cluster_cert,
            &cluster_key,
            &client_cas,
            pki::tls::ClientAuth::Optional,
            &[ALPN_CLUSTER],
        )
        .map_err(|e| ProxyError::Tls(e.to_string()))?;
        let router =
            web::router(auth.clone(), cfg.public_addr.clone()).merge(auth::http::router(auth));
        Ok(Proxy {
            http_tls: Arc::new(http_tls),
            cluster_tls: Arc::new(cluster_tls),
            router,
        })
    }

    /// Accept connections until `shutdown` completes.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let this = self.clone();
            tokio::spawn(async move {
                if tokio::time::timeout(Duration::from_secs(10), this.clone().handle(tcp, peer))
                    .await
                    .is_err()
                {
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            });
        }
    }

    /// Read the ClientHello, pick the route, finish the handshake and hand
    /// the connection over. Returns once the connection is handed over.
    async fn handle(self: Arc<Self>, tcp: tokio::net::TcpStream, peer: SocketAddr) {
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let start = match acceptor.await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "bad ClientHello");
                return;
            }
        };
        let alpn = start
            .client_hello()
            .alpn()
            .map(|it| it.map(|p| p.to_vec()).collect::<Vec<_>>());
        let tls = match route(alpn) {
            Route::Http => self.http_tls.clone(),
            Route::Cluster => self.cluster_tls.clone(),
            Route::Unsupported(proto) => {
                tracing::warn!(%peer, protocol = %proto, "ALPN protocol not served by this proxy");
                return;
            }
        };
        match start.into_stream(tls).await {
            Ok(tls) => {
                let router = self.router.clone();
                tokio::spawn(auth::serve::serve_connection(tls, router, peer));
            }
            Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_alpn() {
        assert_eq!(route(None), Route::Http);
        assert_eq!(route(Some(vec![b"http/1.1".to_vec()])), Route::Http);
        assert_eq!(
            route(Some(vec![b"teleport-redis".to_vec(), b"h2".to_vec()])),
            Route::Http
        );
        assert_eq!(
            route(Some(vec![b"http/1.1".to_vec(), ALPN_CLUSTER.to_vec()])),
            Route::Cluster
        );
        assert_eq!(
            route(Some(vec![b"teleport-redis".to_vec()])),
            Route::Unsupported("teleport-redis".into())
        );
    }
}
