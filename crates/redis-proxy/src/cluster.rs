//! Redis Cluster mode ("OSS cluster"): one client session, any number of
//! cluster nodes.
//!
//! [`serve_cluster_session`] lets a client that knows nothing about Redis
//! Cluster (`redis-cli` without `-c`, `redis-benchmark`, most libraries in
//! their default mode) use a Redis Cluster, such as an Azure Redis Enterprise
//! database with the `OSSCluster` clustering policy:
//!
//! * At the start the engine connects to the configured host (the seed),
//!   asks `CLUSTER SLOTS` and builds the slot map. Connections to the other
//!   nodes are opened when first needed, at the addresses the cluster reports
//!   (usually IP addresses), with the TLS server name of the configured host
//!   (see [`Backend::node`]), and kept for the session.
//! * Each client command goes to the master of its key's slot (CRC16 of the
//!   key or of its `{hash tag}`, modulo 16384). Keys are found with a table
//!   of known commands; an unknown command is routed by its first argument.
//!   Keyless commands (`PING`, `INFO`, `CLUSTER INFO`, ...) go to the seed.
//! * Pipelines keep their depth: commands are written to their nodes as they
//!   arrive, batched per node per read, and replies are written to the client
//!   in command order as they complete.
//! * `-MOVED` updates the slot map (and refreshes it in the background) and
//!   the command is sent again to the new owner; `-ASK` sends `ASKING` and
//!   the command to the given node. After 5 redirections the client gets
//!   `-ERR Teleport: too many cluster redirections`.
//! * Keys in several slots: `MGET` is split per slot and its replies
//!   reassembled in order, `DEL`/`UNLINK`/`EXISTS`/`TOUCH` are split and their
//!   counts summed, `MSET` is split (not atomic across slots, as in Redis
//!   Cluster clients) and answers `+OK`. Other multi-key commands get
//!   `-ERR Teleport: CROSSSLOT ...`.
//! * Cluster-wide: `DBSIZE` (sum), `KEYS` (concatenation), `FLUSHALL` and
//!   `FLUSHDB` (`+OK` when every master agrees), `SCRIPT LOAD|FLUSH` and
//!   `FUNCTION LOAD|DELETE|FLUSH|RESTORE` go to every master.
//! * `SCAN` walks the masters one after another: the cursor the client sees
//!   is the node's cursor shifted left by 10 bits plus the node's position
//!   among the masters ordered by their lowest slot (the same in every
//!   session, so a client that reconnects can go on with its cursor),
//!   so it stays a number (redis-cli `--scan` and client libraries parse
//!   it), and `MATCH`/`COUNT`/`TYPE` pass through. Teleport refuses `SCAN`
//!   in cluster mode (its issue #34842).
//! * Refused with `-ERR Teleport: <command> is not supported in cluster
//!   mode`: transactions (`MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`),
//!   pub/sub subscriptions, `MONITOR`, `RESET`, `CLIENT REPLY`,
//!   `CLIENT TRACKING`, `SYNC`/`PSYNC`, `MIGRATE`, `MOVE`, `SWAPDB`,
//!   `ASKING`, `SELECT` of a database other than 0, `CLUSTER` subcommands
//!   other than `INFO`, `SLOTS`, `SHARDS`, `NODES`, `KEYSLOT` and `MYID`.
//! * `AUTH` is answered locally (as on one connection: `+OK`, or refused
//!   when it names another user than the session's, as is `HELLO ... AUTH`
//!   naming one); `HELLO` is sent (without `AUTH`
//!   arguments) to every open node connection and, for `HELLO 2|3`, to every
//!   connection opened later; the client gets the seed's answer. `QUIT` is
//!   answered `+OK` and ends the session.
//! * Credentials that expire are renewed on every node connection with an
//!   `AUTH` before they do.
//! * Ordering: commands for one slot reach their node in order. While a slot
//!   moves, commands already sent to the old owner are re-sent one by one
//!   after `-MOVED`, possibly after newer commands that went straight to the
//!   new owner.

use crate::backend::reauth_deadline;
use crate::resp::{self, Frame, FrameCursor, Limits, ProtocolError};
use crate::session::{Action, Cmd, SessionState};
use crate::SessionOptions;
use crate::{teleport_error, Backend, CommandEvent, Connected, EngineError, ReplyError};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify};

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

const NO_NODE: u16 = u16::MAX;
const MAX_REDIRECTS: u32 = 5;
/// Client bytes (plus a per-command overhead) read but not yet answered
/// before the engine stops reading from the client.
const MAX_IN_FLIGHT: usize = 64 * 1024 * 1024;
const COMMAND_OVERHEAD: usize = 64;
/// Reply bytes gathered before a write to the client.
const OUT_CHUNK: usize = 64 * 1024;
/// Node writes gathered from queued batches.
const NODE_CHUNK: usize = 256 * 1024;
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC16-XMODEM (CCITT polynomial 0x1021, initial value 0), as in the Redis
/// Cluster specification.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from(((crc >> 8) as u8) ^ b)]
    })
}

/// The hash slot of `key`: CRC16 of the key, or of the part between the
/// first `{` and the next `}` when that part is not empty, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            match rest.iter().position(|&b| b == b'}') {
                Some(len) if len > 0 => Some(&rest[..len]),
                _ => None,
            }
        })
        .unwrap_or(key);
    crc16(hashed) & 0x3FFF
}

// ---------------------------------------------------------------------------
// Command table

/// Positions of the keys among a command's arguments (after its name): up to
/// two ranges `start..end` with a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeySpec {
    ranges: [(usize, usize, usize); 2],
}

impl KeySpec {
    fn range(start: usize, end: usize, step: usize) -> KeySpec {
        KeySpec {
            ranges: [(start, end, step.max(1)), (0, 0, 1)],
        }
    }

    fn first() -> KeySpec {
        KeySpec::range(0, 1, 1)
    }

    fn all() -> KeySpec {
        KeySpec::range(0, usize::MAX, 1)
    }

    fn positions(self, n: usize) -> impl Iterator<Item = usize> {
        self.ranges
            .into_iter()
            .flat_map(move |(s, e, step)| (s..e.min(n)).step_by(step))
    }
}

/// How keys in different slots are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// Refused (`CROSSSLOT`).
    No,
    /// One command per slot, integer replies summed.
    Sum,
    /// One `MGET` per slot, replies reassembled in key order.
    Mget,
    /// One `MSET` per slot (key/value pairs), `+OK`.
    Mset,
}

/// How the replies of a command sent to several nodes are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Merge {
    Sum,
    AllOk,
    Concat,
    First,
    /// For each key of the client's command: (part, index in that part's reply).
    Mget(Vec<(u32, u32)>),
    /// A `SCAN` sent to master `pos` of `masters`: the node's cursor in the
    /// reply becomes the session's cursor ([`scan_cursor`]).
    Scan {
        pos: u64,
        masters: u64,
    },
}

/// Bits of a cluster-mode `SCAN` cursor naming the master being scanned.
const SCAN_NODE_BITS: u32 = 10;

/// The client's `SCAN` cursor for `pos` (index among the masters in slot
/// order, [`masters_in_slot_order`]) and that node's cursor:
/// `node_cursor << 10 | pos`. Numeric, as redis-cli and client libraries
/// require; a scan starts at master 0 (cursor 0) and moves to the next
/// master when a node's cursor returns to 0, ending with 0 after the last.
/// `None` when the node's cursor does not fit (a hash table of more than
/// 2^54 buckets).
fn scan_cursor(pos: u64, node_cursor: u64) -> Option<u64> {
    if node_cursor >> (64 - SCAN_NODE_BITS) != 0 || pos >> SCAN_NODE_BITS != 0 {
        return None;
    }
    Some(node_cursor << SCAN_NODE_BITS | pos)
}

