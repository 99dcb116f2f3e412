//! The agent's audit sink: events from every service go to the auth service
//! in batches, in order, off the session path.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::{mpsc, Notify};
use tunnel::watched::{ReadWatch, Watched};

use api::audit::AuditEvent;

use crate::Cluster;
#[cfg(test)]
use crate::ClusterError;

/// Most events sent to the auth service in one request.
const AUDIT_BATCH: usize = 10_000;
/// Most bytes of events in one request (the auth service takes 2 MiB).
const AUDIT_BATCH_BYTES: usize = 1024 * 1024;
/// How long the first event of a batch waits for company: one request per
/// this interval at most while events trickle in, instead of one per
/// command (each costs the agent and the auth service far more than the
/// command itself).
const AUDIT_DELAY: Duration = Duration::from_millis(50);
/// Bytes of events queued in the agent before sessions stop reading client
/// commands until the auth service has taken some (see [`AuditSink::throttle`]).
pub const AUDIT_BACKLOG: usize = 32 * 1024 * 1024;
/// Sends audit events to the cluster in batches, in order, off the session
/// path. Events wait in memory while the auth service is unreachable and are
/// retried; none is dropped while the agent runs. Events are
/// [`AuditEvent`]s and travel as JSON text: a database session serializes its
/// common fields once ([`DbSession::query_prefix`]), and all commands of one
/// session in a batch go as one grouped event (`db_queries`, see
/// [`encode_batch`]), which the audit log reads back as one
/// `db.session.query` per command.
///
/// [`DbSession::query_prefix`]: api::audit::DbSession::query_prefix
///
/// A batch leaves [`AUDIT_DELAY`] after its first event (at once when the
/// queue is behind). While more than the backlog limit waits, sessions
/// wrapped with [`AuditSink::throttle`] stop reading client commands.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::UnboundedSender<Queued>,
    backlog: Arc<Backlog>,
}

/// Bytes queued and not yet taken by the auth service.
struct Backlog {
    bytes: AtomicUsize,
    limit: usize,
    /// Woken whenever a batch has been taken.
    drained: Arc<Notify>,
}

impl Backlog {
    fn full(&self) -> bool {
        self.bytes.load(Ordering::Acquire) >= self.limit
    }
}

/// An event waiting to be sent.
enum Queued {
    /// A whole event: the text of a JSON object.
    Event(String),
    /// One command of a session: the open text of its `db.session.query`
    /// event (see [`api::audit::DbSession::query_prefix`]) and the query.
    Query(Arc<str>, String),
}

impl Queued {
    fn size(&self) -> usize {
        match self {
            Queued::Event(e) => e.len(),
            Queued::Query(_, q) => q.len() + 4,
        }
    }
}

/// The JSON array sent for `batch`. All queries of one session in the
/// batch become one grouped event, placed where its first query was: with
/// 50 sessions interleaving their commands, consecutive grouping alone would
/// leave one event per command. A session's start event precedes its first
/// query and its end event follows its last, so each session's order holds.
fn encode_batch(batch: &[Queued]) -> Vec<u8> {
    let mut body = Vec::with_capacity(batch.iter().map(Queued::size).sum::<usize>() + 512);
    // Queries of each session (keyed by its prefix), in order.
    let mut sessions: HashMap<*const u8, Vec<&str>> = HashMap::new();
    for item in batch {
        if let Queued::Query(prefix, q) = item {
            sessions
                .entry(prefix.as_ptr())
                .or_default()
                .push(q.as_str());
        }
    }
    body.push(b'[');
    let mut first_event = true;
    for item in batch {
        match item {
            Queued::Event(e) => {
                if !first_event {
                    body.push(b',');
                }
                first_event = false;
                body.extend_from_slice(e.as_bytes());
            }
            Queued::Query(prefix, _) => {
                // Later queries of a session went out with its first.
                let Some(queries) = sessions.remove(&prefix.as_ptr()) else {
                    continue;
                };
                if !first_event {
                    body.push(b',');
                }
                first_event = false;
                body.extend_from_slice(prefix.as_bytes());
                if !prefix.ends_with('{') {
                    body.push(b',');
                }
                body.extend_from_slice(b"\"db_queries\":[");
                for (i, q) in queries.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut body, q);
                }
                body.extend_from_slice(b"]}");
            }
        }
    }
    body.push(b']');
    body
}

impl AuditSink {
    /// Start the sender task, with [`AUDIT_BACKLOG`].
    pub fn start(cluster: Arc<dyn Cluster>) -> AuditSink {
        Self::start_with_backlog(cluster, AUDIT_BACKLOG)
    }

