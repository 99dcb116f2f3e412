//! Proxy side: the registry of connected agents.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch, Notify, Semaphore};

use crate::mux::{self, MuxHandle};
use crate::{
    encode_target, AgentInfo, TunnelConfig, TunnelError, TunnelStream, MAX_CONCURRENT_PINGS,
    MAX_CONNECTIONS_PER_AGENT, PING,
};

/// Proxy side: a registry of connected agents. Cheap to clone; clones share
/// the registry.
#[derive(Clone)]
pub struct TunnelServer {
    inner: Arc<Inner>,
}

struct Inner {
    config: TunnelConfig,
    next_id: AtomicU64,
    /// Connections per server ID, oldest first; dials use the newest.
    agents: Mutex<HashMap<String, Vec<Entry>>>,
    /// Bumped on every registration change.
    changed: watch::Sender<u64>,
}

struct Entry {
    conn_id: u64,
    info: AgentInfo,
    open: MuxHandle,
    streams: Arc<Semaphore>,
    /// Dropping this ends the connection's `serve_agent`.
    _kill: oneshot::Sender<()>,
}

impl Default for TunnelServer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TunnelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelServer")
            .field("connected", &self.connected())
            .finish()
    }
}

impl Inner {
    fn agents(&self) -> MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        // Nothing panics while holding the lock; recover anyway.
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Removes one connection's registration when `serve_agent` ends, however
/// it ends (including the future being dropped).
struct Registration {
    inner: Arc<Inner>,
    server_id: String,
    conn_id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let removed = {
            let mut agents = self.inner.agents();
            let mut removed = None;
            if let Some(list) = agents.get_mut(&self.server_id) {
                if let Some(pos) = list.iter().position(|e| e.conn_id == self.conn_id) {
                    removed = Some(list.remove(pos));
                }
                if list.is_empty() {
                    agents.remove(&self.server_id);
                }
            }
            removed
        };
        if removed.is_some() {
            self.inner.bump();
        }
    }
}

impl TunnelServer {
    pub fn new() -> Self {
        Self::with_config(TunnelConfig::default())
    }

    pub fn with_config(config: TunnelConfig) -> Self {
        TunnelServer {
            inner: Arc::new(Inner {
                config,
                next_id: AtomicU64::new(1),
                agents: Mutex::new(HashMap::new()),
                changed: watch::channel(0).0,
            }),
        }
    }

    /// Serves one agent connection until it closes. The connection is
    /// registered under `agent.server_id`: a newer connection with the same
    /// ID takes the dials, older ones stay as fall-backs (at most
    /// [`MAX_CONNECTIONS_PER_AGENT`]; beyond that the oldest is closed). When
    /// a connection ends only its own registration is removed.
    pub async fn serve_agent<S>(&self, stream: S, agent: AgentInfo) -> Result<(), TunnelError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let cfg = &self.inner.config;
        let (handle, mux) = mux::new(stream, cfg, yamux::Mode::Server);
        let conn_id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let server_id = agent.server_id.clone();
        let (kill_tx, kill_rx) = oneshot::channel();
        let evicted = {
            let mut agents = self.inner.agents();
            let list = agents.entry(server_id.clone()).or_default();
            list.push(Entry {
                conn_id,
                info: agent,
                open: handle,
                streams: Arc::new(Semaphore::new(cfg.max_streams.max(1))),
                _kill: kill_tx,
            });
            let excess = list.len().saturating_sub(MAX_CONNECTIONS_PER_AGENT);
            list.drain(..excess).collect::<Vec<_>>()
        };
        // Dropped outside the lock: this closes the evicted connections.
        drop(evicted);
        let _registration = Registration {
            inner: self.inner.clone(),
            server_id: server_id.clone(),
            conn_id,
        };
        self.inner.bump();
        tracing::info!(server_id = %server_id, conn_id, "agent connected to the reverse tunnel");