/// The nodes (indices below `nodes`) that serve a slot of `slots`, ordered
/// by the lowest slot each serves, so that every session with the same slot
/// map numbers the masters alike whatever order it met them in: a `SCAN`
/// cursor stays valid across sessions (a client that reconnects mid-scan).
/// The seed (0) alone when no slot is known.
fn masters_in_slot_order(slots: &[u16], nodes: usize) -> Vec<usize> {
    let mut seen = vec![false; nodes];
    let mut out = Vec::new();
    for &s in slots {
        let i = usize::from(s);
        if let Some(x) = seen.get_mut(i) {
            if !*x {
                *x = true;
                out.push(i);
            }
        }
    }
    if out.is_empty() {
        vec![0]
    } else {
        out
    }
}

/// (master position, node cursor) of a client's cluster-mode `SCAN` cursor.
fn split_scan_cursor(cursor: u64) -> (u64, u64) {
    (
        cursor & ((1 << SCAN_NODE_BITS) - 1),
        cursor >> SCAN_NODE_BITS,
    )
}

#[derive(Debug, PartialEq)]
pub(crate) enum Route {
    Keys(KeySpec, Split),
    Any,
    Masters(Merge),
    /// `SCAN` over every master in turn ([`scan_cursor`]).
    Scan,
    Local(Bytes),
    Hello,
    Quit,
}

fn upper(arg: Option<&&[u8]>) -> String {
    arg.map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default()
}

/// A decimal argument or reply field.
fn number<T: std::str::FromStr>(text: &[u8]) -> Option<T> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn count(arg: Option<&&[u8]>) -> Option<usize> {
    number(arg?)
}

fn unsupported(what: &str) -> Route {
    Route::Local(Bytes::from(teleport_error(&format!(
        "{what} is not supported in cluster mode"
    ))))
}

/// Keys from a `numkeys` argument at `at`, the keys following it.
fn numkeys(args: &[&[u8]], at: usize) -> Route {
    match count(args.get(at)) {
        Some(k) if k > 0 => Route::Keys(
            KeySpec::range(at + 1, (at + 1).saturating_add(k), 1),
            Split::No,
        ),
        _ => Route::Any,
    }
}

pub(crate) fn classify(name: &str, args: &[&[u8]]) -> Route {
    let n = args.len();
    match name {
        "AUTH" => Route::Local(Bytes::from_static(b"+OK\r\n")),
        "HELLO" => Route::Hello,
        "QUIT" => Route::Quit,
        "MULTI" | "EXEC" | "DISCARD" | "WATCH" | "UNWATCH" | "SUBSCRIBE" | "PSUBSCRIBE"
        | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE" | "MONITOR" | "RESET"
        | "SYNC" | "PSYNC" | "MIGRATE" | "MOVE" | "SWAPDB" | "ASKING" => unsupported(name),
        "SELECT" => {
            if args == [b"0"] {
                Route::Local(Bytes::from_static(b"+OK\r\n"))
            } else {
                unsupported("SELECT of a database other than 0")
            }
        }
        "CLIENT" => match upper(args.first()).as_str() {
            sub @ ("REPLY" | "TRACKING" | "CACHING") => unsupported(&format!("CLIENT {sub}")),
            _ => Route::Any,
        },
        "CLUSTER" => match upper(args.first()).as_str() {
            "INFO" | "SLOTS" | "SHARDS" | "NODES" | "KEYSLOT" | "MYID" => Route::Any,
            sub => unsupported(format!("CLUSTER {sub}").trim_end()),
        },
        "DBSIZE" => Route::Masters(Merge::Sum),
        "SCAN" => Route::Scan,
        "KEYS" => Route::Masters(Merge::Concat),
        "FLUSHALL" | "FLUSHDB" => Route::Masters(Merge::AllOk),
        "SCRIPT" => match upper(args.first()).as_str() {
            "LOAD" | "FLUSH" => Route::Masters(Merge::First),
            _ => Route::Any,
        },
        "FUNCTION" => match upper(args.first()).as_str() {
            "LOAD" | "DELETE" | "FLUSH" | "RESTORE" => Route::Masters(Merge::First),
            _ => Route::Any,
        },
        "PING" | "ECHO" | "INFO" | "TIME" | "LASTSAVE" | "CONFIG" | "COMMAND" | "SLOWLOG"
        | "LATENCY" | "ROLE" | "DEBUG" | "LOLWUT" | "PUBLISH" | "PUBSUB" | "ACL" | "SAVE"
        | "BGSAVE" | "BGREWRITEAOF" | "SHUTDOWN" | "WAIT" | "WAITAOF" | "RANDOMKEY" | "MODULE"
        | "READONLY" | "READWRITE" | "REPLICAOF" | "SLAVEOF" | "FAILOVER" => Route::Any,
        "MGET" => Route::Keys(KeySpec::all(), Split::Mget),
        "DEL" | "UNLINK" | "EXISTS" | "TOUCH" => Route::Keys(KeySpec::all(), Split::Sum),
        "MSET" => Route::Keys(KeySpec::range(0, usize::MAX, 2), Split::Mset),
        "MSETNX" => Route::Keys(KeySpec::range(0, usize::MAX, 2), Split::No),
        "SINTER" | "SUNION" | "SDIFF" | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE"
        | "PFCOUNT" | "PFMERGE" => Route::Keys(KeySpec::all(), Split::No),
        "RENAME" | "RENAMENX" | "SMOVE" | "RPOPLPUSH" | "BRPOPLPUSH" | "LMOVE" | "BLMOVE"
        | "COPY" | "LCS" | "GEOSEARCHSTORE" | "ZRANGESTORE" => {
            Route::Keys(KeySpec::range(0, 2, 1), Split::No)
        }
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" => {
            Route::Keys(KeySpec::range(0, n.saturating_sub(1), 1), Split::No)
        }
        "BITOP" => Route::Keys(KeySpec::range(1, usize::MAX, 1), Split::No),
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => numkeys(args, 1),
        "ZUNION" | "ZINTER" | "ZDIFF" | "SINTERCARD" | "ZINTERCARD" | "LMPOP" | "ZMPOP" => {
            numkeys(args, 0)
        }
        "BLMPOP" | "BZMPOP" => numkeys(args, 1),
        "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => match count(args.get(1)) {
            Some(k) => Route::Keys(
                KeySpec {
                    ranges: [(0, 1, 1), (2, 2usize.saturating_add(k), 1)],
                },
                Split::No,
            ),
            None => Route::Keys(KeySpec::first(), Split::No),
        },
        "XREAD" | "XREADGROUP" => {
            match args.iter().position(|a| a.eq_ignore_ascii_case(b"STREAMS")) {
                Some(s) => {
                    let ids = (n - s - 1) / 2;
                    Route::Keys(KeySpec::range(s + 1, s + 1 + ids, 1), Split::No)
                }
                None => Route::Any,
            }
        }
        "OBJECT" | "MEMORY" | "XINFO" => {
            if n >= 2 {
                Route::Keys(KeySpec::range(1, 2, 1), Split::No)
            } else {
                Route::Any
            }
        }
        // Every other command, known or not: its first argument is the key.
        _ => Route::Keys(KeySpec::first(), Split::No),
    }
}

// ---------------------------------------------------------------------------
// Node connections

