//! One backend connection shared by the sessions of a database, for plain
//! key commands.
//!
//! A session starts on the database's shared connection: its commands go
//! there in whole-command batches, each session's replies come back to it
//! in order, and Redis sees one connection reading and writing in batches
//! instead of one connection per session with a read and a write per
//! command (the cost that dominates a proxied `-P 1` workload). Sharing
//! holds only while a session's state could not tell the difference:
//!
//! * only the commands of [`shareable`] go there (reads and writes of keys
//!   that neither block nor depend on per-connection state); `AUTH` is
//!   answered locally, in its place in the reply order, as on a connection
//!   of the session's own;
//! * the first other command (`SELECT`, `HELLO`, `MULTI`, `SUBSCRIBE`,
//!   `CLIENT ...`, blocking pops, anything unknown, or bytes that do not
//!   parse) moves the session to a connection of its own for the rest of
//!   its life: once every reply from the shared connection has been
//!   delivered, that command and everything after it go through the
//!   per-session engine ([`crate::run`]).
//!
//! Credentials that expire (Microsoft Entra tokens) are not shared: their
//! sessions use connections of their own from the start, renewed in place.
//! When the shared connection fails, sessions waiting on it get
//! `-ERR Teleport: database connection error ...` and end, as they would
//! on a connection of their own; sessions with nothing outstanding go on
//! on a new one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use crate::backend::{Backend, BackendStream, Connected};
use crate::resp::{self, Limits};
use crate::{audit_event, local_auth, refusal, CommandEvent, EngineError, Progress};

/// Whether a session on the shared connection may send `name` there:
/// key reads and writes that never block and whose result depends only on
/// their arguments and the data (database 0, RESP2), and `PING`/`ECHO`.
pub fn shareable(name: &str) -> bool {
    matches!(
        name,
        "GET"
            | "SET"
            | "SETNX"
            | "SETEX"
            | "PSETEX"
            | "GETSET"
            | "GETDEL"
            | "GETEX"
            | "MGET"
            | "MSET"
            | "MSETNX"
            | "INCR"
            | "INCRBY"
            | "INCRBYFLOAT"
            | "DECR"
            | "DECRBY"
            | "APPEND"
            | "STRLEN"
            | "GETRANGE"
            | "SETRANGE"
            | "EXISTS"
            | "DEL"
            | "UNLINK"
            | "TOUCH"
            | "TYPE"
            | "EXPIRE"
            | "PEXPIRE"
            | "EXPIREAT"
            | "PEXPIREAT"
            | "EXPIRETIME"
            | "PEXPIRETIME"
            | "TTL"
            | "PTTL"
            | "PERSIST"
            | "HGET"
            | "HSET"
            | "HSETNX"
            | "HMGET"
            | "HMSET"
            | "HDEL"
            | "HEXISTS"
            | "HINCRBY"
            | "HINCRBYFLOAT"
            | "HLEN"
            | "HSTRLEN"
            | "LPUSH"
            | "RPUSH"
            | "LPUSHX"
            | "RPUSHX"
            | "LPOP"
            | "RPOP"
            | "LLEN"
            | "LINDEX"
            | "LSET"
            | "SADD"
            | "SREM"
            | "SCARD"
            | "SISMEMBER"
            | "SMISMEMBER"
            | "ZADD"
            | "ZREM"
            | "ZCARD"
            | "ZSCORE"
            | "ZMSCORE"
            | "ZINCRBY"
            | "ZRANK"
            | "ZREVRANK"
            | "PFADD"
            | "PING"
            | "ECHO"
    )
}

/// Replies a session may have outstanding on the shared connection; it
/// reads no more commands until fewer are.
const MAX_OUTSTANDING: u64 = 4096;

/// A shared connection with no command for this long is closed (the next
/// session opens another).
const IDLE_CLOSE: Duration = Duration::from_secs(300);

/// Commands from one session, whole, and where their replies go.
struct Submission {
    bytes: Vec<u8>,
    replies: u64,
    to: mpsc::UnboundedSender<Delivery>,
}

