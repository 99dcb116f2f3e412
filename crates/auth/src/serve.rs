//! Serving an axum router over TLS, with the caller taken from the client
//! certificate.

use std::future::Future;
use std::sync::Arc;

use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::Caller;

/// The caller of a TLS connection: from the verified client certificate, or
/// anonymous when there is none. A certificate we cannot read (it verified, so
/// it came from one of our CAs) is treated as anonymous and logged.
pub fn caller_of(conn: &rustls::CommonState) -> Caller {
    match pki::tls::peer_identity(conn) {
        None => Caller::Anonymous,
        Some(Ok(id)) => Caller::from_identity(id),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "unreadable client certificate");
            Caller::Anonymous
        }
    }
}

/// Address of the connection's peer, in each request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Serve HTTP/1.1 and HTTP/2 on one accepted TLS stream.
pub async fn serve_connection<S>(
    stream: tokio_rustls::server::TlsStream<S>,
    router: Router,
    peer: std::net::SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let caller = caller_of(stream.get_ref().1);
    let svc = TowerToHyperService::new(
        router
            .layer(Extension(caller))
            .layer(Extension(PeerAddr(peer))),
    );
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
        .await
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Accept TLS connections on `listener` until `shutdown` completes.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
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
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
                .await
            {
                Ok(Ok(tls)) => serve_connection(tls, router, peer).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
