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
//! * what client libraries send when they connect is answered here too:
//!   `CLIENT SETNAME` and `CLIENT GETNAME`; `CLIENT SETINFO` and `CLIENT
//!   MAINT_NOTIFICATIONS` as the server would answer them (probed once per
//!   shared connection: `SETINFO` is `+OK` from Redis 7.2, and where the
//!   server does not know a subcommand its own unknown-subcommand error is
//!   returned; maintenance notifications where they exist need a
//!   connection of the session's own); `HELLO 3` moves the session to the
//!   database's RESP3 shared connection (one per protocol) and gets that
//!   connection's `HELLO` reply; the session's protocol and settings are
//!   replayed on its own connection if it moves;
//! * the first other command (`SELECT`, `HELLO`, `MULTI`, `SUBSCRIBE`,
//!   other `CLIENT ...` calls, blocking pops, anything unknown, or bytes
//!   that do not parse, and the calls above when they are not well formed)
//!   moves the session to a connection of its own for the rest of its
//!   life: once every reply from the shared connection has been delivered,
//!   that command and everything after it go through the per-session
//!   engine ([`crate::run`]).
//!
//! Credentials that expire (Microsoft Entra tokens) are renewed on the
//! shared connection as on a session's own: `AUTH` with a fresh token goes
//! out between batches before the old one runs out, and its reply is the
//! engine's. When the shared connection fails (or a renewal is refused),
//! sessions waiting on it get `-ERR Teleport: database connection error
//! ...` and end, as they would on a connection of their own; sessions with
//! nothing outstanding go on on a new one, or hear why none can be had.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use crate::backend::{exchange, Backend, BackendStream};
use crate::resp::{self, Limits};
use crate::session::{Action, Cmd, SessionState};
use crate::Frame;
use crate::{AuthError, CommandEvent, EngineError, Progress, ReplyError};

/// Whether a session on the shared connection may send `name` there:
/// key reads and writes that never block and whose result depends only on
/// their arguments and the data (database 0, and the protocol, which is the
/// shared connection's own), and `PING`/`ECHO`.
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
    known: Known,
    /// On a RESP3 connection, the server's reply to its `HELLO 3`: the
    /// sessions' `HELLO 3` gets it.
    hello: Option<Bytes>,
}

/// Switches a new connection to RESP3; the server's reply, or `None` when
/// it refuses (a server before Redis 6).
async fn hello3(stream: &mut BackendStream) -> Result<Option<Bytes>, EngineError> {
    Ok(match exchange(stream, crate::HELLO_3, 1).await?.pop() {
        Some((Frame::Error(_) | Frame::BlobError(_), _)) | None => None,
        Some((_, raw)) => Some(raw),
    })
}

/// What the server says to a `CLIENT` subcommand that not every server
/// knows, as probed when the shared connection was opened.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Probe {
    Supported,
    /// The server's unknown-subcommand error (without `-` and CRLF),
    /// naming the subcommand as the probe spelled it (upper case).
    Unsupported(Bytes),
    /// Neither (an ACL without `CLIENT`, say): sessions that send it move
    /// to connections of their own, where the server answers.
    Unknown,
}

impl Probe {
    /// The server's error for subcommand `sub`, as a client spelled it:
    /// the server names the subcommand as it was sent.
    fn error_for(err: &[u8], sub: &[u8]) -> Vec<u8> {
        let mut text = err.to_vec();
        let upper = sub.to_ascii_uppercase();
        if let Some(at) = find_ignore_case(&text, &upper) {
            if text[at..at + upper.len()] == upper[..] {
                text[at..at + upper.len()].copy_from_slice(sub);
            }
        }
        Frame::Error(text.into()).to_bytes()
    }
}