    /// Start the sender task; sessions stop reading commands while `limit`
    /// bytes of events wait.
    pub fn start_with_backlog(cluster: Arc<dyn Cluster>, limit: usize) -> AuditSink {
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
        let backlog = Arc::new(Backlog {
            bytes: AtomicUsize::new(0),
            limit,
            drained: Arc::new(Notify::new()),
        });
        let queue = backlog.clone();
        tokio::spawn(async move {
            let mut batch: Vec<Queued> = Vec::new();
            // The last batch was cut by a limit: more is waiting, send at once.
            let mut behind = false;
            loop {
                if batch.is_empty() {
                    match rx.recv().await {
                        Some(e) => batch.push(e),
                        None => return,
                    }
                    if !behind {
                        tokio::time::sleep(AUDIT_DELAY).await;
                    }
                }
                let mut bytes: usize = batch.iter().map(Queued::size).sum();
                behind = false;
                while !behind {
                    if batch.len() >= AUDIT_BATCH || bytes >= AUDIT_BATCH_BYTES {
                        behind = true;
                        break;
                    }
                    match rx.try_recv() {
                        Ok(e) => {
                            bytes += e.size();
                            batch.push(e);
                        }
                        Err(_) => break,
                    }
                }
                let body = encode_batch(&batch);
                let mut wait = Duration::from_millis(200);
                loop {
                    match cluster.audit_batch(body.clone()).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, events = batch.len(), "sending audit events failed; retrying");
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(10));
                        }
                    }
                }
                queue.bytes.fetch_sub(bytes, Ordering::AcqRel);
                queue.drained.notify_waiters();
                batch.clear();
            }
        });
        AuditSink { tx, backlog }
    }

    fn queue(&self, item: Queued) {
        self.backlog.bytes.fetch_add(item.size(), Ordering::AcqRel);
        if let Err(e) = self.tx.send(item) {
            // The sender task is gone (runtime shutting down).
            self.backlog.bytes.fetch_sub(e.0.size(), Ordering::AcqRel);
        }
    }

    /// Queue one event.
    pub fn emit(&self, event: &AuditEvent) {
        self.queue(Queued::Event(event.to_json()));
    }

    /// Queue one command of a database session whose `db.session.query`
    /// events share `prefix` (its open text, from
    /// [`api::audit::DbSession::query_prefix`], serialized once per session).
    pub fn emit_query(&self, prefix: &Arc<str>, query: String) {
        self.queue(Queued::Query(prefix.clone(), query));
    }

    /// Bytes of events waiting to be taken by the auth service.
    pub fn backlog(&self) -> usize {
        self.backlog.bytes.load(Ordering::Acquire)
    }

    /// `stream`, whose reads wait while the backlog is full: a client
    /// faster than the auth service is slowed down instead of filling the
    /// agent's memory, and no event is dropped. Writes pass through.
    pub fn throttle<S>(&self, stream: S) -> Throttled<S> {
        let throttle = Throttle {
            backlog: self.backlog.clone(),
            wait: None,
        };
        Watched::new(stream, throttle)
    }
}

/// A client stream whose reads follow the audit backlog
/// ([`AuditSink::throttle`]).
pub type Throttled<S> = Watched<S, Throttle>;

/// Holds a stream's reads while the audit backlog is full ([`AuditSink::throttle`]).
pub struct Throttle {
    backlog: Arc<Backlog>,
    wait: Option<Pin<Box<OwnedNotified>>>,
}