/// Why a command got no reply from its node: the client gets it as
/// `-ERR Teleport: ...`. Shared by every command that was waiting on the
/// connection.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Connecting or authenticating to the node failed.
    #[error(transparent)]
    Connect(EngineError),
    /// The connection failed or ended after it was open.
    #[error("database node {node}: {source}")]
    Lost {
        /// `host:port`.
        node: String,
        /// What happened on it.
        source: LinkError,
    },
    /// The node's connection task went away without answering.
    #[error("database node connection closed")]
    Closed,
}

/// What ended an open node connection.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("write failed: {0}")]
    Write(#[source] std::io::Error),
    /// The connection's reader stopped (it reports its own error).
    #[error("connection closed")]
    ReaderGone,
    /// New credentials for the re-authentication could not be had.
    #[error(transparent)]
    Credentials(EngineError),
    #[error("read failed: {0}")]
    Read(#[source] std::io::Error),
    #[error("connection closed by the server")]
    ServerClosed,
    #[error("invalid reply: {0}")]
    InvalidReply(#[source] ProtocolError),
    /// The node answered the engine's re-authentication with this error.
    #[error("re-authentication refused: {0}")]
    ReauthRefused(String),
    /// A reply with no command waiting for it.
    #[error("unexpected reply")]
    UnexpectedReply,
}

/// Why a `CLUSTER SLOTS` reply could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SlotsError {
    /// The node answered with an error (its text).
    #[error("{0}")]
    Refused(String),
    /// Not an array.
    #[error("unexpected reply {0}")]
    Unexpected(String),
    #[error("invalid slot range")]
    InvalidRange,
    #[error("invalid node address")]
    InvalidNodeAddress,
    /// More nodes than a slot map entry can name.
    #[error("too many nodes")]
    TooManyNodes,
    /// A refresh's reply that is not one complete frame.
    #[error("invalid CLUSTER SLOTS reply")]
    InvalidReply,
    /// A refresh's reply that never came.
    #[error(transparent)]
    Node(Arc<NodeError>),
}

type Reply = Result<Bytes, Arc<NodeError>>;

/// Commands the engine sends itself; their replies are consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Internal {
    Hello,
    Auth,
    Asking,
}

enum Waiter {
    Reply(oneshot::Sender<Reply>),
    Internal(Internal),
}

/// Commands for one node, in order, with one waiter per expected reply.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    waiters: Vec<Waiter>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.waiters.is_empty()
    }
}

struct NodeHandle {
    tx: mpsc::UnboundedSender<Batch>,
}

impl NodeHandle {
    fn spawn(
        backend: Backend,
        limits: Limits,
        hello: Option<Bytes>,
        pre: Option<Connected>,
    ) -> NodeHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_node(backend, limits, hello, pre, rx));
        NodeHandle { tx }
    }
}

fn fail(waiter: Waiter, e: &Arc<NodeError>) {
    if let Waiter::Reply(tx) = waiter {
        let _ = tx.send(Err(e.clone()));
    }
}

/// One node connection: connects (unless `pre`), then writes batches and
/// hands replies to their waiters until the session drops its handle or the
/// connection fails (every waiting command then gets the error).
async fn run_node(
    backend: Backend,
    limits: Limits,
    hello: Option<Bytes>,
    pre: Option<Connected>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
) {
    let label = format!("{}:{}", backend.host(), backend.port());
    let connected = match pre {
        Some(c) => c,
        None => match backend.connect_authenticated().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(node = %label, error = %e, "cluster node connection failed");
                let e = Arc::new(NodeError::Connect(e));
                rx.close();
                while let Ok(batch) = rx.try_recv() {
                    batch.waiters.into_iter().for_each(|w| fail(w, &e));
                }
                return;
            }
        },
    };
    let (mut r, mut w) = tokio::io::split(connected.stream);
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<Waiter>>();
    let mut waiting: VecDeque<Waiter> = VecDeque::new();
    let result = {
        let writer = node_writer(&mut w, &mut rx, wtx, &backend, hello, connected.reauth_at);
        let reader = node_reader(&mut r, &mut wrx, &mut waiting, &limits);
        tokio::select! {
            r = writer => r,
            r = reader => r,
        }
    };
    if let Err(source) = result {
        let e = Arc::new(NodeError::Lost {
            node: label,
            source,
        });
        tracing::debug!(error = %e, "cluster node connection ended");
        rx.close();
        waiting.into_iter().for_each(|w| fail(w, &e));
        while let Ok(ws) = wrx.try_recv() {
            ws.into_iter().for_each(|w| fail(w, &e));
        }
        while let Ok(batch) = rx.try_recv() {
            batch.waiters.into_iter().for_each(|w| fail(w, &e));
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn node_writer<W: AsyncWrite + Unpin>(
    w: &mut W,
    rx: &mut mpsc::UnboundedReceiver<Batch>,
    wtx: mpsc::UnboundedSender<Vec<Waiter>>,
    backend: &Backend,
    hello: Option<Bytes>,
    mut reauth_at: Option<tokio::time::Instant>,
) -> Result<(), LinkError> {
    let io = LinkError::Write;
    let gone = |_| LinkError::ReaderGone;
    if let Some(h) = hello {
        wtx.send(vec![Waiter::Internal(Internal::Hello)])
            .map_err(gone)?;
        w.write_all(&h).await.map_err(io)?;
    }
    loop {
        w.flush().await.map_err(io)?;
        let batch = tokio::select! {
            biased;
            () = sleep_until_opt(reauth_at) => {
                let creds = backend.credentials().await.map_err(LinkError::Credentials)?;
                reauth_at = creds.valid_for.map(reauth_deadline);
                if let Some(cmd) = creds.auth_command() {
                    wtx.send(vec![Waiter::Internal(Internal::Auth)]).map_err(gone)?;
                    w.write_all(&cmd).await.map_err(io)?;
                }
                continue;
            }
            b = rx.recv() => match b {
                Some(b) => b,
                None => return Ok(()),
            },
        };
        let Batch {
            mut bytes,
            mut waiters,
        } = batch;
        // Gather what else is queued into one write.
        while bytes.len() < NODE_CHUNK {
            let Ok(mut more) = rx.try_recv() else { break };
            bytes.extend_from_slice(&more.bytes);
            waiters.append(&mut more.waiters);
        }
        // The reader must know the waiters before replies can arrive.
        wtx.send(waiters).map_err(gone)?;
        w.write_all(&bytes).await.map_err(io)?;
    }
}

fn is_error(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'-' | b'!'))
}