/// What a shared connection's server knows of the `CLIENT` subcommands
/// libraries send on connecting.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    /// `CLIENT SETINFO` (Redis 7.2 and later): answered here when known.
    pub(crate) setinfo: Probe,
    /// `CLIENT MAINT_NOTIFICATIONS` (Redis Enterprise, Azure Managed
    /// Redis; redis-py 8 asks for it on RESP3 connections): its
    /// notifications are per connection, so sessions that turn it on where
    /// it exists move to connections of their own.
    pub(crate) maint: Probe,
}

/// The probes: `SETINFO` also names the shared connection in `CLIENT LIST`
/// (`lib-name=teleport`) on servers that know it; `MAINT_NOTIFICATIONS
/// OFF` is what a connection has anyway.
const PROBES: [(&[u8], &[u8]); 2] = [
    (
        b"SETINFO",
        b"*4\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$8\r\nLIB-NAME\r\n$8\r\nteleport\r\n",
    ),
    (
        b"MAINT_NOTIFICATIONS",
        b"*3\r\n$6\r\nCLIENT\r\n$19\r\nMAINT_NOTIFICATIONS\r\n$3\r\nOFF\r\n",
    ),
];

/// Sends [`PROBES`] on a new connection and reads their answers.
async fn probe(stream: &mut BackendStream) -> Result<Known, EngineError> {
    let all: Vec<u8> = PROBES.iter().flat_map(|(_, cmd)| cmd.to_vec()).collect();
    let replies = exchange(stream, &all, PROBES.len()).await?;
    let mut found = PROBES
        .iter()
        .zip(replies)
        .map(|((sub, _), (reply, _))| match reply {
            Frame::Simple(_) => Probe::Supported,
            Frame::Error(e) if find_ignore_case(&e, sub).is_some() => Probe::Unsupported(e),
            _ => Probe::Unknown,
        });
    Ok(Known {
        setinfo: found.next().unwrap_or(Probe::Unknown),
        maint: found.next().unwrap_or(Probe::Unknown),
    })
}

/// The arguments of `HELLO 3 [AUTH user password] [SETNAME name]` that the
/// shared connection can honour: the name to set, if any (`AUTH` is the
/// engine's, dropped as on a connection of the session's own); `None` for
/// anything else (`HELLO 2`, other options), which the server must answer.
pub(crate) fn hello3_options<'a>(args: &[&'a [u8]]) -> Option<Option<&'a [u8]>> {
    let (version, opts) = args.split_first()?;
    if *version != b"3" {
        return None;
    }
    let mut name = None;
    let mut i = 0;
    while i < opts.len() {
        if opts[i].eq_ignore_ascii_case(b"AUTH") && opts.len() >= i + 3 {
            i += 3;
        } else if opts[i].eq_ignore_ascii_case(b"SETNAME")
            && opts.len() >= i + 2
            && printable(opts[i + 1])
        {
            name = Some(opts[i + 1]);
            i += 2;
        } else {
            return None;
        }
    }
    Some(name)
}

/// Where `needle` first occurs in `hay`, ignoring ASCII case.
fn find_ignore_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether a client name or library attribute is one Redis accepts: no
/// spaces, newlines or other bytes outside `!`..`~`.
fn printable(v: &[u8]) -> bool {
    v.iter().all(|b| (b'!'..=b'~').contains(b))
}

/// The connection settings a session made while on the shared connection:
/// answered here, and replayed on a connection of its own if it moves.
#[derive(Default, Debug)]
pub(crate) struct Setup {
    /// The session switched to RESP3 (`HELLO 3`).
    pub(crate) resp3: bool,
    name: Option<Vec<u8>>,
    lib_name: Option<Vec<u8>>,
    lib_ver: Option<Vec<u8>>,
}

