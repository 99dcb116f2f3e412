//! Agent side: keep one connection to a proxy and serve the streams it opens.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::mux::{self, MuxHandle};
use crate::{read_target, AsyncReadWrite, TunnelConfig, TunnelError, TunnelStream, PING};

/// What [`Connector::connect`] returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<Box<dyn AsyncReadWrite>>> + Send>>;
/// What [`StreamHandler::handle`] returns.
pub type HandleFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Dials the proxy and returns a ready stream (TLS done, ALPN
/// `teleport-reversetunnel`).
pub trait Connector: Send + Sync + 'static {
    fn connect(&self) -> ConnectFuture;
}

/// Serves one stream the proxy opened; `target` is the header the proxy
/// sent with [`crate::TunnelServer::dial`]. Each call runs in its own task.
pub trait StreamHandler: Send + Sync + 'static {
    fn handle(&self, target: Vec<u8>, stream: TunnelStream) -> HandleFuture;
}

struct FnConnector<F>(F);

impl<F, Fut> Connector for FnConnector<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<Box<dyn AsyncReadWrite>>> + Send + 'static,
{
    fn connect(&self) -> ConnectFuture {
        Box::pin((self.0)())
    }
}

/// A [`Connector`] from an async closure.
pub fn connector_fn<F, Fut>(f: F) -> impl Connector
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<Box<dyn AsyncReadWrite>>> + Send + 'static,
{
    FnConnector(f)
}

struct FnHandler<F>(F);

impl<F, Fut> StreamHandler for FnHandler<F>
where
    F: Fn(Vec<u8>, TunnelStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn handle(&self, target: Vec<u8>, stream: TunnelStream) -> HandleFuture {
        Box::pin((self.0)(target, stream))
    }
}

/// A [`StreamHandler`] from an async closure.
pub fn handler_fn<F, Fut>(f: F) -> impl StreamHandler
where
    F: Fn(Vec<u8>, TunnelStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    FnHandler(f)
}

/// Where an [`AgentTunnel`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelState {
    /// Dialing the proxy.
    Connecting,
    /// Connected; the number counts connections made so far (1 for the
    /// first), so a reconnect is visible even when no other state was seen.
    Connected(u64),
    /// Waiting before the next attempt.
    Backoff,
    /// `run` has returned.
    Stopped,
}

/// Exponential backoff with +-25% jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The next delay: the current step with jitter; the step then doubles
    /// up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let factor: f64 = rand::rng().random_range(0.75..=1.25);
        base.mul_f64(factor)
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Agent side of the tunnel: keeps one connection to the proxy.
pub struct AgentTunnel {
    connector: Arc<dyn Connector>,
    handler: Arc<dyn StreamHandler>,
    config: TunnelConfig,
    state: watch::Sender<TunnelState>,
}

impl AgentTunnel {
    pub fn new(connector: impl Connector, handler: impl StreamHandler) -> Self {
        AgentTunnel {
            connector: Arc::new(connector),
            handler: Arc::new(handler),
            config: TunnelConfig::default(),
            state: watch::channel(TunnelState::Connecting).0,
        }
    }

    pub fn with_config(mut self, config: TunnelConfig) -> Self {
        self.config = config;
        self
    }

    /// Observes the tunnel's state (take it before calling `run`).
    pub fn state(&self) -> watch::Receiver<TunnelState> {
        self.state.subscribe()
    }

    /// Keeps one connection to the proxy: dials, serves incoming streams
    /// (each in its own task), and on loss reconnects with jittered
    /// exponential backoff (reset once a connection lived longer than
    /// `backoff_reset_after`). Returns when `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let cfg = self.config.clone();
        let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
        let mut connections: u64 = 0;
        tokio::pin!(shutdown);
        loop {
            self.state.send_replace(TunnelState::Connecting);
            let connect = tokio::time::timeout(cfg.dial_timeout, self.connector.connect());
            let connected = tokio::select! {
                r = connect => r,
                _ = &mut shutdown => break,
            };
            match connected {
                Ok(Ok(stream)) => {
                    connections += 1;
                    self.state.send_replace(TunnelState::Connected(connections));
                    tracing::info!("reverse tunnel connected");
                    let started = Instant::now();
                    let result = tokio::select! {
                        r = self.serve(stream) => r,
                        _ = &mut shutdown => break,
                    };
                    match result {
                        Ok(()) => tracing::warn!("reverse tunnel closed by the proxy"),
                        Err(e) => tracing::warn!(error = %e, "reverse tunnel lost"),
                    }
                    if started.elapsed() > cfg.backoff_reset_after {
                        backoff.reset();
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot reach the proxy"),
                Err(_) => {
                    tracing::warn!(timeout = ?cfg.dial_timeout, "timed out dialing the proxy")
                }
            }
            self.state.send_replace(TunnelState::Backoff);
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut shutdown => break,
            }
        }
        self.state.send_replace(TunnelState::Stopped);
    }

