//! Database sessions arriving through the reverse tunnel.
//!
//! The proxy has checked the user's database certificate (TLS with the user
//! CA) and passes it along with the stream. For each session the agent:
//! reads the route (database, database user) from the certificate; finds the
//! database among the ones it serves; re-checks access with the user's roles
//! as they are now (`db_labels`, `db_users`, and Azure's `default`-only rule);
//! records `db.session.start` (TDB00I, or TDB00W when refused); runs the Redis
//! engine, which authenticates to the server with the agent's own credentials
//! and records one `db.session.query` (TDB02I) per command, or
//! `db.session.query.failed` (TDB02W) for a command the engine refused
//! itself; then records `db.session.end` (TDB01I).
//!
//! Audit events are batched off the session path by [`AuditSink`]: a session
//! never waits for the auth service.

use std::collections::HashMap;
use std::sync::Arc;

use agent::{AuditSink, Cluster};
use api::audit::{
    AuditEvent, DbSession, DbSessionEnd, DbSessionQueryFailed, DbSessionStart, Outcome,
};
use pki::Identity;
use redis_proxy::{Backend, CredentialProvider, SessionOptions};
use resources::{Database, Role};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, RwLock};

/// Longest query text recorded; the rest is counted, not kept.
const MAX_QUERY: usize = 32 * 1024;

/// Where backends get their credentials (Azure access keys, Entra tokens,
/// nothing for a server without a password).
pub trait CredentialSource: Send + Sync + 'static {
    /// The provider for `db`; called once per database (and again when the
    /// database's URI changes), so providers may cache.
    fn provider(&self, db: &Database) -> Arc<dyn CredentialProvider>;
}

/// No credentials: no `AUTH` is sent.
pub struct NoCredentials;

impl CredentialSource for NoCredentials {
    fn provider(&self, _db: &Database) -> Arc<dyn CredentialProvider> {
        Arc::new(redis_proxy::StaticCredentials(
            redis_proxy::Credentials::default(),
        ))
    }
}

/// `query`, cut to [`MAX_QUERY`] bytes (on a character boundary) with a
/// note of what was left out.
fn bounded_query(mut query: String) -> String {
    if query.len() <= MAX_QUERY {
        return query;
    }
    let total = query.len();
    let mut cut = MAX_QUERY;
    while !query.is_char_boundary(cut) {
        cut -= 1;
    }
    query.truncate(cut);
    query.push_str(&format!(" ... ({} more bytes not recorded)", total - cut));
    query
}