        let pings = Arc::new(Notify::new());
        let ping_slots = Arc::new(Semaphore::new(MAX_CONCURRENT_PINGS));
        let ping_timeout = cfg.keepalive_timeout;
        let on_inbound = {
            let pings = pings.clone();
            move |stream: yamux::Stream| match ping_slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let pings = pings.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        let ok = tokio::time::timeout(ping_timeout, answer_ping(stream))
                            .await
                            .unwrap_or(false);
                        if ok {
                            pings.notify_one();
                        }
                    });
                }
                // Too many streams at once from this agent: reset it.
                Err(_) => drop(stream),
            }
        };
        let idle = cfg.agent_idle_timeout;
        let watchdog = async {
            loop {
                if tokio::time::timeout(idle, pings.notified()).await.is_err() {
                    return;
                }
            }
        };

        let result = tokio::select! {
            r = mux.drive(on_inbound) => r,
            _ = kill_rx => Err(TunnelError::Evicted(server_id.clone())),
            _ = watchdog => Err(TunnelError::AgentIdle(server_id.clone(), idle)),
        };
        match &result {
            Ok(()) => tracing::info!(server_id = %server_id, conn_id, "agent tunnel closed"),
            Err(e) => {
                tracing::info!(server_id = %server_id, conn_id, error = %e, "agent tunnel ended")
            }
        }
        result
    }

    /// Opens a stream to the agent; `target` (at most
    /// [`crate::MAX_TARGET_LEN`] bytes) reaches the agent's handler before
    /// any payload.
    pub async fn dial(&self, server_id: &str, target: &[u8]) -> Result<TunnelStream, TunnelError> {
        let header = encode_target(target).ok_or(TunnelError::TargetTooLarge(target.len()))?;
        // Newest first: a connection that died but is not unregistered yet
        // falls through to an older live one.
        let candidates: Vec<(MuxHandle, Arc<Semaphore>)> = {
            let agents = self.inner.agents();
            agents
                .get(server_id)
                .map(|list| {
                    list.iter()
                        .rev()
                        .map(|e| (e.open.clone(), e.streams.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let dial = async {
            let mut last_error = None;
            for (open, streams) in candidates {
                match open_stream(&open, streams, &header).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => {
                        tracing::debug!(server_id, error = %e, "tunnel connection unusable");
                        last_error = Some(e);
                    }
                }
            }
            if let Some(e) = last_error {
                tracing::info!(server_id, error = %e, "no usable tunnel to agent");
            }
            Err(TunnelError::NotConnected(server_id.to_string()))
        };
        tokio::time::timeout(self.inner.config.dial_timeout, dial)
            .await
            .map_err(|_| TunnelError::DialTimeout(server_id.to_string()))?
    }

    /// The agents with at least one connection (the newest connection's
    /// identity for each server ID), sorted by server ID.
    pub fn connected(&self) -> Vec<AgentInfo> {
        let agents = self.inner.agents();
        let mut out: Vec<AgentInfo> = agents
            .values()
            .filter_map(|list| list.last().map(|e| e.info.clone()))
            .collect();
        out.sort_by(|a, b| a.server_id.cmp(&b.server_id));
        out
    }

    /// Whether `server_id` has a tunnel to this proxy.
    pub fn is_connected(&self, server_id: &str) -> bool {
        self.inner.agents().contains_key(server_id)
    }

    /// Resolves when `server_id` is connected, or fails after `timeout`.
    pub async fn wait_connected(
        &self,
        server_id: &str,
        timeout: Duration,
    ) -> Result<(), TunnelError> {
        let mut changes = self.inner.changed.subscribe();
        let wait = async {
            loop {
                drop(changes.borrow_and_update());
                if self.is_connected(server_id) {
                    return;
                }
                if changes.changed().await.is_err() {
                    // Cannot happen while `self` holds the sender.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| TunnelError::WaitTimeout(server_id.to_string()))
    }
}

/// Opens one stream on one connection and sends the target header.
async fn open_stream(
    open: &MuxHandle,
    streams: Arc<Semaphore>,
    header: &[u8],
) -> Result<TunnelStream, TunnelError> {
    let permit = streams
        .acquire_owned()
        .await
        .map_err(|_| TunnelError::Closed)?;
    let mut stream = TunnelStream::new(open.open().await?, Some(permit));
    stream.write_all(header).await?;
    stream.flush().await?;
    Ok(stream)
}

/// Answers one keepalive stream: reads the ping byte, echoes it, closes.
async fn answer_ping(stream: yamux::Stream) -> bool {
    let mut stream = TunnelStream::new(stream, None);
    let mut byte = [0u8; 1];
    if stream.read_exact(&mut byte).await.is_err() || byte[0] != PING {
        return false;
    }
    if stream.write_all(&byte).await.is_err() {
        return false;
    }
    let _ = stream.shutdown().await;
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::MAX_TARGET_LEN;

    fn info(id: &str) -> AgentInfo {
        AgentInfo {
            server_id: id.into(),
            cluster: "c".into(),
            roles: vec![],
        }
    }

    type Task = tokio::task::JoinHandle<Result<(), TunnelError>>;

    /// A raw multiplexed client that does whatever the test wants.
    fn raw_agent(server: &TunnelServer, id: &str) -> (MuxHandle, Task, Task) {
        let (client, proxy_end) = tokio::io::duplex(64 * 1024);
        let (handle, mux) = mux::new(client, &TunnelConfig::default(), yamux::Mode::Client);
        let client_task = tokio::spawn(mux.drive(drop));
        let server = server.clone();
        let info = info(id);
        let serve = tokio::spawn(async move { server.serve_agent(proxy_end, info).await });
        (handle, client_task, serve)
    }

    #[tokio::test]
    async fn garbage_bytes_end_only_that_connection() {
        let server = TunnelServer::new();
        let (mut client, proxy_end) = tokio::io::duplex(64 * 1024);
        let s = server.clone();
        let serve = tokio::spawn(async move { s.serve_agent(proxy_end, info("bad")).await });
        server
            .wait_connected("bad", Duration::from_secs(5))
            .await
            .unwrap();
        // Not yamux at all: a huge declared frame length, then junk.
        let mut junk = vec![0u8, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
        junk.extend((0..100_000u32).map(|i| (i * 13) as u8));
        let _ = client.write_all(&junk).await;
        let r = tokio::time::timeout(Duration::from_secs(5), serve)
            .await
            .unwrap()
            .unwrap();
        assert!(r.is_err(), "{r:?}");
        assert!(!server.is_connected("bad"));
    }

    #[tokio::test]
    async fn agent_opened_streams_with_junk_do_not_hurt_the_server() {
        let server = TunnelServer::new();
        let (handle, _client, serve) = raw_agent(&server, "noisy");
        server
            .wait_connected("noisy", Duration::from_secs(5))
            .await
            .unwrap();
        // Many streams, each sending an oversized "header" and lots of junk.
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let handle = handle.clone();
            tasks.spawn(async move {
                let Ok(s) = handle.open().await else { return };
                let mut s = TunnelStream::new(s, None);
                let mut junk = u16::MAX.to_be_bytes().to_vec();
                junk.extend(vec![0xAB; MAX_TARGET_LEN * 64]);
                let _ = s.write_all(&junk).await;
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink).await;
            });
        }
        while tasks.join_next().await.is_some() {}
        // The connection is either still served or was ended cleanly; the
        // registry and a well-behaved agent are unaffected.
        let (good, _good_client, _good_serve) = raw_agent(&server, "good");
        server
            .wait_connected("good", Duration::from_secs(5))
            .await
            .unwrap();
        let mut s = TunnelStream::new(good.open().await.unwrap(), None);
        s.write_all(&[PING]).await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(b[0], PING);
        if serve.is_finished() {
            assert!(!server.is_connected("noisy"));
        }
    }

    #[tokio::test]
    async fn silent_agent_is_dropped_after_idle_timeout() {
        let server = TunnelServer::with_config(TunnelConfig {
            agent_idle_timeout: Duration::from_millis(200),
            ..TunnelConfig::default()
        });
        let (_handle, _client, serve) = raw_agent(&server, "quiet");
        let r = tokio::time::timeout(Duration::from_secs(5), serve)
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(r, Err(TunnelError::AgentIdle(ref id, _)) if id == "quiet"),
            "{r:?}"
        );
        assert!(!server.is_connected("quiet"));
    }

    #[tokio::test]
    async fn dial_waits_for_a_free_stream_slot_then_times_out() {
        let server = TunnelServer::with_config(TunnelConfig {
            max_streams: 2,
            dial_timeout: Duration::from_millis(200),
            ..TunnelConfig::default()
        });
        let (_handle, _client, _serve) = raw_agent(&server, "n");
        server
            .wait_connected("n", Duration::from_secs(5))
            .await
            .unwrap();
        let s1 = server.dial("n", b"1").await.unwrap();
        let _s2 = server.dial("n", b"2").await.unwrap();
        let err = server.dial("n", b"3").await.unwrap_err();
        assert!(matches!(err, TunnelError::DialTimeout(_)), "{err:?}");
        drop(s1);
        server.dial("n", b"4").await.unwrap();
    }

    #[tokio::test]
    async fn oldest_connection_is_evicted_beyond_the_cap() {
        let server = TunnelServer::new();
        let mut serves = Vec::new();
        let mut keep = Vec::new();
        for _ in 0..=MAX_CONNECTIONS_PER_AGENT {
            let (h, c, s) = raw_agent(&server, "dup");
            keep.push((h, c));
            serves.push(s);
        }
        let first = serves.remove(0);
        let r = tokio::time::timeout(Duration::from_secs(5), first)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(r, Err(TunnelError::Evicted(_))), "{r:?}");
        assert!(server.is_connected("dup"));
        assert_eq!(server.connected().len(), 1);
    }
}
