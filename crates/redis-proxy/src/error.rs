//! Why a session ended: each failure a kind of its own, with its source.
//!
//! Text that comes from the database (an `AUTH` refusal, a `CLUSTER SLOTS`
//! error) is kept as the database's data, never as our message; callers that
//! show it to users escape it as any peer's text.

use crate::cluster::SlotsError;
use crate::{CredentialError, ProtocolError};

/// Errors ending a session.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The TCP connection to the database failed or timed out.
    #[error("failed to connect to the database at {addr}: {source}")]
    Connect {
        /// `host:port` dialled.
        addr: String,
        /// The connect error (`TimedOut` for the connect timeout).
        #[source]
        source: std::io::Error,
    },
    /// TLS to the database could not be set up.
    #[error("TLS to the database failed: {0}")]
    Tls(#[from] TlsError),
    /// The credential provider had nothing to authenticate with.
    #[error("failed to get database credentials: {0}")]
    Credentials(#[source] CredentialError),
    /// The database did not accept the agent's credentials.
    #[error("database authentication failed: {0}")]
    Auth(#[from] AuthError),
    /// Reading from or writing to the database failed.
    #[error("database connection error: {0}")]
    Backend(#[source] std::io::Error),
    /// The database answered something the engine cannot use.
    #[error("database sent an invalid reply: {0}")]
    BackendProtocol(#[from] ReplyError),
    /// Reading from or writing to the client failed.
    #[error("client connection error: {0}")]
    Client(#[source] std::io::Error),
    /// The client sent something that is not RESP within the limits.
    #[error("{0}")]
    ClientProtocol(#[from] ProtocolError),
}

/// Why TLS to the database could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The client configuration was refused by rustls.
    #[error("{0}")]
    Config(#[source] rustls::Error),
    /// The database's host is not a valid TLS server name.
    #[error("invalid server name: {0}")]
    ServerName(#[source] rustls::pki_types::InvalidDnsNameError),
    /// The handshake did not finish within the connect timeout.
    #[error("handshake timed out")]
    Timeout,
    /// The handshake failed (certificate, protocol, connection).
    #[error("{0}")]
    Handshake(#[source] std::io::Error),
}

/// Why the database did not accept the agent's credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The database refused `AUTH`; its error text.
    #[error("{0}")]
    Refused(String),
    /// Every credential the provider had was refused on this connection.
    #[error("WRONGPASS after refreshing credentials")]
    NoNewCredentials,
    /// `AUTH` was answered with something that is neither OK nor an error.
    #[error("unexpected AUTH reply {0}")]
    UnexpectedReply(String),
    /// Re-authenticating an open connection (expiring credentials) was
    /// refused; the database's error text.
    #[error("re-authentication refused: {0}")]
    ReauthRefused(String),
    /// Re-authenticating an open connection failed on the way.
    #[error("re-authentication: {0}")]
    Reauth(#[source] Box<EngineError>),
}

/// What the database answered that the engine cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// Not RESP, or beyond the parser's limits.
    #[error("{0}")]
    Malformed(#[from] ProtocolError),
    /// A setup command got no answer within its timeout.
    #[error("no answer to {0}")]
    NoAnswer(&'static str),
    /// A reply arrived on the shared connection when no command waited.
    #[error("a reply to no command")]
    Unsolicited,
    /// A push frame (RESP3 out-of-band) on the shared connection, which
    /// serves no subscriptions.
    #[error("an out-of-band push frame on a shared connection")]
    PushOnShared,
    /// `AUTH` on the shared connection was answered with more than 64 KiB.
    #[error("an oversized answer to AUTH")]
    OversizedAuthReply,
    /// `CLUSTER SLOTS` was refused: the database is not a Redis cluster.
    #[error("CLUSTER SLOTS failed (is this a Redis cluster?): {0}")]
    NotACluster(String),
    /// The `CLUSTER SLOTS` map could not be applied.
    #[error("CLUSTER SLOTS: {0}")]
    SlotMap(#[source] SlotsError),
}
