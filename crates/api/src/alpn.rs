//! ALPN protocol names: how a connection to the proxy's one TLS port says
//! what it carries. The proxy routes by them; clients and agents offer them.

/// Agents' HTTP calls (join, renewals, heartbeats, roles, audit), served
/// with the host-CA certificate that agents verify through `teleport.ca_pin`.
pub const CLUSTER: &[u8] = b"teleport-cluster";
/// The agents' reverse tunnel (yamux over TLS with the host certificate).
pub const REVERSE_TUNNEL: &[u8] = b"teleport-reversetunnel";
/// App sessions (`tsh az`, `tsh proxy azure`): the connection, with an app
/// certificate, is spliced to the app's agent through its tunnel.
pub const APP: &[u8] = b"teleport-app";
/// Redis sessions, one TLS connection each, with a database certificate.
pub const REDIS: &[u8] = b"teleport-redis";
/// Multiplexed Redis sessions: one connection with a database certificate
/// carries many sessions as yamux streams; preferred over [`REDIS`] when a
/// client offers both.
pub const REDIS_MUX: &[u8] = b"teleport-redis-mux";
/// The web API, HTTP/2 or HTTP/1.1 with the web certificate.
pub const HTTP: [&[u8]; 2] = [b"h2", b"http/1.1"];