/// What the shared connection hands a session.
enum Delivery {
    /// Reply bytes (may end inside a reply) completing `replies` replies.
    Bytes(Bytes, u64),
    /// The connection failed with replies outstanding.
    Failed(String),
}

/// A handle on a running shared connection.
#[derive(Clone)]
pub(crate) struct SharedConn {
    tx: mpsc::UnboundedSender<Submission>,
}

/// The shared connection of one [`Backend`] (shared by its clones).
#[derive(Default)]
pub(crate) struct SharedSlot {
    state: tokio::sync::Mutex<SlotState>,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Closed,
    Open(SharedConn),
    /// The credentials expire: sessions use connections of their own.
    Unshared,
}

/// Where a new session's commands go.
pub(crate) enum Start {
    /// To the shared connection ([`serve`]).
    Shared(SharedConn),
    /// To this connection, of the session's own.
    Own(Connected),
    /// To a connection of the session's own, still to be opened.
    Unshared,
}

impl SharedSlot {
    /// The open shared connection, else a new one (or, when the database's
    /// credentials expire, that connection for the session alone).
    pub(crate) async fn start(&self, backend: &Backend) -> Result<Start, EngineError> {
        let mut state = self.state.lock().await;
        match &*state {
            SlotState::Open(c) if !c.tx.is_closed() => return Ok(Start::Shared(c.clone())),
            SlotState::Unshared => return Ok(Start::Unshared),
            _ => {}
        }
        let connected = backend.connect_authenticated().await?;
        if connected.reauth_at.is_some() {
            *state = SlotState::Unshared;
            return Ok(Start::Own(connected));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let limits = Limits::default();
        let host = backend.host().to_string();
        tokio::spawn(async move {
            if let Err(e) = run_conn(connected.stream, rx, limits).await {
                tracing::debug!(%host, error = %e, "shared database connection ended");
            }
        });
        let conn = SharedConn { tx };
        *state = SlotState::Open(conn.clone());
        Ok(Start::Shared(conn))
    }
}

/// Drives one shared connection: writes the sessions' batches in the order
/// they came, hands each session its replies. Ends when the connection
/// fails (every session with replies outstanding is told) or has been idle
/// for [`IDLE_CLOSE`].
async fn run_conn(
    stream: BackendStream,
    mut rx: mpsc::UnboundedReceiver<Submission>,
    limits: Limits,
) -> Result<(), EngineError> {
    let (mut r, mut w) = tokio::io::split(stream);
    // Sessions in the order their commands were written, with the replies
    // each still expects.
    let pending: Mutex<VecDeque<(u64, mpsc::UnboundedSender<Delivery>)>> = Mutex::default();
    let pending = &pending;
    let writer = async {
        let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
        loop {
            let idle = pending.lock().map(|q| q.is_empty()).unwrap_or(false);
            let first = if idle {
                match tokio::time::timeout(IDLE_CLOSE, rx.recv()).await {
                    Ok(s) => s,
                    Err(_) => return Ok(()),
                }
            } else {
                rx.recv().await
            };
            let Some(first) = first else { return Ok(()) };
            let mut next = Some(first);
            while let Some(s) = next {
                if let Ok(mut q) = pending.lock() {
                    q.push_back((s.replies, s.to));
                }
                out.extend_from_slice(&s.bytes);
                next = rx.try_recv().ok();
            }
            w.write_all(&out).await.map_err(EngineError::Backend)?;
            w.flush().await.map_err(EngineError::Backend)?;
            out.clear();
        }
    };
    let reader = async {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut scanner = resp::Scanner::default();
        loop {
            buf.reserve(16 * 1024);
            if r.read_buf(&mut buf).await.map_err(EngineError::Backend)? == 0 {
                return Err(EngineError::Backend(std::io::Error::other(
                    "the database closed the connection",
                )));
            }
            while !buf.is_empty() {
                let Ok(mut q) = pending.lock() else {
                    return Err(EngineError::Backend(std::io::Error::other("poisoned")));
                };
                let Some((left, to)) = q.front_mut() else {
                    return Err(EngineError::BackendProtocol("a reply to no command".into()));
                };
                let scanned = scanner
                    .scan_upto(&buf, &limits, *left)
                    .map_err(|e| EngineError::BackendProtocol(e.to_string()))?;
                if scanned.consumed == 0 {
                    break;
                }
                if scanned.frames != scanned.replies {
                    return Err(EngineError::BackendProtocol(
                        "a push frame on a shared RESP2 connection".into(),
                    ));
                }
                let chunk = buf.split_to(scanned.consumed).freeze();
                // A session that ended still has its replies read.
                let _ = to.send(Delivery::Bytes(chunk, scanned.replies));
                *left -= scanned.replies;
                if *left == 0 {
                    q.pop_front();
                }
            }
        }
    };
    let result = tokio::select! {
        r = writer => r,
        r = reader => r,
    };
    rx.close();
    let why = match &result {
        Ok(()) => "the shared database connection closed".to_string(),
        Err(e) => e.to_string(),
    };
    if let Ok(mut q) = pending.lock() {
        for (_, to) in q.drain(..) {
            let _ = to.send(Delivery::Failed(why.clone()));
        }
    }
    // Submissions not yet written.
    while let Ok(s) = rx.try_recv() {
        let _ = s.to.send(Delivery::Failed(why.clone()));
    }
    result
}

/// How a session's time on the shared connection ended.
pub(crate) enum Outcome {
    /// The session is over.
    Done(Result<(), EngineError>),
    /// The session goes on on a connection of its own, starting with these
    /// unprocessed client bytes.
    Own(BytesMut),
}

/// Serves a session on the shared connection until it ends or needs a
/// connection of its own.
pub(crate) async fn serve<CR, CW, A>(
    client_r: &mut CR,
    client_w: &mut CW,
    mut conn: SharedConn,
    backend: &Backend,
    opts: &crate::SessionOptions,
    audit: &mut A,
) -> Outcome
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    A: FnMut(CommandEvent),
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
    let progress = Progress {
        replies: AtomicU64::new(0),
        changed: Notify::new(),
    };
    let progress = &progress;
    let limits = opts.limits;
    let db_user = opts.db_user.as_deref();