impl Setup {
    /// The reply to `CLIENT <args>` when it can be given here, `None` when
    /// only a connection of the session's own can answer (other
    /// subcommands, wrong arguments, values the server would refuse: its
    /// own error text then reaches the client).
    pub(crate) fn answer(&mut self, args: &[&[u8]], known: &Known) -> Option<Vec<u8>> {
        let sub = *args.first()?;
        if sub.eq_ignore_ascii_case(b"GETNAME") && args.len() == 1 {
            let name = match &self.name {
                Some(n) => Frame::Bulk(Bytes::copy_from_slice(n)),
                None if self.resp3 => Frame::Null,
                None => Frame::NullBulk,
            };
            return Some(name.to_bytes());
        }
        if sub.eq_ignore_ascii_case(b"SETNAME") && args.len() == 2 {
            let name = args[1];
            if !printable(name) {
                return None;
            }
            self.set_name(name);
            return Some(b"+OK\r\n".to_vec());
        }
        if sub.eq_ignore_ascii_case(b"SETINFO") && args.len() == 3 {
            let (attr, value) = (args[1], args[2]);
            if value.is_empty() || !printable(value) {
                return None;
            }
            let slot = if attr.eq_ignore_ascii_case(b"LIB-NAME") {
                &mut self.lib_name
            } else if attr.eq_ignore_ascii_case(b"LIB-VER") {
                &mut self.lib_ver
            } else {
                return None;
            };
            return match &known.setinfo {
                Probe::Supported => {
                    *slot = Some(value.to_vec());
                    Some(b"+OK\r\n".to_vec())
                }
                Probe::Unsupported(err) => Some(Probe::error_for(err, sub)),
                Probe::Unknown => None,
            };
        }
        if sub.eq_ignore_ascii_case(b"MAINT_NOTIFICATIONS") {
            return match &known.maint {
                Probe::Unsupported(err) => Some(Probe::error_for(err, sub)),
                _ => None,
            };
        }
        None
    }

    /// Sets the client name (an empty one clears it).
    pub(crate) fn set_name(&mut self, name: &[u8]) {
        self.name = (!name.is_empty()).then(|| name.to_vec());
    }

    /// The commands that give a new connection these settings, and how
    /// many there are.
    pub(crate) fn replay(&self) -> (Vec<u8>, usize) {
        let mut cmds: Vec<Vec<&[u8]>> = Vec::new();
        if self.resp3 {
            cmds.push(vec![&b"HELLO"[..], b"3"]);
        }
        if let Some(name) = &self.name {
            cmds.push(vec![&b"CLIENT"[..], b"SETNAME", name]);
        }
        if let Some(v) = &self.lib_name {
            cmds.push(vec![&b"CLIENT"[..], b"SETINFO", b"LIB-NAME", v]);
        }
        if let Some(v) = &self.lib_ver {
            cmds.push(vec![&b"CLIENT"[..], b"SETINFO", b"LIB-VER", v]);
        }
        let n = cmds.len();
        let out = cmds
            .into_iter()
            .flat_map(|c| Frame::command(c).to_bytes())
            .collect();
        (out, n)
    }
}

/// The shared connections of one [`Backend`] (shared by its clones): one
/// for RESP2 sessions, one for RESP3 sessions.
#[derive(Default)]
pub(crate) struct SharedSlot {
    resp2: tokio::sync::Mutex<SlotState>,
    resp3: tokio::sync::Mutex<SlotState>,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Closed,
    Open(SharedConn),
    /// The server does not speak RESP3: RESP3 sessions use connections of
    /// their own.
    Unshared,
}

/// Where a new session's commands go.
pub(crate) enum Start {
    /// To the shared connection ([`serve`]).
    Shared(SharedConn),
    /// To a connection of the session's own, still to be opened.
    Unshared,
}