/// Why a database session did not start. The client gets the text as
/// `-ERR Teleport: ...`; a refused session is also recorded
/// (`db.session.start`, TDB00W).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The certificate carries no database route.
    #[error("this certificate is not for a database: run tsh db login <db>")]
    NotDatabaseCertificate,
    /// The certificate expired (sessions opened later on a multiplexed
    /// connection).
    #[error("the database certificate expired at {expires}: run tsh db login {database}")]
    Expired {
        /// When it expired.
        expires: time::OffsetDateTime,
        /// The database it was for.
        database: String,
    },
    /// The route names a database this agent does not serve.
    #[error("database {0:?} is not served by this agent")]
    NotServed(String),
    /// The database's protocol is not one the agent proxies.
    #[error("database {name:?} uses protocol {protocol:?}, which this agent does not proxy")]
    UnsupportedProtocol {
        /// The database.
        name: String,
        /// Its protocol.
        protocol: String,
    },
    /// The user's roles could not be read from the cluster.
    #[error("reading the user's roles failed: {0}")]
    Roles(#[source] agent::ClusterError),
    /// A role of the user cannot be evaluated.
    #[error("role evaluation failed: {0}")]
    RoleEvaluation(#[source] rbac::RbacError),
    /// The user's roles refuse the database or the database user.
    #[error(transparent)]
    Access(#[from] rbac::AccessError),
    /// The database refuses the database user whatever the roles say
    /// (Azure Cache for Redis: only `default`); the text is
    /// [`Database::check_db_user`]'s.
    #[error("{0}")]
    DbUser(String),
    /// The database's URI names no host and port.
    #[error("database {0:?} has an unusable URI")]
    UnusableUri(String),
    /// The TLS client configuration for the database could not be built.
    #[error("TLS setup for database {name:?}: {source}")]
    Tls {
        /// The database.
        name: String,
        /// Why.
        source: pki::PkiError,
    },
}

impl SessionError {
    /// Whether the user was refused (their certificate, roles or route),
    /// as opposed to the agent failing to serve an allowed session.
    pub fn is_refusal(&self) -> bool {
        match self {
            SessionError::NotDatabaseCertificate
            | SessionError::Expired { .. }
            | SessionError::NotServed(_)
            | SessionError::UnsupportedProtocol { .. }
            | SessionError::DbUser(_) => true,
            SessionError::Access(e) => e.is_access_denied(),
            SessionError::Roles(_)
            | SessionError::RoleEvaluation(_)
            | SessionError::UnusableUri(_)
            | SessionError::Tls { .. } => false,
        }
    }
}

/// Serves database sessions for the databases an agent announces.
pub struct DbSessions {
    dbs: Arc<RwLock<Vec<Database>>>,
    cluster: Arc<dyn Cluster>,
    audit: AuditSink,
    credentials: Arc<dyn CredentialSource>,
    backends: Mutex<HashMap<String, (Database, Backend)>>,
    server_id: String,
    share_connections: bool,
}

fn teleport_error(msg: &str) -> Vec<u8> {
    redis_proxy::teleport_error(msg)
}

/// Trusted roots for database servers: the system bundle (or
/// `SSL_CERT_FILE`), plus the database's own `tls.ca_cert`. Certificates
/// that do not parse are skipped.
fn roots_for(db: &Database) -> Vec<String> {
    let mut pems = Vec::new();
    for path in [
        std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from),
        Some("/etc/ssl/certs/ca-certificates.crt".into()),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(text) = std::fs::read_to_string(&path) {
            pems.extend(client::split_pem_certs(&text));
        }
    }
    if let Some(tls) = &db.spec.tls {
        pems.extend(client::split_pem_certs(&tls.ca_cert));
    }
    pems
}

/// The engine's connection factory for `db`: TLS unless the URI says
/// `redis://`, SNI and verification against the URI's host (also for the
/// nodes a cluster redirects to).
pub fn backend_for(
    db: &Database,
    credentials: Arc<dyn CredentialProvider>,
) -> Result<Backend, SessionError> {
    let (host, port) = db
        .host_port()
        .ok_or_else(|| SessionError::UnusableUri(db.metadata.name.clone()))?;
    let plain = db.spec.uri.starts_with("redis://");
    let tls = if plain {
        None
    } else {
        let cfg =
            pki::tls::client_config(None, None, &roots_for(db), false, &[]).map_err(|source| {
                SessionError::Tls {
                    name: db.metadata.name.clone(),
                    source,
                }
            })?;
        Some(Arc::new(cfg))
    };
    Ok(Backend::new(host, port, tls, credentials))
}

impl DbSessions {
    /// Sessions for the databases in `dbs` (kept current by the caller).
    pub fn new(
        dbs: Arc<RwLock<Vec<Database>>>,
        cluster: Arc<dyn Cluster>,
        audit: AuditSink,
        credentials: Arc<dyn CredentialSource>,
        server_id: String,
    ) -> DbSessions {
        DbSessions {
            dbs,
            cluster,
            audit,
            credentials,
            backends: Mutex::new(HashMap::new()),
            server_id,
            share_connections: true,
        }
    }

    /// Whether sessions of a Redis database start on its shared connection
    /// (`db_service.redis_connection_sharing`, on unless set; see
    /// `redis_proxy::shared`).
    pub fn with_connection_sharing(mut self, share: bool) -> DbSessions {
        self.share_connections = share;
        self
    }

    async fn roles_of(&self, names: &[String]) -> Result<Vec<Role>, agent::ClusterError> {
        self.cluster.roles(names).await
    }

    async fn backend(&self, db: &Database) -> Result<Backend, SessionError> {
        let mut cache = self.backends.lock().await;
        if let Some((known, backend)) = cache.get(&db.metadata.name) {
            if known.spec == db.spec {
                return Ok(backend.clone());
            }
        }
        let backend = backend_for(db, self.credentials.provider(db))?;
        cache.insert(db.metadata.name.clone(), (db.clone(), backend.clone()));
        Ok(backend)
    }

    /// Check the session's access; the database and user on success.
    async fn authorize(&self, identity: &Identity) -> Result<(Database, String), SessionError> {
        let route = identity
            .route_to_database
            .as_ref()
            .ok_or(SessionError::NotDatabaseCertificate)?;
        // The proxy checked the certificate when the connection was made;
        // sessions opened later on a multiplexed connection are checked
        // here.
        if identity.expires <= time::OffsetDateTime::now_utc() {
            return Err(SessionError::Expired {
                expires: identity.expires,
                database: route.service_name.clone(),
            });
        }
        let db = self
            .dbs
            .read()
            .await
            .iter()
            .find(|d| d.metadata.name == route.service_name)
            .cloned()
            .ok_or_else(|| SessionError::NotServed(route.service_name.clone()))?;
        if db.spec.protocol != "redis" {
            return Err(SessionError::UnsupportedProtocol {
                name: db.metadata.name.clone(),
                protocol: db.spec.protocol.clone(),
            });
        }
        let user = if route.username.is_empty() {
            "default".to_string()
        } else {
            route.username.clone()
        };
        let roles = self
            .roles_of(&identity.groups)
            .await
            .map_err(SessionError::Roles)?;
        let checker = rbac::AccessChecker::new(roles, &identity.traits)
            .map_err(SessionError::RoleEvaluation)?;
        checker.check_access_to_db(&db.all_labels(), Some(&user), None)?;
        db.check_db_user(&user).map_err(SessionError::DbUser)?;
        Ok((db, user))
    }

    /// Serve one session whose client certificate is `cert_der`.
    pub async fn serve<S>(self: Arc<Self>, cert_der: Vec<u8>, mut stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let identity = match Identity::from_cert_der(&cert_der) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "database session with an unreadable certificate");
                let _ = stream
                    .write_all(&teleport_error("unreadable session certificate"))
                    .await;
                return;
            }
        };
        let route = identity.route_to_database.clone().unwrap_or_default();
        let sid = uuid::Uuid::new_v4().to_string();
        let mut session = DbSession {
            user: identity.username.clone(),
            sid,
            db_service: route.service_name.clone(),
            db_protocol: "redis".into(),
            db_user: if route.username.is_empty() {
                "default".into()
            } else {
                route.username.clone()
            },
            db_name: route.database.clone(),
            server_id: self.server_id.clone(),
            db_uri: None,
            db_origin: None,
        };
        let (db, db_user) = match self.authorize(&identity).await {
            Ok(x) => x,
            Err(e) => {
                let msg = e.to_string();
                if e.is_refusal() {
                    tracing::info!(user = %identity.username, db = %route.service_name, error = %msg, "database session refused");
                } else {
                    tracing::warn!(user = %identity.username, db = %route.service_name, error = %msg, "database session could not be authorized");
                }
                self.audit.emit(&AuditEvent::DbSessionStart(DbSessionStart {
                    session,
                    outcome: Outcome::Failure(msg.clone()),
                }));
                let _ = stream.write_all(&teleport_error(&msg)).await;
                let _ = stream.shutdown().await;
                return;
            }
        };
        let backend = match self.backend(&db).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(db = %db.metadata.name, error = %e, "database session could not start");
                let _ = stream.write_all(&teleport_error(&e.to_string())).await;
                let _ = stream.shutdown().await;
                return;
            }
        };
        session.db_uri = Some(db.spec.uri.clone());
        session.db_origin = Some(
            db.metadata
                .labels
                .get("teleport.dev/origin")
                .cloned()
                .unwrap_or_default(),
        );
        self.audit.emit(&AuditEvent::DbSessionStart(DbSessionStart {
            session: session.clone(),
            outcome: Outcome::Success,
        }));
        let audit = self.audit.clone();
        // The session's part of every command's event, serialized once.
        let query_prefix: Arc<str> = session.query_prefix().into();
        let on_command = |cmd: redis_proxy::CommandEvent| match &cmd.refused {
            // Refused by the engine (never reached Redis): Teleport's
            // db.session.query.failed, on its own.
            Some(why) => audit.emit(&AuditEvent::DbSessionQueryFailed(DbSessionQueryFailed {
                session: session.clone(),
                db_query: bounded_query(cmd.query()),
                error: why.to_string(),
            })),
            None => audit.emit_query(&query_prefix, bounded_query(cmd.query())),
        };
        let opts = SessionOptions {
            db_user: Some(db_user),
            share_backend: self.share_connections,
            ..SessionOptions::default()
        };
        // Commands are read only while the audit backlog has room.
        let client = self.audit.throttle(&mut stream);
        let result = if db.redis_cluster_mode() {
            redis_proxy::serve_cluster_session(client, &backend, opts, on_command).await
        } else {
            redis_proxy::serve_session(client, &backend, opts, on_command).await
        };
        if let Err(e) = &result {
            tracing::info!(db = %db.metadata.name, error = %e, "database session ended with an error");
        }
        self.audit.emit(&AuditEvent::DbSessionEnd(DbSessionEnd {
            session,
            error: result.as_ref().err().map(|e| e.to_string()),
        }));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn long_queries_are_cut_with_a_note() {
        let long = "é".repeat(MAX_QUERY);
        let cut = bounded_query(format!("SET k {long}"));
        assert!(cut.len() < MAX_QUERY + 64, "{}", cut.len());
        assert!(cut.ends_with("more bytes not recorded)"));
        assert_eq!(bounded_query("GET k".into()), "GET k");
    }
}