async fn node_reader<R: AsyncRead + Unpin>(
    r: &mut R,
    wrx: &mut mpsc::UnboundedReceiver<Vec<Waiter>>,
    waiting: &mut VecDeque<Waiter>,
    limits: &Limits,
) -> Result<(), LinkError> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut cursor = FrameCursor::default();
    // Attribute frames (`|`) waiting for the reply they annotate.
    let mut attrs = 0usize;
    loop {
        buf.reserve(16 * 1024);
        let n = r.read_buf(&mut buf).await.map_err(LinkError::Read)?;
        if n == 0 {
            return Err(LinkError::ServerClosed);
        }
        loop {
            let rest = buf.get(attrs..).unwrap_or_default();
            let next = cursor.next(rest, limits).map_err(LinkError::InvalidReply)?;
            let Some((len, top)) = next else { break };
            match top {
                b'|' => {
                    attrs += len;
                    continue;
                }
                b'>' => {
                    // Out-of-band data (nothing this engine enables): dropped.
                    if attrs == 0 {
                        buf.advance(len);
                    } else {
                        let mut tail = buf.split_off(attrs);
                        tail.advance(len);
                        buf.unsplit(tail);
                    }
                    continue;
                }
                _ => {}
            }
            let reply = buf.split_to(attrs + len).freeze();
            attrs = 0;
            while waiting.is_empty() {
                match wrx.try_recv() {
                    Ok(ws) => waiting.extend(ws),
                    Err(_) => break,
                }
            }
            match waiting.pop_front() {
                Some(Waiter::Reply(tx)) => {
                    let _ = tx.send(Ok(reply));
                }
                Some(Waiter::Internal(kind)) if is_error(&reply) => {
                    let text = String::from_utf8_lossy(&reply).trim_end().to_string();
                    if kind == Internal::Auth {
                        return Err(LinkError::ReauthRefused(text));
                    }
                    tracing::warn!(?kind, reply = %text, "cluster node refused an engine command");
                }
                Some(Waiter::Internal(kind)) => {
                    if kind == Internal::Auth {
                        tracing::debug!("re-authenticated a cluster node connection");
                    }
                }
                None => return Err(LinkError::UnexpectedReply),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Slot map and dispatch

struct Node {
    host: String,
    port: u16,
    /// The address the cluster reports for the seed, when it differs.
    alias: Option<(String, u16)>,
    id: Option<Bytes>,
    handle: Option<NodeHandle>,
}

/// A command sent to one node, awaiting its reply.
struct Part {
    rx: oneshot::Receiver<Reply>,
    /// The command, to send again after a redirection.
    cmd: Bytes,
}

enum Expect {
    Local(Bytes),
    One(Part),
    Many(Vec<Part>, Merge),
}

/// One client command's place in the reply order.
struct Pending {
    expect: Expect,
    cost: usize,
}

struct Pool {
    seed: Backend,
    limits: Limits,
    /// `nodes[0]` is the seed connection; keyless commands go there.
    nodes: Vec<Node>,
    batches: Vec<Batch>,
    slots: Vec<u16>,
    /// `HELLO` (without `AUTH`) for new connections.
    hello: Option<Bytes>,
    refresh: Option<oneshot::Receiver<Reply>>,
}

enum Redirect<'a> {
    Moved(u16, &'a str, u16),
    Ask(&'a str, u16),
}

fn parse_redirect(reply: &[u8]) -> Option<Redirect<'_>> {
    let text = std::str::from_utf8(reply.strip_prefix(b"-")?)
        .ok()?
        .trim_end();
    let mut words = text.split(' ');
    let kind = words.next()?;
    if kind != "MOVED" && kind != "ASK" {
        return None;
    }
    let slot: u16 = words
        .next()?
        .parse()
        .ok()
        .filter(|s| usize::from(*s) < SLOTS)?;
    let (host, port) = words.next()?.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    Some(if kind == "MOVED" {
        Redirect::Moved(slot, host, port)
    } else {
        Redirect::Ask(host, port)
    })
}

fn text_of(f: &Frame) -> Option<&[u8]> {
    match f {
        Frame::Bulk(b) | Frame::Simple(b) => Some(b),
        Frame::Verbatim { data, .. } => Some(data),
        _ => None,
    }
}

fn int_of(f: &Frame) -> Option<i64> {
    match f {
        Frame::Integer(n) => Some(*n),
        other => std::str::from_utf8(text_of(other)?).ok()?.parse().ok(),
    }
}

fn encode_command<'a>(args: impl ExactSizeIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

impl Pool {
    fn new(seed: &Backend, limits: Limits, seed_id: Option<Bytes>) -> Pool {
        Pool {
            seed: seed.clone(),
            limits,
            nodes: vec![Node {
                host: seed.host().to_string(),
                port: seed.port(),
                alias: None,
                id: seed_id,
                handle: None,
            }],
            batches: vec![Batch::default()],
            slots: vec![NO_NODE; SLOTS],
            hello: None,
            refresh: None,
        }
    }

    fn find_or_add(&mut self, host: &str, port: u16, id: Option<&[u8]>) -> usize {
        // Unknown endpoint ("" or "?"): the seed's host name.
        let host = if host.is_empty() || host == "?" {
            self.seed.host().to_string()
        } else {
            host.to_string()
        };
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            if let Some(i) = self.nodes.iter().position(|n| n.id.as_deref() == Some(id)) {
                let node = &mut self.nodes[i];
                if (node.host.as_str(), node.port) != (host.as_str(), port) {
                    node.alias = Some((host, port));
                }
                return i;
            }
        }
        let found = self.nodes.iter().position(|n| {
            (n.host.as_str(), n.port) == (host.as_str(), port)
                || n.alias
                    .as_ref()
                    .is_some_and(|(h, p)| (h.as_str(), *p) == (host.as_str(), port))
        });
        if let Some(i) = found {
            if self.nodes[i].id.is_none() {
                self.nodes[i].id = id.map(Bytes::copy_from_slice);
            }
            return i;
        }
        self.nodes.push(Node {
            host,
            port,
            alias: None,
            id: id.map(Bytes::copy_from_slice),
            handle: None,
        });
        self.batches.push(Batch::default());
        self.nodes.len() - 1
    }

    /// Replaces the slot map with a `CLUSTER SLOTS` reply.
    fn apply_slots(&mut self, reply: &Frame) -> Result<(), SlotsError> {
        let ranges = match reply {
            Frame::Array(r) | Frame::Set(r) => r,
            Frame::Error(e) | Frame::BlobError(e) => {
                return Err(SlotsError::Refused(String::from_utf8_lossy(e).into_owned()))
            }
            other => return Err(SlotsError::Unexpected(format!("{other:?}"))),
        };
        let mut slots = vec![NO_NODE; SLOTS];
        for range in ranges {
            let Frame::Array(items) = range else {
                return Err(SlotsError::InvalidRange);
            };
            let (Some(start), Some(end), Some(Frame::Array(master))) = (
                items.first().and_then(int_of),
                items.get(1).and_then(int_of),
                items.get(2),
            ) else {
                return Err(SlotsError::InvalidRange);
            };
            let (Some(host), Some(port)) = (
                master.first().and_then(text_of),
                master
                    .get(1)
                    .and_then(int_of)
                    .and_then(|p| u16::try_from(p).ok()),
            ) else {
                return Err(SlotsError::InvalidNodeAddress);
            };
            let host = String::from_utf8_lossy(host).into_owned();
            let id = master.get(2).and_then(text_of);
            let idx = self.find_or_add(&host, port, id);
            let idx = u16::try_from(idx).map_err(|_| SlotsError::TooManyNodes)?;
            let start = usize::try_from(start.max(0)).unwrap_or(0);
            let end = usize::try_from(end.max(-1) + 1).unwrap_or(0).min(SLOTS);
            for s in slots.iter_mut().take(end).skip(start) {
                *s = idx;
            }
        }
        self.slots = slots;
        Ok(())
    }

    fn poll_refresh(&mut self) {
        let Some(rx) = self.refresh.as_mut() else {
            return;
        };
        match rx.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => {}
            Err(oneshot::error::TryRecvError::Closed) => self.refresh = None,
            Ok(reply) => {
                self.refresh = None;
                let applied = reply.map_err(SlotsError::Node).and_then(|bytes| {
                    match resp::parse(&bytes, &self.limits) {
                        Ok(Some((frame, _))) => self.apply_slots(&frame),
                        _ => Err(SlotsError::InvalidReply),
                    }
                });
                match applied {
                    Ok(()) => tracing::debug!("cluster slot map refreshed"),
                    Err(e) => tracing::warn!(error = %e, "cluster slot map refresh failed"),
                }
            }
        }
    }

    fn schedule_refresh(&mut self, idx: usize) {
        if self.refresh.is_some() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let mut batch = Batch::default();
        encode_command(
            [b"CLUSTER".as_slice(), b"SLOTS"].into_iter(),
            &mut batch.bytes,
        );
        batch.waiters.push(Waiter::Reply(tx));
        self.send_now(idx, batch);
        self.refresh = Some(rx);
    }

    fn node_for_slot(&self, slot: u16) -> usize {
        match self.slots.get(usize::from(slot)) {
            Some(&i) if i != NO_NODE => usize::from(i),
            _ => 0,
        }
    }

    /// The nodes serving slots (or the seed when none is known), by the
    /// lowest slot each serves ([`masters_in_slot_order`]).
    fn masters(&self) -> Vec<usize> {
        masters_in_slot_order(&self.slots, self.nodes.len())
    }

    /// A live connection handle for node `idx` (a new one when there is none
    /// or the last one failed).
    fn ensure(&mut self, idx: usize) {
        let Some(node) = self.nodes.get_mut(idx) else {
            return;
        };
        if node.handle.as_ref().is_some_and(|h| !h.tx.is_closed()) {
            return;
        }
        let backend = if idx == 0 {
            self.seed.clone()
        } else {
            self.seed.node(&node.host, node.port)
        };
        node.handle = Some(NodeHandle::spawn(
            backend,
            self.limits,
            self.hello.clone(),
            None,
        ));
    }

    fn send_now(&mut self, idx: usize, batch: Batch) {
        self.ensure(idx);
        if let Some(h) = self.nodes.get(idx).and_then(|n| n.handle.as_ref()) {
            // On failure the waiters are dropped: their commands get an error.
            let _ = h.tx.send(batch);
        }
    }

    /// Adds a command to node `idx`'s batch for this read.
    fn enqueue(&mut self, idx: usize, bytes: &[u8], cmd: Bytes) -> Part {
        let (tx, rx) = oneshot::channel();
        self.ensure(idx);
        if let Some(b) = self.batches.get_mut(idx) {
            b.bytes.extend_from_slice(bytes);
            b.waiters.push(Waiter::Reply(tx));
        }
        Part { rx, cmd }
    }

    fn flush_batches(&mut self) {
        for idx in 0..self.batches.len() {
            if self.batches[idx].is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut self.batches[idx]);
            if let Some(h) = self.nodes.get(idx).and_then(|n| n.handle.as_ref()) {
                let _ = h.tx.send(batch);
            }
        }
    }

    /// Sends a redirected command; returns where its reply will arrive.
    fn redirect(&mut self, redirect: &Redirect<'_>, cmd: &Bytes) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        let mut batch = Batch::default();
        let idx = match *redirect {
            Redirect::Moved(slot, host, port) => {
                let idx = self.find_or_add(host, port, None);
                if let (Some(s), Ok(i)) =
                    (self.slots.get_mut(usize::from(slot)), u16::try_from(idx))
                {
                    *s = i;
                }
                idx
            }
            Redirect::Ask(host, port) => {
                encode_command([b"ASKING".as_slice()].into_iter(), &mut batch.bytes);
                batch.waiters.push(Waiter::Internal(Internal::Asking));
                self.find_or_add(host, port, None)
            }
        };
        batch.bytes.extend_from_slice(cmd);
        batch.waiters.push(Waiter::Reply(tx));
        self.send_now(idx, batch);
        if matches!(redirect, Redirect::Moved(..)) {
            self.schedule_refresh(idx);
        }
        rx
    }

    /// Sends one client command where `route` says; returns where its
    /// reply will be.
    fn route(&mut self, route: Route, name: &str, args: &[&[u8]], chunk: &Bytes) -> Expect {
        match route {
            Route::Local(bytes) => Expect::Local(bytes),
            Route::Quit => Expect::Local(Bytes::from_static(b"+OK\r\n")),
            Route::Any => Expect::One(self.enqueue(0, chunk, chunk.clone())),
            Route::Masters(merge) => {
                let parts = self
                    .masters()
                    .into_iter()
                    .map(|idx| self.enqueue(idx, chunk, chunk.clone()))
                    .collect();
                Expect::Many(parts, merge)
            }
            Route::Scan => self.scan(args),
            Route::Hello => self.hello(args, chunk),
            Route::Keys(spec, split) => self.keyed(name, args, chunk, spec, split),
        }
    }

    /// `SCAN cursor [options]`: the master the cursor names, with that
    /// node's own cursor; the reply's cursor is rewritten in
    /// [`merge_replies`].
    fn scan(&mut self, args: &[&[u8]]) -> Expect {
        let Some(cursor) = args.first().and_then(|c| number(c)) else {
            return Expect::Local(Bytes::from_static(b"-ERR invalid cursor\r\n"));
        };
        let masters = self.masters();
        let (pos, node_cursor) = split_scan_cursor(cursor);
        let Some(&idx) = usize::try_from(pos).ok().and_then(|p| masters.get(p)) else {
            return Expect::Local(Bytes::from(teleport_error(
                "invalid cursor: it names no node of this cluster (did the cluster change during the scan?)",
            )));
        };
        let node_cursor = node_cursor.to_string();
        let mut bytes = Vec::new();
        let sub = [b"SCAN".as_slice(), node_cursor.as_bytes()]
            .into_iter()
            .chain(args.iter().skip(1).copied());
        let sub: Vec<&[u8]> = sub.collect();
        encode_command(sub.into_iter(), &mut bytes);
        let cmd = Bytes::from(bytes);
        let part = self.enqueue(idx, &cmd, cmd.clone());
        Expect::Many(
            vec![part],
            Merge::Scan {
                pos,
                masters: masters.len() as u64,
            },
        )
    }

    fn hello(&mut self, args: &[&[u8]], chunk: &Bytes) -> Expect {
        let cmd = match crate::session::hello_without_auth(args) {
            Some(bytes) => Bytes::from(bytes),
            None => chunk.clone(),
        };
        if matches!(args.first().copied(), Some(b"2" | b"3")) {
            self.hello = Some(cmd.clone());
            for idx in 1..self.nodes.len() {
                let open = self.nodes[idx]
                    .handle
                    .as_ref()
                    .is_some_and(|h| !h.tx.is_closed());
                if open {
                    self.batches[idx].bytes.extend_from_slice(&cmd);
                    self.batches[idx]
                        .waiters
                        .push(Waiter::Internal(Internal::Hello));
                }
            }
        }
        Expect::One(self.enqueue(0, &cmd, cmd.clone()))
    }

    fn keyed(
        &mut self,
        name: &str,
        args: &[&[u8]],
        chunk: &Bytes,
        spec: KeySpec,
        split: Split,
    ) -> Expect {
        let n = args.len();
        let mut keys = spec.positions(n).filter_map(|i| args.get(i).copied());
        let Some(first) = keys.next() else {
            return Expect::One(self.enqueue(0, chunk, chunk.clone()));
        };
        let slot = key_slot(first);
        if keys.all(|k| key_slot(k) == slot) {
            let idx = self.node_for_slot(slot);
            return Expect::One(self.enqueue(idx, chunk, chunk.clone()));
        }
        if split == Split::No {
            return Expect::Local(Bytes::from(teleport_error(
                "CROSSSLOT Keys in request don't hash to the same slot (cluster mode)",
            )));
        }
        // One command per slot, in the order slots first appear.
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        let mut by_slot: HashMap<u16, usize> = HashMap::new();
        let mut order: Vec<(u32, u32)> = Vec::new();
        for i in spec.positions(n) {
            let Some(key) = args.get(i) else { continue };
            let slot = key_slot(key);
            let g = *by_slot.entry(slot).or_insert_with(|| {
                groups.push((slot, Vec::new()));
                groups.len() - 1
            });
            let members = &mut groups[g].1;
            order.push((g as u32, members.len() as u32));
            members.push(i);
        }
        let width = if split == Split::Mset { 2 } else { 1 };
        let mut parts = Vec::with_capacity(groups.len());
        for (slot, members) in groups {
            let mut bytes = Vec::new();
            let sub = std::iter::once(name.as_bytes()).chain(
                members
                    .iter()
                    .flat_map(|&i| (i..i + width).filter_map(|j| args.get(j).copied())),
            );
            let sub: Vec<&[u8]> = sub.collect();
            encode_command(sub.into_iter(), &mut bytes);
            let cmd = Bytes::from(bytes);
            let idx = self.node_for_slot(slot);
            parts.push(self.enqueue(idx, &cmd, cmd.clone()));
        }
        let merge = match split {
            Split::Sum => Merge::Sum,
            Split::Mset => Merge::AllOk,
            _ => Merge::Mget(order),
        };
        Expect::Many(parts, merge)
    }
}