impl SharedSlot {
    /// The open shared connection for RESP2 or RESP3 sessions, else a new
    /// one (`Unshared` for RESP3 on a server that does not speak it).
    pub(crate) async fn start(&self, backend: &Backend, resp3: bool) -> Result<Start, EngineError> {
        let slot = if resp3 { &self.resp3 } else { &self.resp2 };
        let mut state = slot.lock().await;
        match &*state {
            SlotState::Open(c) if !c.tx.is_closed() => return Ok(Start::Shared(c.clone())),
            SlotState::Unshared => return Ok(Start::Unshared),
            _ => {}
        }
        let mut connected = backend.connect_authenticated().await?;
        let hello = if resp3 {
            match hello3(&mut connected.stream).await? {
                Some(reply) => Some(reply),
                None => {
                    *state = SlotState::Unshared;
                    return Ok(Start::Unshared);
                }
            }
        } else {
            None
        };
        let known = probe(&mut connected.stream).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let limits = Limits::default();
        let host = backend.host().to_string();
        // Credentials that expire (Entra tokens) are renewed on the shared
        // connection as on a session's own.
        let renew = connected.reauth_at.map(|at| Renew {
            provider: backend.credential_provider(),
            at,
        });
        tokio::spawn(async move {
            if let Err(e) = run_conn(connected.stream, rx, limits, renew).await {
                tracing::debug!(%host, error = %e, "shared database connection ended");
            }
        });
        let conn = SharedConn { tx, known, hello };
        *state = SlotState::Open(conn.clone());
        Ok(Start::Shared(conn))
    }
}

/// Renewal of a shared connection's expiring credentials.
struct Renew {
    provider: std::sync::Arc<dyn crate::CredentialProvider>,
    /// When to send the next `AUTH`.
    at: tokio::time::Instant,
}

/// Where replies on the shared connection go: a session, or (`None`) the
/// engine, for its own `AUTH`.
type ReplyTo = Option<mpsc::UnboundedSender<Delivery>>;