    enum ReadEnd {
        Eof,
        Own,
        Failed(EngineError),
    }

    let reader = async {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut parser = resp::CommandParser::default();
        // Replies the client is owed (from the connection, and local ones).
        let mut sent: u64 = 0;
        loop {
            // Back-pressure: a client that does not read its replies.
            if sent.saturating_sub(progress.replies.load(Ordering::Acquire)) >= MAX_OUTSTANDING {
                progress.wait_for(sent - MAX_OUTSTANDING + 1).await;
            }
            buf.reserve(16 * 1024);
            let n = match client_r.read_buf(&mut buf).await {
                Ok(n) => n,
                Err(e) => return (ReadEnd::Failed(EngineError::Client(e)), buf, sent),
            };
            if n == 0 {
                return (ReadEnd::Eof, buf, sent);
            }
            let mut batch: u64 = 0;
            let mut end = None;
            loop {
                if !parser.in_progress() {
                    buf.advance(resp::blank_prefix(&buf));
                }
                // Bytes that do not parse are the per-session engine's to
                // refuse.
                let Ok(parsed) = parser.parse(&buf, &limits) else {
                    end = Some(ReadEnd::Own);
                    break;
                };
                let Some((ranges, len)) = parsed else { break };
                let args: Vec<&[u8]> = ranges.iter().map(|r| &buf[r.clone()]).collect();
                let Some((first, rest)) = args.split_first() else {
                    end = Some(ReadEnd::Own);
                    break;
                };
                let name = String::from_utf8_lossy(first).to_ascii_uppercase();
                if name == "AUTH" {
                    // Answered here, after the replies before it.
                    let reply = local_auth(rest, db_user);
                    let mut event = audit_event(&name, rest);
                    event.refused = refusal(&reply);
                    audit(event);
                    buf.advance(len);
                    let submitted = submit(
                        &mut conn, backend, &mut out, &mut batch, &mut sent, &tx, progress,
                    );
                    if let Err(e) = submitted.await {
                        return (ReadEnd::Failed(e), buf, sent);
                    }
                    progress.wait_for(sent).await;
                    // Counted like a reply from the connection, so that the
                    // session moves or ends only once it is written.
                    sent += 1;
                    let _ = tx.send(Delivery::Bytes(Bytes::from(reply), 1));
                    continue;
                }
                if !shareable(&name) {
                    end = Some(ReadEnd::Own);
                    break;
                }
                audit(audit_event(&name, rest));
                out.extend_from_slice(&buf[..len]);
                buf.advance(len);
                batch += 1;
            }
            let submitted = submit(
                &mut conn, backend, &mut out, &mut batch, &mut sent, &tx, progress,
            );
            if let Err(e) = submitted.await {
                return (ReadEnd::Failed(e), buf, sent);
            }
            if let Some(end) = end {
                return (end, buf, sent);
            }
        }
    };