/// Combines the replies of a command sent to several nodes.
fn merge_replies(merge: &Merge, replies: &[Bytes], limits: &Limits) -> Bytes {
    if let Some(e) = replies.iter().find(|r| is_error(r)) {
        return e.clone();
    }
    if *merge == Merge::First {
        return replies.first().cloned().unwrap_or_default();
    }
    if *merge == Merge::AllOk {
        return Bytes::from_static(b"+OK\r\n");
    }
    let mut frames = Vec::with_capacity(replies.len());
    for r in replies {
        match resp::parse(r, limits) {
            Ok(Some((f, _))) => frames.push(f),
            _ => return Bytes::from(teleport_error("invalid reply from a cluster node")),
        }
    }
    let invalid = || Bytes::from(teleport_error("unexpected reply from a cluster node"));
    let merged = match merge {
        Merge::Sum => {
            let mut sum: i64 = 0;
            for f in &frames {
                let Frame::Integer(n) = f else {
                    return invalid();
                };
                sum = sum.saturating_add(*n);
            }
            Frame::Integer(sum)
        }
        Merge::Concat => {
            let mut all = Vec::new();
            for f in frames {
                let (Frame::Array(items) | Frame::Set(items)) = f else {
                    return invalid();
                };
                all.extend(items);
            }
            Frame::Array(all)
        }
        Merge::Mget(order) => {
            let mut lists = Vec::with_capacity(frames.len());
            for f in frames {
                let Frame::Array(items) = f else {
                    return invalid();
                };
                lists.push(items);
            }
            let mut all = Vec::with_capacity(order.len());
            for &(part, i) in order {
                let Some(item) = lists.get(part as usize).and_then(|l| l.get(i as usize)) else {
                    return invalid();
                };
                all.push(item.clone());
            }
            Frame::Array(all)
        }
        Merge::Scan { pos, masters } => {
            let [Frame::Array(items)] = frames.as_slice() else {
                return invalid();
            };
            let [Frame::Bulk(cursor), keys] = items.as_slice() else {
                return invalid();
            };
            let Some(node_cursor) = number(cursor) else {
                return invalid();
            };
            let next = if node_cursor != 0 {
                scan_cursor(*pos, node_cursor)
            } else if pos + 1 < *masters {
                // This node is done: the next one from its start.
                scan_cursor(pos + 1, 0)
            } else {
                Some(0)
            };
            let Some(next) = next else {
                return Bytes::from(teleport_error(
                    "a cluster node's SCAN cursor is too large to combine with a node number",
                ));
            };
            Frame::Array(vec![
                Frame::Bulk(Bytes::from(next.to_string())),
                keys.clone(),
            ])
        }
        Merge::First | Merge::AllOk => return invalid(),
    };
    Bytes::from(merged.to_bytes())
}