    /// Serves one connection until it fails.
    async fn serve(&self, stream: Box<dyn AsyncReadWrite>) -> Result<(), TunnelError> {
        let (handle, mux) = mux::new(stream, &self.config, yamux::Mode::Client);
        let handler = self.handler.clone();
        let header_timeout = self.config.header_timeout;
        let on_inbound = move |stream: yamux::Stream| {
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut stream = TunnelStream::new(stream, None);
                match tokio::time::timeout(header_timeout, read_target(&mut stream)).await {
                    Ok(Ok(target)) => handler.handle(target, stream).await,
                    Ok(Err(e)) => tracing::warn!(error = %e, "bad tunnel stream header"),
                    Err(_) => tracing::warn!("tunnel stream header timed out"),
                }
            });
        };
        tokio::select! {
            r = mux.drive(on_inbound) => r,
            r = keepalive(handle, &self.config) => r,
        }
    }
}

/// Pings the proxy every interval; fails when a ping is not answered in time.
async fn keepalive(handle: MuxHandle, cfg: &TunnelConfig) -> Result<(), TunnelError> {
    loop {
        tokio::time::sleep(cfg.keepalive_interval).await;
        match tokio::time::timeout(cfg.keepalive_timeout, ping(&handle)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(TunnelError::KeepaliveTimeout(cfg.keepalive_timeout)),
        }
    }
}

async fn ping(handle: &MuxHandle) -> Result<(), TunnelError> {
    let mut stream = TunnelStream::new(handle.open().await?, None);
    stream.write_all(&[PING]).await?;
    stream.flush().await?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    if byte[0] != PING {
        return Err(TunnelError::Protocol("bad keepalive answer".into()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{encode_target, MAX_TARGET_LEN};
    use std::sync::Mutex;

    #[tokio::test]
    async fn bad_headers_from_the_proxy_only_drop_that_stream() {
        let (agent_end, proxy_end) = tokio::io::duplex(64 * 1024);
        let slot = Arc::new(Mutex::new(Some(agent_end)));
        let connector = connector_fn(move || {
            let taken = slot.lock().unwrap().take();
            async move {
                match taken {
                    Some(s) => Ok(Box::new(s) as Box<dyn AsyncReadWrite>),
                    None => std::future::pending().await,
                }
            }
        });
        let handler = handler_fn(|target: Vec<u8>, mut stream: TunnelStream| async move {
            let _ = stream.write_all(&target).await;
            let _ = stream.shutdown().await;
        });
        let agent = AgentTunnel::new(connector, handler);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(agent.run(async move {
            let _ = stopped.await;
        }));

        // A raw proxy end.
        let (proxy, mux) = mux::new(proxy_end, &TunnelConfig::default(), yamux::Mode::Server);
        let _driver = tokio::spawn(mux.drive(drop));

        // Oversized header, then junk: the agent drops the stream.
        let mut bad = TunnelStream::new(proxy.open().await.unwrap(), None);
        let mut junk = ((MAX_TARGET_LEN + 1) as u16).to_be_bytes().to_vec();
        junk.extend(vec![b'j'; MAX_TARGET_LEN + 1]);
        bad.write_all(&junk).await.unwrap();
        let mut sink = Vec::new();
        let _ = bad.read_to_end(&mut sink).await;
        assert!(sink.is_empty(), "handler ran on a bad header");

        // Truncated header: the stream ends before the target is complete.
        let mut short = TunnelStream::new(proxy.open().await.unwrap(), None);
        short.write_all(&[0, 50, b'x']).await.unwrap();
        short.shutdown().await.unwrap();
        let mut sink = Vec::new();
        let _ = short.read_to_end(&mut sink).await;
        assert!(sink.is_empty());

        // The connection still serves good streams.
        let mut good = TunnelStream::new(proxy.open().await.unwrap(), None);
        good.write_all(&encode_target(b"fine").unwrap())
            .await
            .unwrap();
        let mut back = Vec::new();
        good.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"fine");

        let _ = stop.send(());
        run.await.unwrap();
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut base = 100.0;
        for _ in 0..12 {
            let d = b.next_delay().as_secs_f64() * 1000.0;
            assert!(
                d >= base * 0.75 - 0.001 && d <= base * 1.25 + 0.001,
                "{d} vs {base}"
            );
            base = (base * 2.0_f64).min(10_000.0);
        }
        assert_eq!(base, 10_000.0);
        b.reset();
        let d = b.next_delay();
        assert!(d >= Duration::from_millis(75) && d <= Duration::from_millis(125));
    }

    #[test]
    fn backoff_jitter_varies() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
            seen.insert(b.next_delay().as_micros());
        }
        assert!(seen.len() > 1, "no jitter: {seen:?}");
    }
}