/// Drives one shared connection: writes the sessions' batches in the order
/// they came, hands each session its replies, and sends `AUTH` with fresh
/// credentials before expiring ones run out (between batches, its reply
/// checked here). Ends when the connection fails or renewal is refused
/// (every session with replies outstanding is told), or when it has been
/// idle for [`IDLE_CLOSE`].
async fn run_conn(
    stream: BackendStream,
    mut rx: mpsc::UnboundedReceiver<Submission>,
    limits: Limits,
    mut renew: Option<Renew>,
) -> Result<(), EngineError> {
    let (mut r, mut w) = tokio::io::split(stream);
    // Sessions in the order their commands were written, with the replies
    // each still expects.
    let pending: Mutex<VecDeque<(u64, ReplyTo)>> = Mutex::default();
    let pending = &pending;
    let writer = async {
        let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut last_used = tokio::time::Instant::now();
        loop {
            let idle = pending.lock().map(|q| q.is_empty()).unwrap_or(false);
            let renew_at = renew.as_ref().map(|r| r.at);
            let first = tokio::select! {
                biased;
                () = async {
                    match renew_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some(r) = renew.as_mut() else { continue };
                    let creds = r.provider.credentials().await.map_err(EngineError::Credentials)?;
                    let Some(cmd) = creds.auth_command() else {
                        renew = None;
                        continue;
                    };
                    if let Ok(mut q) = pending.lock() {
                        q.push_back((1, None));
                    }
                    w.write_all(&cmd).await.map_err(EngineError::Backend)?;
                    w.flush().await.map_err(EngineError::Backend)?;
                    match creds.valid_for {
                        Some(v) => r.at = crate::backend::reauth_deadline(v),
                        None => renew = None,
                    }
                    continue;
                }
                // A timer only while idle (none made per batch otherwise).
                () = async {
                    if idle {
                        tokio::time::sleep_until(last_used + IDLE_CLOSE).await
                    } else {
                        std::future::pending().await
                    }
                } => return Ok(()),
                s = rx.recv() => s,
            };
            let Some(first) = first else { return Ok(()) };
            last_used = tokio::time::Instant::now();
            let mut next = Some(first);
            while let Some(s) = next {
                if let Ok(mut q) = pending.lock() {
                    q.push_back((s.replies, Some(s.to)));
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
        // The reply to the engine's AUTH, as it arrives.
        let mut auth_reply: Vec<u8> = Vec::new();
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
                    return Err(ReplyError::Unsolicited.into());
                };
                let scanned = scanner
                    .scan_upto(&buf, &limits, *left)
                    .map_err(ReplyError::Malformed)?;
                if scanned.consumed == 0 {
                    break;
                }
                if scanned.frames != scanned.replies {
                    return Err(ReplyError::PushOnShared.into());
                }
                let chunk = buf.split_to(scanned.consumed).freeze();
                match to {
                    // A session that ended still has its replies read.
                    Some(to) => {
                        let _ = to.send(Delivery::Bytes(chunk, scanned.replies));
                    }
                    None => {
                        auth_reply.extend_from_slice(&chunk);
                        if auth_reply.len() > 64 * 1024 {
                            return Err(ReplyError::OversizedAuthReply.into());
                        }
                        if scanned.replies == 1 {
                            let reply = std::mem::take(&mut auth_reply);
                            if !reply.starts_with(b"+") {
                                let text = String::from_utf8_lossy(&reply);
                                return Err(AuthError::ReauthRefused(
                                    text.trim_start_matches('-').trim_end().to_string(),
                                )
                                .into());
                            }
                            tracing::debug!("re-authenticated the shared database connection");
                        }
                    }
                }
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
        for to in q.drain(..).filter_map(|(_, to)| to) {
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
    /// unprocessed client bytes, once it has the session's settings
    /// ([`SessionState::setup`]).
    Own(BytesMut, Box<SessionState>),
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

    enum ReadEnd {
        Eof,
        Own,
        Failed(EngineError),
    }

    let reader = async {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut parser = resp::CommandParser::default();
        let mut state = SessionState::shared(opts.db_user.clone(), conn.known.clone());
        // The shared connection a local reply moves the session to.
        let mut switch_to: Option<SharedConn> = None;
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
                Err(e) => return (ReadEnd::Failed(EngineError::Client(e)), buf, sent, state),
            };
            if n == 0 {
                return (ReadEnd::Eof, buf, sent, state);
            }
            let mut batch: u64 = 0;
            let mut end = None;
            loop {
                // Bytes that do not parse are the per-session engine's to
                // refuse.
                let Ok(parsed) = parser.next(&mut buf, &limits) else {
                    end = Some(ReadEnd::Own);
                    break;
                };
                let Some(command) = parsed else { break };
                // A command the session's own connection must serve goes
                // back in front of the unread bytes, in its RESP form.
                let own = |buf: &mut BytesMut| {
                    let mut all = BytesMut::with_capacity(command.bytes.len() + buf.len());
                    all.extend_from_slice(&command.bytes);
                    all.extend_from_slice(buf);
                    *buf = all;
                    Some(ReadEnd::Own)
                };
                let Some(cmd) = Cmd::of(&command) else {
                    end = own(&mut buf);
                    break;
                };
                let reply = match state.step(&cmd) {
                    Action::Forward { .. } => {
                        audit(cmd.event(None));
                        out.extend_from_slice(&command.bytes);
                        batch += 1;
                        continue;
                    }
                    Action::Answer(reply) => reply,
                    // RESP3: the session goes on on the RESP3 shared
                    // connection, and gets that connection's HELLO reply.
                    Action::SharedResp3 { name } => {
                        let next = match &conn.hello {
                            Some(_) => Some(conn.clone()),
                            None => match backend.shared.start(backend, true).await {
                                Ok(Start::Shared(c)) => Some(c),
                                _ => None,
                            },
                        };
                        let Some(c) = next else {
                            end = own(&mut buf);
                            break;
                        };
                        state.shared_resp3(name.as_deref(), c.known.clone());
                        let reply = c.hello.clone().unwrap_or_default();
                        switch_to = Some(c);
                        reply
                    }
                    _ => {
                        end = own(&mut buf);
                        break;
                    }
                };
                // Answered here, after the replies before it.
                audit(cmd.event(Some(&reply)));
                let submitted = submit(
                    &mut conn, &mut state, backend, &mut out, &mut batch, &mut sent, &tx, progress,
                );
                if let Err(e) = submitted.await {
                    return (ReadEnd::Failed(e), buf, sent, state);
                }
                progress.wait_for(sent).await;
                // Nothing is outstanding on the old connection.
                if let Some(c) = switch_to.take() {
                    conn = c;
                }
                // Counted like a reply from the connection, so that the
                // session moves or ends only once it is written.
                sent += 1;
                let _ = tx.send(Delivery::Bytes(reply, 1));
            }
            let submitted = submit(
                &mut conn, &mut state, backend, &mut out, &mut batch, &mut sent, &tx, progress,
            );
            if let Err(e) = submitted.await {
                return (ReadEnd::Failed(e), buf, sent, state);
            }
            if let Some(end) = end {
                return (end, buf, sent, state);
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
    let (end, buf, all, state) = tokio::select! {
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
        (ReadEnd::Own, _) => Outcome::Own(buf, Box::new(state)),
    }
}

/// Sends `out` (`batch` whole commands) to the shared connection and adds
/// them to the `sent` replies. A connection that has closed is replaced when
/// every reply sent before has been delivered (else its failure is on its
/// way to the session).
#[allow(clippy::too_many_arguments)]
async fn submit(
    conn: &mut SharedConn,
    state: &mut SessionState,
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
        let resp3 = conn.hello.is_some();
        let new = match backend.shared.start(backend, resp3).await {
            Ok(Start::Shared(new)) => Ok(new),
            Ok(_) => Err(closed()),
            Err(e) => Err(e),
        };
        let sent_to = new.and_then(|new| {
            *conn = new;
            state.shared_reconnected(conn.known.clone());
            conn.tx.send(sub).map_err(|_| closed())
        });
        if let Err(e) = sent_to {
            // Nothing is outstanding: the failure is the client's next
            // reply, counted so that the session ends once it is written.
            let _ = to.send(Delivery::Failed(e.to_string()));
            *sent += 1;
            return Err(e);
        }
    }
    *sent += std::mem::take(batch);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn known(setinfo: Probe) -> Known {
        Known {
            setinfo,
            maint: Probe::Unknown,
        }
    }

    fn answer(setup: &mut Setup, args: &[&str], known: &Known) -> Option<String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        setup
            .answer(&args, known)
            .map(|r| String::from_utf8(r).unwrap())
    }

    /// Sends each command in turn: each is answered locally with its reply.
    fn assert_answers(setup: &mut Setup, known: &Known, exchanges: &[(&[&str], &str)]) {
        for (args, reply) in exchanges {
            assert_eq!(
                answer(setup, args, known).as_deref(),
                Some(*reply),
                "{args:?}"
            );
        }
    }

    #[test]
    fn setup_commands_are_answered_as_the_server_would() {
        let mut s = Setup::default();
        let on = known(Probe::Supported);
        assert_answers(
            &mut s,
            &on,
            &[
                (&["GETNAME"], "$-1\r\n"),
                (&["setname", "a"], "+OK\r\n"),
                (&["GetName"], "$1\r\na\r\n"),
                (&["SETINFO", "lib-name", "x"], "+OK\r\n"),
                (&["SETINFO", "LIB-VER", "1.2"], "+OK\r\n"),
            ],
        );
        // Whatever the server would refuse or only it knows goes to it.
        for args in [
            &["SETNAME", "a b"][..],
            &["SETNAME", "a\nb"],
            &["SETNAME"],
            &["SETNAME", "a", "b"],
            &["GETNAME", "x"],
            &["SETINFO", "lib-name", "a b"],
            &["SETINFO", "lib-name", ""],
            &["SETINFO", "other", "x"],
            &["SETINFO", "lib-name"],
            &["ID"],
            &["LIST"],
            &[],
        ] {
            assert_eq!(answer(&mut s, args, &on), None, "{args:?}");
        }
        assert_eq!(
            answer(&mut s, &["SETINFO", "lib-ver", "2"], &known(Probe::Unknown)),
            None
        );
        let (cmds, n) = s.replay();
        assert_eq!(n, 3);
        assert_eq!(
            String::from_utf8(cmds).unwrap(),
            "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$1\r\na\r\n\
             *4\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$8\r\nLIB-NAME\r\n$1\r\nx\r\n\
             *4\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$7\r\nLIB-VER\r\n$3\r\n1.2\r\n"
        );
        // An empty name clears it: nothing to replay.
        assert_answers(
            &mut s,
            &on,
            &[(&["SETNAME", ""], "+OK\r\n"), (&["GETNAME"], "$-1\r\n")],
        );
        assert_eq!(s.replay().1, 2);
    }

    #[test]
    fn a_resp3_session_gets_resp3_nulls_and_replays_hello_first() {
        let mut s = Setup {
            resp3: true,
            ..Setup::default()
        };
        let on = known(Probe::Supported);
        assert_answers(
            &mut s,
            &on,
            &[(&["GETNAME"], "_\r\n"), (&["SETNAME", "n"], "+OK\r\n")],
        );
        let (cmds, n) = s.replay();
        assert_eq!(n, 2);
        assert_eq!(
            String::from_utf8(cmds).unwrap(),
            "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$1\r\nn\r\n"
        );
    }

    #[test]
    fn hello_options_the_shared_connection_honours() {
        let opts = |a: &[&'static str]| -> Vec<&'static [u8]> {
            std::iter::once("3")
                .chain(a.iter().copied())
                .map(str::as_bytes)
                .collect()
        };
        assert_eq!(hello3_options(&opts(&[])), Some(None));
        assert_eq!(
            hello3_options(&opts(&["auth", "u", "p", "SETNAME", "n"])),
            Some(Some(&b"n"[..]))
        );
        assert_eq!(hello3_options(&opts(&["AUTH", "u", "p"])), Some(None));
        for bad in [
            &["AUTH", "u"][..],
            &["SETNAME"],
            &["SETNAME", "a b"],
            &["OTHER"],
            &["AUTH", "u", "p", "x"],
        ] {
            assert_eq!(hello3_options(&opts(bad)), None, "{bad:?}");
        }
        assert_eq!(hello3_options(&[b"2"]), None);
        assert_eq!(hello3_options(&[]), None);
    }

    #[test]
    fn an_unsupported_setinfo_gets_the_servers_error_with_the_clients_spelling() {
        let mut s = Setup::default();
        let old = Known {
            setinfo: Probe::Unsupported(Bytes::from_static(
                b"ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.",
            )),
            maint: Probe::Unsupported(Bytes::from_static(
                b"ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.",
            )),
        };
        assert_eq!(
            answer(&mut s, &["setInfo", "LIB-NAME", "redis-py"], &old).as_deref(),
            Some("-ERR unknown subcommand 'setInfo'. Try CLIENT HELP.\r\n")
        );
        // A server that spells it its own way is quoted as it is.
        let lower = known(Probe::Unsupported(Bytes::from_static(
            b"ERR no such 'setinfo'",
        )));
        assert_eq!(
            answer(&mut s, &["SETINFO", "LIB-NAME", "x"], &lower).as_deref(),
            Some("-ERR no such 'setinfo'\r\n")
        );
        // Nothing is kept for a server that does not know it.
        assert_eq!(s.replay().1, 0);
        // Maintenance notifications: the server's error where it does not
        // know them, a connection of the session's own where it does.
        assert_eq!(
            answer(
                &mut s,
                &[
                    "maint_notifications",
                    "ON",
                    "moving-endpoint-type",
                    "internal-ip"
                ],
                &old
            )
            .as_deref(),
            Some("-ERR unknown subcommand 'maint_notifications'. Try CLIENT HELP.\r\n")
        );
        let enterprise = Known {
            setinfo: Probe::Supported,
            maint: Probe::Supported,
        };
        assert_eq!(
            answer(&mut s, &["MAINT_NOTIFICATIONS", "ON"], &enterprise),
            None
        );
    }
}