// ---------------------------------------------------------------------------
// Session

struct Shared {
    pool: Mutex<Pool>,
    in_flight: AtomicUsize,
    room: Notify,
}

impl Shared {
    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn wait_for_room(&self) {
        while self.in_flight.load(Ordering::Acquire) > MAX_IN_FLIGHT {
            self.room.notified().await;
        }
    }

    fn done(&self, cost: usize) {
        let prev = self.in_flight.fetch_sub(cost, Ordering::AcqRel);
        if prev > MAX_IN_FLIGHT && prev.saturating_sub(cost) <= MAX_IN_FLIGHT {
            self.room.notify_one();
        }
    }

    /// The reply to `part`, following redirections. Writes what `out` holds
    /// to the client before waiting.
    async fn resolve<W: AsyncWrite + Unpin>(
        &self,
        part: Part,
        out: &mut Vec<u8>,
        w: &mut W,
    ) -> Result<Bytes, EngineError> {
        let Part { mut rx, cmd } = part;
        let mut redirects = 0;
        loop {
            let reply = match rx.try_recv() {
                Ok(r) => r,
                Err(oneshot::error::TryRecvError::Empty) => {
                    flush_out(out, w).await?;
                    (&mut rx)
                        .await
                        .unwrap_or_else(|_| Err(Arc::new(NodeError::Closed)))
                }
                Err(oneshot::error::TryRecvError::Closed) => Err(Arc::new(NodeError::Closed)),
            };
            let reply = match reply {
                Ok(r) => r,
                Err(e) => return Ok(Bytes::from(teleport_error(&e.to_string()))),
            };
            if reply.first() != Some(&b'-') {
                return Ok(reply);
            }
            let Some(redirect) = parse_redirect(&reply) else {
                return Ok(reply);
            };
            if redirects >= MAX_REDIRECTS {
                return Ok(Bytes::from(teleport_error("too many cluster redirections")));
            }
            redirects += 1;
            rx = self.pool().redirect(&redirect, &cmd);
        }
    }
}

async fn flush_out<W: AsyncWrite + Unpin>(out: &mut Vec<u8>, w: &mut W) -> Result<(), EngineError> {
    if !out.is_empty() {
        w.write_all(out).await.map_err(EngineError::Client)?;
        out.clear();
    }
    w.flush().await.map_err(EngineError::Client)
}

async fn put<W: AsyncWrite + Unpin>(
    out: &mut Vec<u8>,
    w: &mut W,
    reply: &[u8],
) -> Result<(), EngineError> {
    if reply.len() >= OUT_CHUNK {
        if !out.is_empty() {
            w.write_all(out).await.map_err(EngineError::Client)?;
            out.clear();
        }
        return w.write_all(reply).await.map_err(EngineError::Client);
    }
    out.extend_from_slice(reply);
    if out.len() >= OUT_CHUNK {
        w.write_all(out).await.map_err(EngineError::Client)?;
        out.clear();
    }
    Ok(())
}