    let writer = async {
        loop {
            let Some(d) = rx.recv().await else {
                return Ok(());
            };
            match d {
                Delivery::Bytes(b, n) => {
                    client_w.write_all(&b).await.map_err(EngineError::Client)?;
                    if rx.is_empty() {
                        client_w.flush().await.map_err(EngineError::Client)?;
                    }
                    progress.add(n);
                }
                Delivery::Failed(why) => {
                    let _ = client_w
                        .write_all(&crate::teleport_error(&format!(
                            "database connection error: {why}"
                        )))
                        .await;
                    let _ = client_w.flush().await;
                    return Err(EngineError::Backend(std::io::Error::other(why)));
                }
            }
        }
    };

    tokio::pin!(reader);
    tokio::pin!(writer);
    let (end, buf, all) = tokio::select! {
        r = &mut reader => r,
        r = &mut writer => return Outcome::Done(r),
    };
    // Every reply from the shared connection reaches the client before the
    // session ends or moves.
    let delivered = async {
        tokio::select! {
            () = progress.wait_for(all) => Ok(()),
            r = &mut writer => r,
        }
    };
    let drained = match &end {
        ReadEnd::Own => delivered.await.map(|()| true),
        _ => match tokio::time::timeout(opts.drain_timeout, delivered).await {
            Ok(r) => r.map(|()| true),
            Err(_) => Ok(false),
        },
    };
    match (end, drained) {
        (_, Err(e)) => Outcome::Done(Err(e)),
        (ReadEnd::Failed(e), _) => Outcome::Done(Err(e)),
        (ReadEnd::Eof, _) => Outcome::Done(Ok(())),
        (ReadEnd::Own, _) => Outcome::Own(buf),
    }
}

/// Sends `out` (`batch` whole commands) to the shared connection and adds
/// them to the `sent` replies. A connection that has closed is replaced when
/// every reply sent before has been delivered (else its failure is on its
/// way to the session).
async fn submit(
    conn: &mut SharedConn,
    backend: &Backend,
    out: &mut Vec<u8>,
    batch: &mut u64,
    sent: &mut u64,
    to: &mpsc::UnboundedSender<Delivery>,
    progress: &Progress,
) -> Result<(), EngineError> {
    if *batch == 0 {
        return Ok(());
    }
    let closed = || {
        EngineError::Backend(std::io::Error::other(
            "the shared database connection closed",
        ))
    };
    let sub = Submission {
        bytes: std::mem::take(out),
        replies: *batch,
        to: to.clone(),
    };
    if let Err(mpsc::error::SendError(sub)) = conn.tx.send(sub) {
        if progress.replies.load(Ordering::Acquire) < *sent {
            return Err(closed());
        }
        let Start::Shared(new) = backend.shared.start(backend).await? else {
            return Err(closed());
        };
        *conn = new;
        conn.tx.send(sub).map_err(|_| closed())?;
    }
    *sent += std::mem::take(batch);
    Ok(())
}