impl ReadWatch for Throttle {
    fn poll_before(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.backlog.full() {
            let backlog = &self.backlog;
            let wait = self
                .wait
                .get_or_insert_with(|| Box::pin(backlog.drained.clone().notified_owned()));
            // Registered before the second look, so a drain in between is
            // not missed.
            wait.as_mut().enable();
            if !self.backlog.full() {
                break;
            }
            match wait.as_mut().poll(cx) {
                Poll::Ready(()) => self.wait = None,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.wait = None;
        Poll::Ready(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use api::audit::{AppSession, AppSessionEnd, AppSessionRequest};
    use tokio::io::AsyncWriteExt as _;

    /// The text of a JSON object without its closing brace.
    fn open_object(v: &serde_json::Value) -> String {
        let mut text = v.to_string();
        text.pop();
        text
    }

    fn app_end(user: &str) -> AuditEvent {
        AuditEvent::AppSessionEnd(AppSessionEnd {
            session: AppSession {
                user: user.into(),
                sid: "s".into(),
                app_name: "a".into(),
                azure_identity: String::new(),
                server_id: String::new(),
            },
        })
    }

    #[test]
    fn batches_group_a_sessions_commands() {
        let a: Arc<str> =
            open_object(&serde_json::json!({"user": "alice", "event": "db.session.query"})).into();
        let b: Arc<str> = open_object(&serde_json::json!({"user": "bob"})).into();
        let empty: Arc<str> = open_object(&serde_json::json!({})).into();
        let batch = vec![
            Queued::Event(r#"{"event":"db.session.start"}"#.into()),
            Queued::Query(a.clone(), "SET \"k\" \u{1}\n".into()),
            Queued::Query(a.clone(), "GET k".into()),
            Queued::Query(b.clone(), "PING".into()),
            Queued::Query(a.clone(), "DEL k".into()),
            Queued::Query(empty, "ECHO".into()),
            Queued::Event(r#"{"event":"db.session.end"}"#.into()),
        ];
        let v: serde_json::Value = serde_json::from_slice(&encode_batch(&batch)).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"event": "db.session.start"},
                {"user": "alice", "event": "db.session.query", "db_queries": ["SET \"k\" \u{1}\n", "GET k", "DEL k"]},
                {"user": "bob", "db_queries": ["PING"]},
                {"db_queries": ["ECHO"]},
                {"event": "db.session.end"},
            ])
        );
        assert_eq!(encode_batch(&[]), b"[]");
    }

    /// An auth service that takes a batch only when the test lets it.
    struct Gate {
        permits: tokio::sync::Semaphore,
        batches: std::sync::Mutex<Vec<serde_json::Value>>,
    }

    #[async_trait::async_trait]
    impl Cluster for Gate {
        async fn roles(&self, _names: &[String]) -> Result<Vec<resources::Role>, ClusterError> {
            Ok(Vec::new())
        }
        async fn audit_batch(&self, body: Vec<u8>) -> Result<(), ClusterError> {
            self.permits
                .acquire()
                .await
                .map_err(|e| ClusterError::Local(e.to_string()))?
                .forget();
            let v =
                serde_json::from_slice(&body).map_err(|e| ClusterError::Local(e.to_string()))?;
            self.batches.lock().unwrap().push(v);
            Ok(())
        }
    }

    fn gate(permits: usize) -> Arc<Gate> {
        Arc::new(Gate {
            permits: tokio::sync::Semaphore::new(permits),
            batches: std::sync::Mutex::new(Vec::new()),
        })
    }

    async fn wait_batches(g: &Gate, n: usize) -> Vec<serde_json::Value> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if g.batches.lock().unwrap().len() >= n {
                    return g.batches.lock().unwrap().clone();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("batches arrive")
    }

    #[tokio::test]
    async fn events_arriving_while_a_batch_waits_go_with_it() {
        let g = gate(100);
        let sink = AuditSink::start(g.clone());
        sink.emit(&app_end("bob"));
        // The sender takes the first event and waits AUDIT_DELAY for more
        // (on this single-threaded runtime it runs only when the test yields).
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let prefix: Arc<str> = open_object(&serde_json::json!({"user": "alice"})).into();
        for i in 1..100 {
            sink.emit_query(&prefix, format!("GET k{i}"));
        }
        let batches = wait_batches(&g, 1).await;
        assert_eq!(
            batches[0],
            serde_json::json!([app_end("bob").to_value(), {"user": "alice", "db_queries": (1..100).map(|i| format!("GET k{i}")).collect::<Vec<_>>()}])
        );
        assert_eq!(sink.backlog(), 0);
    }

    #[tokio::test]
    async fn a_full_backlog_stops_client_reads_until_the_auth_service_takes_events() {
        use tokio::io::AsyncReadExt;
        let g = gate(0);
        let sink = AuditSink::start_with_backlog(g.clone(), 100);
        let (a, mut b) = tokio::io::duplex(1024);
        b.write_all(b"PING\r\n").await.unwrap();
        let mut client = sink.throttle(a);
        // Below the limit: reads go through.
        let mut buf = [0u8; 64];
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"PING\r\n");
        sink.emit(&AuditEvent::AppSessionRequest(AppSessionRequest {
            session: AppSession {
                user: "alice".into(),
                sid: "s".into(),
                app_name: "a".into(),
                azure_identity: String::new(),
                server_id: String::new(),
            },
            method: "GET".into(),
            host: "h".into(),
            path: "x".repeat(200),
            status_code: 200,
        }));
        assert!(sink.backlog() >= 100);
        b.write_all(b"GET k\r\n").await.unwrap();
        // Data is waiting, but the backlog is full: the read waits.
        let mut read = Box::pin(async {
            let n = client.read(&mut buf).await.unwrap();
            buf[..n].to_vec()
        });
        for _ in 0..20 {
            let pending =
                std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx).is_pending())).await;
            assert!(pending, "a read went through a full backlog");
            tokio::task::yield_now().await;
        }
        // The auth service takes the batch: the read goes on.
        g.permits.add_permits(1);
        let got = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("read resumes once the backlog drains");
        assert_eq!(got, b"GET k\r\n");
        assert_eq!(sink.backlog(), 0);
        assert_eq!(wait_batches(&g, 1).await.len(), 1);
    }
}