/// Writes replies to the client in command order.
async fn write_replies<W: AsyncWrite + Unpin>(
    mut w: W,
    mut queue: mpsc::UnboundedReceiver<Vec<Pending>>,
    shared: &Shared,
    limits: Limits,
) -> Result<(), EngineError> {
    let mut out: Vec<u8> = Vec::with_capacity(OUT_CHUNK);
    loop {
        let batch = match queue.try_recv() {
            Ok(b) => b,
            Err(mpsc::error::TryRecvError::Empty) => {
                flush_out(&mut out, &mut w).await?;
                match queue.recv().await {
                    Some(b) => b,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        for p in batch {
            match p.expect {
                Expect::Local(bytes) => put(&mut out, &mut w, &bytes).await?,
                Expect::One(part) => {
                    let reply = shared.resolve(part, &mut out, &mut w).await?;
                    put(&mut out, &mut w, &reply).await?;
                }
                Expect::Many(parts, merge) => {
                    let mut replies = Vec::with_capacity(parts.len());
                    for part in parts {
                        replies.push(shared.resolve(part, &mut out, &mut w).await?);
                    }
                    let reply = merge_replies(&merge, &replies, &limits);
                    put(&mut out, &mut w, &reply).await?;
                }
            }
            shared.done(p.cost);
        }
    }
    flush_out(&mut out, &mut w).await?;
    let _ = w.shutdown().await;
    Ok(())
}

/// A command and its reply on a connection nothing else uses yet.
async fn roundtrip<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    args: &[&[u8]],
    limits: &Limits,
) -> Result<Frame, EngineError> {
    let mut cmd = Vec::new();
    encode_command(args.iter().copied(), &mut cmd);
    s.write_all(&cmd).await.map_err(EngineError::Backend)?;
    s.flush().await.map_err(EngineError::Backend)?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if let Some((f, _)) = resp::parse(&buf, limits).map_err(ReplyError::Malformed)? {
            return Ok(f);
        }
        if s.read_buf(&mut buf).await.map_err(EngineError::Backend)? == 0 {
            return Err(EngineError::Backend(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
    }
}

/// Connects to the seed and reads the cluster's slot map.
async fn discover(seed: &Backend, limits: &Limits) -> Result<Pool, EngineError> {
    let connected = seed.connect_authenticated().await?;
    let mut stream = connected.stream;
    let slots = tokio::time::timeout(
        SETUP_TIMEOUT,
        roundtrip(&mut stream, &[b"CLUSTER", b"SLOTS"], limits),
    )
    .await
    .map_err(|_| ReplyError::NoAnswer("CLUSTER SLOTS"))??;
    if let Frame::Error(e) | Frame::BlobError(e) = &slots {
        return Err(ReplyError::NotACluster(String::from_utf8_lossy(e).into_owned()).into());
    }
    // The seed's node ID, to recognise it in the slot map (optional).
    let id = tokio::time::timeout(
        SETUP_TIMEOUT,
        roundtrip(&mut stream, &[b"CLUSTER", b"MYID"], limits),
    )
    .await
    .map_err(|_| ReplyError::NoAnswer("CLUSTER MYID"))??;
    let id = text_of(&id).map(Bytes::copy_from_slice);
    let mut pool = Pool::new(seed, *limits, id);
    pool.apply_slots(&slots).map_err(ReplyError::SlotMap)?;
    pool.nodes[0].handle = Some(NodeHandle::spawn(
        seed.clone(),
        *limits,
        None,
        Some(Connected {
            stream,
            reauth_at: connected.reauth_at,
        }),
    ));
    Ok(pool)
}

/// Proxies one client session to a Redis Cluster (see the [module
/// documentation](self)): connects to `seed` (authenticating with its
/// credential provider), reads the slot map, then routes each command to
/// its node until either side closes. Same contract as
/// [`serve_session`](crate::serve_session): errors are also sent to the
/// client as `-ERR Teleport: ...` when possible, and `audit` receives one
/// [`CommandEvent`] per client command.
///
/// Node connections run on their own tasks: call this inside a Tokio
/// runtime.
pub async fn serve_cluster_session<C, A>(
    client: C,
    seed: &Backend,
    opts: SessionOptions,
    mut audit: A,
) -> Result<(), EngineError>
where
    C: AsyncRead + AsyncWrite,
    A: FnMut(CommandEvent),
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let limits = opts.limits;
    let mut state = SessionState::cluster(opts.db_user.clone());
    let pool = match discover(seed, &limits).await {
        Ok(p) => p,
        Err(e) => {
            let _ = client_w.write_all(&teleport_error(&e.to_string())).await;
            let _ = client_w.flush().await;
            let _ = client_w.shutdown().await;
            return Err(e);
        }
    };
    let shared = Shared {
        pool: Mutex::new(pool),
        in_flight: AtomicUsize::new(0),
        room: Notify::new(),
    };
    let shared = &shared;
    let (queue_tx, queue_rx) = mpsc::unbounded_channel::<Vec<Pending>>();

    let client_side = async move {
        // Dropped when this side ends: the writer then finishes the queue.
        let queue_tx = queue_tx;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut parser = resp::CommandParser::default();
        loop {
            shared.wait_for_room().await;
            buf.reserve(16 * 1024);
            let n = client_r
                .read_buf(&mut buf)
                .await
                .map_err(EngineError::Client)?;
            if n == 0 {
                return Ok(());
            }
            let mut pending = Vec::new();
            let mut end = None;
            {
                let mut pool = shared.pool();
                pool.poll_refresh();
                loop {
                    let parsed = match parser.next(&mut buf, &limits) {
                        Ok(p) => p,
                        Err(e) => {
                            pending.push(Pending {
                                expect: Expect::Local(Bytes::from(teleport_error(&e.to_string()))),
                                cost: 0,
                            });
                            end = Some(Err(EngineError::ClientProtocol(e)));
                            break;
                        }
                    };
                    let Some(command) = parsed else { break };
                    let Some(cmd) = Cmd::of(&command) else {
                        continue; // the parser refuses empty commands
                    };
                    let cost = command.bytes.len() + COMMAND_OVERHEAD;
                    let expect = match state.step(&cmd) {
                        Action::Answer(reply) => Expect::Local(reply),
                        Action::Route(route) => {
                            pool.route(route, &cmd.name, cmd.rest(), &command.bytes)
                        }
                        Action::Quit => {
                            end = Some(Ok(()));
                            Expect::Local(Bytes::from_static(b"+OK\r\n"))
                        }
                        // Not given in a cluster.
                        _ => Expect::Local(Bytes::from(teleport_error(&format!(
                            "{} is not supported in cluster mode",
                            cmd.name
                        )))),
                    };
                    audit(cmd.event(match &expect {
                        Expect::Local(reply) => Some(reply),
                        _ => None,
                    }));
                    pending.push(Pending { expect, cost });
                    if end.is_some() {
                        break;
                    }
                }
                pool.flush_batches();
            }
            let cost: usize = pending.iter().map(|p| p.cost).sum();
            shared.in_flight.fetch_add(cost, Ordering::AcqRel);
            if !pending.is_empty() {
                let _ = queue_tx.send(pending);
            }
            if let Some(r) = end {
                return r;
            }
        }
    };
    let reply_side = write_replies(client_w, queue_rx, shared, limits);

    crate::until_either_ends(client_side, reply_side, opts.drain_timeout).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn masters_are_numbered_by_their_lowest_slot() {
        // Two sessions that met the same three masters in different orders.
        let mut a = vec![NO_NODE; SLOTS];
        let mut b = vec![NO_NODE; SLOTS];
        for (range, na, nb) in [
            (0..5461, 2u16, 1u16),
            (5461..10923, 1, 3),
            (10923..SLOTS, 3, 2),
        ] {
            for s in range {
                a[s] = na;
                b[s] = nb;
            }
        }
        assert_eq!(masters_in_slot_order(&a, 4), [2, 1, 3]);
        assert_eq!(masters_in_slot_order(&b, 4), [1, 3, 2]);
        // Slots that moved: a master serving slots 0-9 and 100-199 comes
        // first; unknown slots and out-of-range indices are ignored.
        let mut c = vec![NO_NODE; SLOTS];
        c[100..200].fill(1);
        c[0..10].fill(1);
        c[50] = 2;
        c[60] = 9;
        assert_eq!(masters_in_slot_order(&c, 3), [1, 2]);
        assert_eq!(masters_in_slot_order(&vec![NO_NODE; SLOTS], 3), [0]);
    }

    #[test]
    fn crc16_and_slots_match_the_specification() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b""), 0);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // Empty tag: the whole key; only the first '{' counts.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") & 0x3FFF);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"{unclosed"), crc16(b"{unclosed") & 0x3FFF);
    }

    fn keys(name: &str, args: &[&str]) -> (Vec<String>, Split) {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        match classify(name, &a) {
            Route::Keys(spec, split) => (
                spec.positions(a.len())
                    .map(|i| args[i].to_string())
                    .collect(),
                split,
            ),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn key_positions() {
        assert_eq!(keys("GET", &["k"]).0, ["k"]);
        assert_eq!(keys("SET", &["k", "v", "EX", "1"]).0, ["k"]);
        assert_eq!(
            keys("MGET", &["a", "b"]),
            (vec!["a".into(), "b".into()], Split::Mget)
        );
        assert_eq!(keys("DEL", &["a", "b"]).1, Split::Sum);
        assert_eq!(keys("MSET", &["a", "1", "b", "2"]).0, ["a", "b"]);
        assert_eq!(keys("EVAL", &["s", "2", "a", "b", "x"]).0, ["a", "b"]);
        assert_eq!(keys("EVAL", &["s", "99", "a"]).0, ["a"]);
        assert!(matches!(classify("EVAL", &[b"s", b"0"]), Route::Any));
        assert!(matches!(classify("EVAL", &[b"s", b"x"]), Route::Any));
        assert_eq!(keys("BLPOP", &["a", "b", "0"]).0, ["a", "b"]);
        assert_eq!(
            keys("ZUNIONSTORE", &["d", "2", "a", "b", "WEIGHTS", "1", "2"]).0,
            ["d", "a", "b"]
        );
        assert_eq!(keys("LMPOP", &["2", "a", "b", "LEFT"]).0, ["a", "b"]);
        assert_eq!(
            keys("XREAD", &["COUNT", "2", "STREAMS", "s1", "s2", "0", "0"]).0,
            ["s1", "s2"]
        );
        assert_eq!(keys("OBJECT", &["ENCODING", "k"]).0, ["k"]);
        assert_eq!(keys("UNKNOWNCMD", &["x", "y"]).0, ["x"]);
        assert_eq!(keys("UNKNOWNCMD", &[]).0, Vec::<String>::new());
        assert!(matches!(classify("PING", &[]), Route::Any));
        assert!(matches!(
            classify("DBSIZE", &[]),
            Route::Masters(Merge::Sum)
        ));
        assert!(matches!(classify("CLUSTER", &[b"info"]), Route::Any));
        for (name, args, msg) in [
            ("MULTI", &[][..], "MULTI is not supported in cluster mode"),
            (
                "SELECT",
                &[b"1".as_slice()][..],
                "SELECT of a database other than 0 is not supported in cluster mode",
            ),
            (
                "CLIENT",
                &[b"reply".as_slice(), b"off"][..],
                "CLIENT REPLY is not supported in cluster mode",
            ),
            (
                "CLUSTER",
                &[b"setslot".as_slice()][..],
                "CLUSTER SETSLOT is not supported in cluster mode",
            ),
            (
                "CLUSTER",
                &[][..],
                "CLUSTER is not supported in cluster mode",
            ),
        ] {
            let Route::Local(b) = classify(name, args) else {
                panic!("{name}")
            };
            assert_eq!(b, Bytes::from(format!("-ERR Teleport: {msg}\r\n")));
        }
    }

    #[test]
    fn redirects_parse() {
        assert!(matches!(
            parse_redirect(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            Some(Redirect::Moved(3999, "127.0.0.1", 6381))
        ));
        assert!(matches!(
            parse_redirect(b"-ASK 1 ::1:7000\r\n"),
            Some(Redirect::Ask("::1", 7000))
        ));
        assert!(matches!(
            parse_redirect(b"-MOVED 3999 :6381\r\n"),
            Some(Redirect::Moved(3999, "", 6381))
        ));
        for bad in [
            &b"-MOVED 16384 h:1\r\n"[..],
            b"-MOVED x h:1\r\n",
            b"-MOVED 1 h\r\n",
            b"-ERR MOVED\r\n",
            b"+MOVED 1 h:1\r\n",
            b"-ASK 1 h:99999\r\n",
        ] {
            assert!(parse_redirect(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn cursor_finds_frame_ends_at_every_cut() {
        let frames: &[&[u8]] = &[
            b"+OK\r\n",
            b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n_\r\n%1\r\n+k\r\n$-1\r\n",
            b"|1\r\n+ttl\r\n:3\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b">2\r\n+message\r\n$1\r\nx\r\n",
            b"$5\r\nhello\r\n",
        ];
        let all: Vec<u8> = frames.concat();
        let lim = Limits::default();
        for cut in 0..all.len() {
            let mut cursor = FrameCursor::default();
            let mut got = Vec::new();
            let mut start = 0;
            for end in [cut, all.len()] {
                while let Some((len, ty)) = cursor.next(&all[start..end], &lim).unwrap() {
                    got.push((len, ty));
                    start += len;
                }
            }
            let want: Vec<(usize, u8)> = frames.iter().map(|f| (f.len(), f[0])).collect();
            assert_eq!(got, want, "cut {cut}");
        }
        let deep = "*1\r\n".repeat(100);
        assert!(FrameCursor::default().next(deep.as_bytes(), &lim).is_err());
        assert!(FrameCursor::default().next(b"*x\r\n", &lim).is_err());
        assert!(FrameCursor::default().next(b"%-1\r\n", &lim).is_err());
        assert!(FrameCursor::default().next(b"?\r\n", &lim).is_err());
    }

    #[test]
    fn merges() {
        let lim = Limits::default();
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert_eq!(
            merge_replies(&Merge::Sum, &[b(":2\r\n"), b(":3\r\n")], &lim),
            b(":5\r\n")
        );
        assert_eq!(
            merge_replies(&Merge::Sum, &[b(":2\r\n"), b("-ERR x\r\n")], &lim),
            b("-ERR x\r\n")
        );
        assert_eq!(
            merge_replies(&Merge::AllOk, &[b("+OK\r\n"), b("+OK\r\n")], &lim),
            b("+OK\r\n")
        );
        assert_eq!(
            merge_replies(
                &Merge::Concat,
                &[b("*1\r\n$1\r\na\r\n"), b("*0\r\n"), b("*1\r\n$1\r\nb\r\n")],
                &lim
            ),
            b("*2\r\n$1\r\na\r\n$1\r\nb\r\n")
        );
        assert_eq!(
            merge_replies(
                &Merge::Mget(vec![(1, 0), (0, 0), (1, 1)]),
                &[b("*1\r\n$1\r\na\r\n"), b("*2\r\n_\r\n$1\r\nc\r\n")],
                &lim
            ),
            b("*3\r\n_\r\n$1\r\na\r\n$1\r\nc\r\n")
        );
        assert!(
            merge_replies(&Merge::Mget(vec![(0, 5)]), &[b("*0\r\n")], &lim)
                .starts_with(b"-ERR Teleport")
        );
        assert!(merge_replies(&Merge::Sum, &[b("+x\r\n")], &lim).starts_with(b"-ERR Teleport"));
    }
}
